"""VBPR (He & McAuley, AAAI 2016), following MMRec's implementation and defaults.

user embedding   p_u in R^{2d}                      (id embedding, Xavier-uniform)
item embedding   q_i = [e_i ; E f_i + b] in R^{2d}  (id embedding ; linear projection of features)
score(u, i)      = <p_u, q_i>
loss             = BPR + reg_weight * (||P_B|| + ||Q_pos|| + ||Q_neg||) / B

d = `embedding_size` (64). `f_i` is the concatenation of the selected modalities in selection
order (MMRec concatenates text then image). The regulariser is MMRec's `EmbLoss`: the
Frobenius norms (not squared) of the batch's user, positive and negative item embeddings,
summed and divided by the batch size, weighted by `reg_weight`. MMRec's VBPR.yaml searches
`reg_weight` over [2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5]; the default here is its first
value, 2.0 (with this un-squared, batch-averaged norm it is a mild penalty).

Features are concatenated raw, as MMRec does (`normalize_features=False`, the default, so a
default run equals a default MMRec run). `normalize_features=True` L2-normalises each modality
block per item first: raw blocks can differ in scale by orders of magnitude (an example, and
the accuracy of both settings, in docs/models.md).

Defaults: embedding 64, Adam lr 1e-3, batch 2048, no weight decay, 100 epochs (the benchmark
early-stops on validation).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from baselines.base import FitData, register
from baselines.params import NON_NEGATIVE
from baselines.torch_base import embedding_space

from .layers import ItemTowerFusion

REG_WEIGHTS = [2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5]  # MMRec's VBPR.yaml grid


class VBPRModule(nn.Module):
    def __init__(self, n_users: int, features: np.ndarray, dim: int):
        super().__init__()
        n_items, d_feat = features.shape
        self.user = nn.Embedding(n_users, 2 * dim)
        self.item = nn.Embedding(n_items, dim)
        nn.init.xavier_uniform_(self.user.weight)
        nn.init.xavier_uniform_(self.item.weight)
        self.proj = nn.Linear(d_feat, dim)
        nn.init.xavier_normal_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.register_buffer(
            "features", torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)), persistent=False
        )
        self.n_items = n_items

    def items(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        if idx is None:
            return torch.cat([self.item.weight, self.proj(self.features)], dim=-1)
        return torch.cat([self.item(idx), self.proj(self.features[idx])], dim=-1)


def emb_loss(*embeddings: torch.Tensor) -> torch.Tensor:
    """MMRec's EmbLoss: sum of Frobenius norms, divided by the batch size."""
    return sum(torch.linalg.norm(e) for e in embeddings) / embeddings[-1].shape[0]


@register
class VBPR(ItemTowerFusion):
    """VBPR: BPR matrix factorisation whose item vector includes a linear projection of its content.

    p_u in R^2d, q_i = [e_i ; E f_i + b], score(u, i) = <p_u, q_i>, trained with BPR plus
    MMRec's EmbLoss on the batch's user, positive and negative vectors; f_i concatenates the
    selected modalities in selection order (a missing feature is a zero block). Follows
    MMRec's implementation and defaults, so a default run equals a default MMRec run.

    Parameters
    ----------
    embedding_size : int, default 64
        d: the width of the id embedding e_i and of the projection E f_i (the user embedding
        is 2d). Accepted: int >= 1. Tuned by `search_space`.
    reg_weight : float, default 2.0
        Weight of the regulariser (||P_B|| + ||Q_pos|| + ||Q_neg||) / B, Frobenius norms not
        squared (the first value of MMRec's VBPR.yaml grid). Accepted: real >= 0. Tuned by
        `search_space` over MMRec's grid.
    learning_rate : float, default 1e-3
        Adam's learning rate. Accepted: real > 0. Tuned by `search_space`.
    weight_decay : float, default 0.0
        Adam's L2 weight decay (VBPR regularises through `reg_weight`, as in MMRec).
        Accepted: real >= 0.
    batch_size : int, default 2048
        Training triples per step. Accepted: int >= 1.
    epochs : int, default 100
        Epoch cap (the benchmark's protocol sets it and early-stops on validation).
        Accepted: int >= 1.
    normalize_features : bool, default False
        L2-normalise each modality block per item before concatenating (default: raw, as MMRec;
        raw blocks can differ in scale by orders of magnitude).
    modalities : str, default "all"
        The feature sets used: "all" or comma-separated names or family prefixes
        (`baselines.modalities`); the names are checked against the dataset in `init`.

    Attributes
    ----------
    modalities_ : list of str
        The feature sets selected, in the order they are concatenated.
    device_ : torch.device
        The device the model trains and scores on.
    module_ : torch.nn.Module
        `user` (n_users, 2d) and `item` (n_items, d) embeddings (Xavier-uniform), the
        projection `proj` (E, b) and the concatenated features (a non-persistent buffer).

    References
    ----------
    He, McAuley. VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback. AAAI 2016.

    MMRec's VBPR: github.com/enoche/MMRec, `src/models/vbpr.py` and
    `src/configs/model/VBPR.yaml`.
    """

    name = "vbpr"
    _parameter_constraints = {"reg_weight": [NON_NEGATIVE]}

    def __init__(
        self,
        embedding_size: int = 64,
        reg_weight: float = 2.0,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 2048,
        epochs: int = 100,
        normalize_features: bool = False,
        modalities: str = "all",
    ):
        self.embedding_size = embedding_size
        self.reg_weight = reg_weight
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.normalize_features = normalize_features
        self.modalities = modalities

    @classmethod
    def search_space(cls, trial):
        space = embedding_space(trial)
        del space["weight_decay"]  # VBPR regularises through reg_weight, as in MMRec
        space["reg_weight"] = trial.suggest_categorical("reg_weight", REG_WEIGHTS)
        return space

    def build(self, data: FitData) -> nn.Module:
        # a missing feature is a zero block (never the row's placeholder values)
        blocks = [x * self._masks[k][:, None] if k in self._masks else x for k, x in self._features.items()]
        feats = np.concatenate(blocks, axis=1)
        return VBPRModule(data.n_users, feats, int(self.embedding_size))

    def extra_loss(self, users, pos, neg, p, q_pos, q_neg):
        return self.reg_weight * emb_loss(p, q_pos, q_neg) if self.reg_weight else None
