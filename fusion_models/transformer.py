"""Transformer cross-modal fusion (`fusion-transformer`).

tokens of item i   t_i0 = e_i + type_0,   t_im = h_m(f_i^m) + type_m     (m = 1..M)
encoder            n_layers x TransformerEncoderLayer(d, n_heads, ff 2d, pre-norm, dropout)
item vector        q_i = mean of the encoder outputs over item i's present tokens
score(u, i)        = <p_u, q_i>

Each item is a short sequence [id, one token per modality]; self-attention lets every
modality attend to the others and to the collaborative token, so the fusion is learned per
item rather than fixed. `type_k` are learned modality-type embeddings (the encoder is
otherwise permutation-invariant). Missing features (dataset masks) are padding: they are
masked out of the attention and of the pooling. Pre-norm layers train stably without warm-up
at Adam's default-scale learning rates.

Cost: the item tower runs over every item in every batch, so the encoder is the epoch's cost.
`encode_tokens` computes the same function as `nn.TransformerEncoder` (its weights, pre-norm,
ReLU; equal in eval mode, tested) written for sequences of a few tokens: attention as
broadcast products instead of batched 2x2 matrix products, and dropout from one uniform draw
per site (`dropout`), which on CPU costs half of `F.dropout`'s Bernoulli sampling. It made
the epoch 2.x times faster on ml-100k (see the README's `perf train`).

Defaults: embedding 64, 1 layer, 2 heads, dropout 0.1, Adam lr 1e-3, batch 2048, no weight
decay, 60 epochs (the benchmark early-stops on validation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from baselines.base import FitData, register
from baselines.params import DROPOUT, POSITIVE_INT
from datasets.errors import FusebenchError

from .layers import ItemTowerFusion, ModalityEncoders, fusion_space, id_embeddings


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout from one uniform draw (the mask is built in place in the draw)."""
    if not training or p == 0:
        return x
    return x * torch.rand_like(x).ge_(p).mul_(1.0 / (1.0 - p))


def attention(layer: nn.TransformerEncoderLayer, x: torch.Tensor, pad: torch.Tensor | None, training: bool):
    """Multi-head self-attention of `layer.self_attn` over (n, K, d) inputs with K small:
    scores and mixing as broadcast products over the K x K pairs. `pad` (n, K) is True at
    padding tokens (they are never attended to)."""
    mha = layer.self_attn
    n, k, d = x.shape
    h = mha.num_heads
    q, key, v = F.linear(x, mha.in_proj_weight, mha.in_proj_bias).view(n, k, 3, h, d // h).unbind(2)
    # (n, h, K, K): query token i against key token j
    scores = (q.transpose(1, 2).unsqueeze(3) * key.transpose(1, 2).unsqueeze(2)).sum(-1) * (d // h) ** -0.5
    if pad is not None:
        scores = scores.masked_fill(pad[:, None, None, :], float("-inf"))
    w = dropout(scores.softmax(-1), mha.dropout, training)
    out = (w.unsqueeze(-1) * v.transpose(1, 2).unsqueeze(2)).sum(3)  # (n, h, K, d/h)
    return mha.out_proj(out.transpose(1, 2).reshape(n, k, d))


def encode_tokens(encoder: nn.TransformerEncoder, x: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
    """`encoder(x, src_key_padding_mask=pad)` for pre-norm ReLU layers (see the module notes)."""
    for layer in encoder.layers:
        training = layer.training
        p = layer.dropout.p
        x = x + dropout(attention(layer, layer.norm1(x), pad, training), p, training)
        ff = layer.linear2(dropout(F.relu(layer.linear1(layer.norm2(x))), p, training))
        x = x + dropout(ff, p, training)
    return x


class TransformerModule(nn.Module):
    def __init__(self, n_users: int, encoders: ModalityEncoders, dim: int, n_layers: int, n_heads: int,
                 dropout: float):
        super().__init__()
        self.encoders = encoders
        self.n_items = encoders.n_items
        self.user, self.item = id_embeddings(n_users, self.n_items, dim)
        self.types = nn.Parameter(torch.zeros(len(encoders) + 1, dim))
        nn.init.normal_(self.types, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, n_heads, dim_feedforward=2 * dim, dropout=dropout,
                                           batch_first=True, norm_first=True)
        # nested tensors change the reduction order between calls; keep the plain path
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def items(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        ids = self.item.rows(idx)
        tokens = torch.cat([ids.unsqueeze(0), self.encoders(idx)], dim=0).transpose(0, 1)  # (n, K, d)
        tokens = tokens + self.types
        if self.encoders.complete:
            return self.norm(encode_tokens(self.encoder, tokens)).mean(1)
        present = self.encoders.presence(idx)[..., 0].T > 0  # (n, M)
        keep = torch.cat([torch.ones_like(present[:, :1]), present], dim=1)  # the id token always
        out = self.norm(encode_tokens(self.encoder, tokens, ~keep))
        w = keep.unsqueeze(-1).float()
        return (out * w).sum(1) / w.sum(1)


@register
class TransformerFusion(ItemTowerFusion):
    name = "fusion-transformer"
    zero_cold_ids = True
    _parameter_constraints = {"n_layers": [POSITIVE_INT], "n_heads": [POSITIVE_INT], "dropout": [DROPOUT]}

    def __init__(
        self,
        embedding_size: int = 64,
        n_layers: int = 1,
        n_heads: int = 2,
        dropout: float = 0.1,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 2048,
        epochs: int = 60,
        loss: str = "bpr",
        id_dropout: float = 0.0,
        normalize_features: bool = True,
        modalities: str = "all",
    ):
        self.embedding_size = embedding_size
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.loss = loss
        self.id_dropout = id_dropout
        self.normalize_features = normalize_features
        self.modalities = modalities

    @classmethod
    def search_space(cls, trial):
        return {
            **fusion_space(trial),
            "n_layers": trial.suggest_int("n_layers", 1, 2),
            "n_heads": trial.suggest_categorical("n_heads", [1, 2, 4]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.3),
        }

    def validate(self) -> None:
        super().validate()
        if int(self.embedding_size) % int(self.n_heads):
            raise FusebenchError(
                f"embedding_size ({self.embedding_size}) must be divisible by n_heads ({self.n_heads})")

    def build(self, data: FitData) -> nn.Module:
        dim = int(self.embedding_size)
        return TransformerModule(data.n_users, self.encoders(dim), dim, int(self.n_layers), int(self.n_heads),
                                 float(self.dropout))
