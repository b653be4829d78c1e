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
per site (`dropout`), cheaper on CPU than `F.dropout`'s Bernoulli sampling (the speed-up
measured is in docs/models.md; the README's `perf train` measures it again).

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
    def __init__(self, n_users: int, encoders: ModalityEncoders, dim: int, n_layers: int, n_heads: int, dropout: float):
        super().__init__()
        self.encoders = encoders
        self.n_items = encoders.n_items
        self.user, self.item = id_embeddings(n_users, self.n_items, dim)
        self.types = nn.Parameter(torch.zeros(len(encoders) + 1, dim))
        nn.init.normal_(self.types, std=0.02)
        layer = nn.TransformerEncoderLayer(
            dim, n_heads, dim_feedforward=2 * dim, dropout=dropout, batch_first=True, norm_first=True
        )
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
    """Transformer fusion: self-attention over an item's tokens, its id and one per modality.

    Each item is the sequence [e_i + type_0, h_1(f_i^1) + type_1, ...] with learned type
    embeddings; a pre-norm Transformer encoder lets every modality attend to the others and to
    the collaborative token, and q_i is the mean of the outputs over the item's present tokens
    (missing features are padding, masked out of attention and pooling); score(u, i) = <e_u,
    q_i>. `encode_tokens` computes `nn.TransformerEncoder`'s function, written for sequences of
    a few tokens. Item id embeddings of items without training interactions are zeroed and kept
    at zero, so a cold-start item is scored by its content. A fusion strategy of this benchmark,
    not a published model.

    Parameters
    ----------
    embedding_size : int, default 64
        Width of the id embeddings, the projections and the encoder (must be divisible by
        `n_heads`). Accepted: int >= 1. Tuned by `search_space`.
    n_layers : int, default 1
        Encoder layers. Accepted: int >= 1. Tuned by `search_space`.
    n_heads : int, default 2
        Attention heads per layer. Accepted: int >= 1. Tuned by `search_space`.
    dropout : float, default 0.1
        Dropout inside the encoder layers (attention weights, residual branches, feed-forward).
        Accepted: real in [0, 1). Tuned by `search_space`.
    learning_rate : float, default 1e-3
        Adam's learning rate. Accepted: real > 0. Tuned by `search_space`.
    weight_decay : float, default 0.0
        Adam's L2 weight decay. Accepted: real >= 0. Tuned by `search_space`.
    batch_size : int, default 2048
        Training pairs per step. Accepted: int >= 1.
    epochs : int, default 60
        Epoch cap (the benchmark's protocol sets it and early-stops on validation).
        Accepted: int >= 1.
    loss : str, default "bpr"
        "bpr" (pairwise, one uniform negative per training pair), "softmax" (cross-entropy of
        each positive against every item) or "sampled" (softmax over the batch's distinct
        positives and sampled negatives, logQ-corrected). Accepted: one of bpr, softmax,
        sampled. Tuned by `search_space` (bpr or sampled).
    id_dropout : float, default 0.0
        In training, each item id embedding of a batch is zeroed with this probability
        (DropoutNet), so the model also learns to rank items by content alone. Accepted: real
        in [0, 1). Tuned by `search_space`.
    normalize_features : bool, default True
        L2-normalise each modality per item before projecting it.
    modalities : str, default "all"
        The feature sets used: "all" or comma-separated names or family prefixes
        (`baselines.modalities`); the names are checked against the dataset in `init`.

    Attributes
    ----------
    modalities_ : list of str
        The feature sets selected, in selection order.
    device_ : torch.device
        The device the model trains and scores on.
    module_ : torch.nn.Module
        `user` and `item` id embeddings, the projection heads `encoders` (features as
        non-persistent buffers), the token-type embeddings `types`, the `encoder` (feed-forward
        width 2d, pre-norm) and the output LayerNorm `norm`.

    References
    ----------
    Vaswani, Shazeer, Parmar, Uszkoreit, Jones, Gomez, Kaiser, Polosukhin. Attention Is All
    You Need. NeurIPS 2017.

    Xiong et al. On Layer Normalization in the Transformer Architecture. ICML 2020 (pre-norm
    layers).

    Volkovs, Yu, Poutanen. DropoutNet: Addressing Cold Start in Recommender Systems. NeurIPS
    2017 (`id_dropout`).

    Yi et al. Sampling-Bias-Corrected Neural Modeling for Large Corpus Item Recommendations.
    RecSys 2019 (`loss="sampled"`).
    """

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
                f"embedding_size ({self.embedding_size}) must be divisible by n_heads ({self.n_heads})"
            )

    def build(self, data: FitData) -> nn.Module:
        dim = int(self.embedding_size)
        return TransformerModule(
            data.n_users, self.encoders(dim), dim, int(self.n_layers), int(self.n_heads), float(self.dropout)
        )
