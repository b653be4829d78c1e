"""Early fusion by concatenation (`fusion-concat`).

item representation  q_i = MLP([e_i ; h_1(f_i^1) ; ... ; h_M(f_i^M)])  in R^d
user representation  p_u = e_u                                          in R^d
score(u, i)          = <p_u, q_i>,   trained with BPR (one uniform negative per pair)

`h_m` is a linear projection of modality m to d (one head per modality, `ModalityEncoders`);
each modality is L2-normalised per item first (`normalize_features`). The MLP is
Linear((M+1)d, d) -> LeakyReLU -> dropout -> Linear(d, d), so the model can learn
interactions between the id embedding and the content, which a sum (feature-mf) cannot.

Defaults: embedding 64, Adam lr 1e-3, batch 2048, no weight decay, no dropout, 100 epochs
(the benchmark early-stops on validation).
"""

from __future__ import annotations

import torch
from torch import nn

from baselines.base import FitData, register
from baselines.bpr import bpr_loss
from baselines.torch_base import embedding_space, item_rows
from datasets.errors import FusebenchError

from .layers import FusionRecommender, ModalityEncoders


class ConcatModule(nn.Module):
    def __init__(self, n_users: int, features: dict, dim: int, dropout: float):
        super().__init__()
        self.encoders = ModalityEncoders(features, dim)
        n_items = self.encoders.n_items
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        nn.init.xavier_normal_(self.user.weight)
        nn.init.xavier_normal_(self.item.weight)
        self.mlp = nn.Sequential(
            nn.Linear((len(self.encoders) + 1) * dim, dim),
            nn.LeakyReLU(),
            nn.Dropout(dropout),
            nn.Linear(dim, dim),
        )
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_normal_(layer.weight)
                nn.init.zeros_(layer.bias)

    @property
    def n_items(self) -> int:
        return self.encoders.n_items

    def items(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        ids = self.item.weight if idx is None else self.item(idx)
        parts = [ids] + [self.encoders.encode(m, idx) for m in range(len(self.encoders))]
        return self.mlp(torch.cat(parts, dim=-1))


@register
class ConcatFusion(FusionRecommender):
    name = "fusion-concat"

    def __init__(
        self,
        embedding_size: int = 64,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 2048,
        epochs: int = 100,
        dropout: float = 0.0,
        normalize_features: bool = True,
        modalities: str = "all",
    ):
        self.embedding_size = embedding_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.dropout = dropout
        self.normalize_features = normalize_features
        self.modalities = modalities

    @classmethod
    def search_space(cls, trial):
        return {**embedding_space(trial), "dropout": trial.suggest_float("dropout", 0.0, 0.5)}

    def validate(self) -> None:
        super().validate()
        self._check_non_negative(dropout=self.dropout)
        if not self.dropout < 1:
            raise FusebenchError(f"parameter dropout must be in [0, 1), got {self.dropout!r}")

    def build(self, data: FitData) -> nn.Module:
        return ConcatModule(data.n_users, self._features, int(self.embedding_size), float(self.dropout))

    def batch_loss(self, users, pos, neg):
        m = self.module_
        p = m.user(users)
        q_pos, q_neg = item_rows(m.items, m.n_items, pos, neg)
        return bpr_loss((p * q_pos).sum(-1), (p * q_neg).sum(-1))

    def score_tensor(self, users):
        return self.module_.user(users) @ self.module_.items().T
