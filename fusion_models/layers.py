"""Shared building blocks of the fusion models.

`prepare_features` turns the selected modalities into float32 matrices ready for a model (each
block optionally centred and L2-normalised per item, like `baselines.modalities.stack_features`
but kept per modality). `ModalityEncoders` holds those matrices as buffers (they move with
`.to(device)` but stay out of the state dict and the parameter count: they are input data) and
one projection head per modality to a common dimension, and the per-modality presence masks:
an item whose feature is missing gets a zero projection from `encode`, so a missing feature
never reads as content. `FusionRecommender` is the common base of the fusion models (modality
selection, validation, `used_modalities`); `ItemTowerFusion` adds the BPR step and full
scoring shared by the models whose item vector does not depend on the user.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from baselines.base import FitData
from baselines.bpr import bpr_loss
from baselines.modalities import SPEC, feature_mask, l2_normalize_rows, parse_spec, select_features
from baselines.params import DROPOUT, Options
from baselines.torch_base import TorchRecommender, embedding_space, item_rows
from datasets.errors import FusebenchError


def prepare_features(
    selected: dict[str, np.ndarray], normalize: bool = True, center: bool = False
) -> dict[str, np.ndarray]:
    """Per modality: optionally centred (column means removed), then optionally L2-normalised
    per item; float32, C-contiguous; the selection order is kept."""
    if not selected:
        raise FusebenchError("no feature set selected")
    out = {}
    for name, x in selected.items():
        x = np.asarray(x, dtype=np.float64)
        if center:
            x = x - x.mean(axis=0, keepdims=True)
        x = l2_normalize_rows(x) if normalize else x.astype(np.float32)
        out[name] = np.ascontiguousarray(x, dtype=np.float32)
    return out


class MaskedModalities(nn.Module):
    """What every set of modality encoders shares: the modality `names`, `n_items`, one
    presence mask per modality (buffer `mask{m}`: (n_items, 1) float, None when every item has
    the modality) and the stacked encodings; a subclass defines `encode(m, idx)`, zero where
    modality m is missing."""

    names: list[str]
    n_items: int

    def register_mask(self, m: int, present: np.ndarray | None) -> None:
        self.register_buffer(
            f"mask{m}",
            None if present is None or present.all() else torch.from_numpy(present.astype(np.float32)[:, None]),
            persistent=False,
        )

    def __len__(self) -> int:
        return len(self.names)

    def present(self, m: int, idx: torch.Tensor | None = None) -> torch.Tensor | None:
        """(len(idx) or n_items, 1) float, 1 where modality `m` is present; None if always."""
        mask = getattr(self, f"mask{m}")
        return mask if mask is None or idx is None else mask[idx]

    @property
    def complete(self) -> bool:
        """True when every item has every modality."""
        return all(getattr(self, f"mask{m}") is None for m in range(len(self.names)))

    def presence(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """(M, len(idx) or n_items, 1) float: 1 where modality m of the item is present."""
        n = self.n_items if idx is None else len(idx)
        ones = torch.ones(n, 1, device=next(self.parameters()).device)
        return torch.stack([ones if (p := self.present(m, idx)) is None else p for m in range(len(self.names))])

    def encode(self, m: int, idx: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """(M, len(idx) or n_items, dim): every modality's encoding."""
        return torch.stack([self.encode(m, idx) for m in range(len(self.names))])


class ModalityEncoders(MaskedModalities):
    """One head per modality: Linear(d_m, dim) [+ LeakyReLU] [+ dropout].

    `forward(idx)` returns a (n_modalities, len(idx), dim) tensor; `idx=None` means all items.
    Works for any number of modalities of any dimension (all with the same number of rows).
    """

    def __init__(
        self,
        features: dict[str, np.ndarray],
        dim: int,
        activation: bool = False,
        dropout: float = 0.0,
        bias: bool = True,
        masks: dict[str, np.ndarray] | None = None,
    ):
        super().__init__()
        if not features:
            raise FusebenchError("ModalityEncoders needs at least one modality")
        if not dropout >= 0 or not dropout < 1:
            raise FusebenchError(f"dropout must be in [0, 1), got {dropout!r}")
        self.names = list(features)
        rows = {np.asarray(x).shape[0] for x in features.values()}
        if len(rows) != 1:
            raise FusebenchError(f"feature sets have different numbers of rows: {sorted(rows)}")
        self.n_items = rows.pop()
        self.heads = nn.ModuleList()
        for i, (name, x) in enumerate(features.items()):
            x = np.ascontiguousarray(x, dtype=np.float32)
            if x.ndim != 2 or x.shape[1] == 0:
                raise FusebenchError(f"feature set {name!r} must be a 2-D (n_items, d) array, got shape {x.shape}")
            # buffers by position: modality names may contain '/' (not allowed in buffer names)
            self.register_buffer(f"feat{i}", torch.from_numpy(x), persistent=False)
            self.register_mask(i, feature_mask(masks, name, x.shape[0]))
            layers: list[nn.Module] = [nn.Linear(x.shape[1], dim, bias=bias)]
            nn.init.xavier_normal_(layers[0].weight)
            if bias:
                nn.init.zeros_(layers[0].bias)
            if activation:
                layers.append(nn.LeakyReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            self.heads.append(nn.Sequential(*layers))

    def feature(self, m: int) -> torch.Tensor:
        return getattr(self, f"feat{m}")

    def encode(self, m: int, idx: torch.Tensor | None = None) -> torch.Tensor:
        """(len(idx) or n_items, dim): modality `m` projected; zero where it is missing."""
        f = self.feature(m)
        z = self.heads[m](f if idx is None else f[idx])
        mask = self.present(m, idx)
        return z if mask is None else z * mask


LOSSES = ("bpr", "softmax", "sampled")
# tuning chooses between the pairwise loss and the sampled softmax; the full softmax scores
# every item in every batch (far dearer than BPR on a catalogue of thousands of items; the
# measurement is in docs/models.md) and stays a user's option
TUNED_LOSSES = ("bpr", "sampled")


def fusion_space(trial) -> dict:
    """The Optuna space shared by the fusion strategies: the embedding space and the loss."""
    return {
        **embedding_space(trial),
        "loss": trial.suggest_categorical("loss", list(TUNED_LOSSES)),
        "id_dropout": trial.suggest_float("id_dropout", 0.0, 0.5),
    }


def log_inclusion(pop: torch.Tensor, items: torch.Tensor, batch: int) -> torch.Tensor:
    """log P(item in a batch's candidate set) for `sampled_softmax_loss`: the set is the
    distinct items of `batch` positives (drawn in proportion to `pop`, the items' shares of
    the training interactions) and `batch` uniform negatives, so
    P(i in set) = 1 - (1 - pop_i)^batch (1 - 1/n)^batch."""
    n = pop.shape[0]
    log_out = batch * (torch.log1p(-pop[items].clamp(max=1 - 1e-7)) + torch.log1p(torch.tensor(-1.0 / n)))
    return torch.log(-torch.expm1(log_out))


def freeze_cold_ids(module: nn.Module, train) -> None:
    """Zero, and keep at zero, the id embeddings (`module.item`) of items with no training
    interaction: they carry no collaborative evidence, and as sampled negatives they would
    only learn to score low, which buries exactly the items content should surface in a
    cold-start split. Adam leaves a parameter with zero gradient (and zero value) unchanged."""
    item = getattr(module, "item", None)
    if not isinstance(item, nn.Embedding):
        return
    cold = np.asarray(train.getnnz(axis=0) == 0)
    if not cold.any():
        return
    warm = torch.from_numpy((~cold).astype(np.float32)[:, None]).to(item.weight.device)
    with torch.no_grad():
        item.weight.mul_(warm)
    item.weight.register_hook(lambda grad: grad * warm)


class FusionRecommender(TorchRecommender):
    """Common face of the feature-reading fusion models: modality selection and validation at
    the top of `init`, the selected names recorded in `modalities_`, `used_modalities()`.

    Subclasses set `embedding_size`, `modalities`, `normalize_features` (and the usual
    TorchRecommender hyper-parameters) in their constructors, declare their own parameters'
    ranges in `_parameter_constraints` (the shared ones are declared here and in
    TorchRecommender), and read the prepared per-modality matrices from `self._features` in `build`.
    """

    family = "fusion"
    # items without training interactions keep an all-zero id embedding (see freeze_cold_ids):
    # a property of the model, not a hyper-parameter; off for the published models, which
    # follow their reference code
    zero_cold_ids: ClassVar[bool] = False
    _parameter_constraints = {
        "loss": [Options(*LOSSES)],
        "id_dropout": [DROPOUT],
        "modalities": [SPEC],
        "normalize_features": [bool],
    }

    def validate(self) -> None:
        super().validate()
        parse_spec(self.modalities)  # the spec's syntax; the names are checked against the data in init

    def init(self, data: FitData) -> None:
        # parameter and feature validation first, before any state is built
        self.validate()
        self.modalities_ = self.select_inputs(data)
        super().init(data)
        if self.zero_cold_ids:
            freeze_cold_ids(self.module_, data.train)
        if isinstance(getattr(self.module_, "item", None), ItemIds):
            self.module_.item.id_dropout = float(self.param("id_dropout", 0.0))
        counts = np.asarray(data.train.getnnz(axis=0), dtype=np.float64)
        self._pop = torch.from_numpy(counts / max(counts.sum(), 1.0)).float().to(self.device_)

    def select_inputs(self, data: FitData) -> list[str]:
        """Read the selected modalities' inputs from `data` (here: the prepared feature matrices
        and their masks); returns their names."""
        selected = select_features(data.features, self.modalities, n_items=data.n_items)
        self._features = prepare_features(selected, normalize=bool(self.normalize_features))
        self._masks = {k: v for k, v in (data.feature_masks or {}).items() if k in selected}
        return list(selected)

    def encoders(self, dim: int, **kwargs) -> ModalityEncoders:
        """The projection heads over the selected modalities, with their presence masks."""
        return ModalityEncoders(self._features, dim, masks=self._masks, **kwargs)

    def used_modalities(self) -> list[str]:
        return list(getattr(self, "modalities_", []))

    def batch_loss(self, users, pos, neg):
        """BPR over (user, positive, sampled negative) triples; with `loss="softmax"` the full
        softmax cross-entropy of each positive against every item (negatives unused); with
        `loss="sampled"` the sampled softmax (`sampled_softmax_loss`)."""
        loss = self.training_loss()
        if loss == "softmax":
            return self.softmax_loss(users, pos)
        if loss == "sampled":
            return self.sampled_softmax_loss(users, pos, neg)
        return self.pair_loss(users, pos, neg)

    def training_loss(self) -> str:
        """The `loss` parameter; BPR for a model without one (the published models train with
        BPR, as their reference code does)."""
        return self.param("loss", "bpr")

    def pair_loss(self, users, pos, neg) -> torch.Tensor:
        raise NotImplementedError

    def pair_objective(self, pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
        """The loss of aligned (positive, sampled negative) scores: BPR, or with `loss="bce"`
        the sigmoid cross-entropy of each score against its label (1 positive, 0 negative)."""
        if self.training_loss() == "bce":
            return (F.softplus(-pos_scores) + F.softplus(neg_scores)).mean()
        return bpr_loss(pos_scores, neg_scores)

    def candidate_scores(self, users, idx: torch.Tensor | None) -> torch.Tensor:
        """(B, len(idx)) scores of every user of the batch against the items `idx` (None: all)."""
        raise NotImplementedError

    def score_tensor(self, users):
        return self.candidate_scores(users, None)

    def softmax_loss(self, users, pos) -> torch.Tensor:
        return F.cross_entropy(self.score_tensor(users), pos)

    def sampled_candidates(self, pos, neg):
        """The candidate set of the sampled softmax (the batch's distinct positives and sampled
        negatives), each row's target in it, and the logQ correction of every candidate."""
        cands, inv = torch.unique(torch.cat([pos, neg]), return_inverse=True)
        return cands, inv, log_inclusion(self._pop, cands, len(pos))

    def sampled_softmax_loss(self, users, pos, neg) -> torch.Tensor:
        """Cross-entropy of each positive against the batch's candidate set: its distinct
        positives (in-batch negatives, popularity-drawn) and sampled negatives, with the logQ
        correction of both proposals (Yi et al., RecSys 2019; Bengio and Senecal 2008) so the
        popular items in-batch negatives over-represent are not pushed down. The scores cover
        |candidates| <= 2B items instead of the whole catalogue."""
        cands, inv, log_q = self.sampled_candidates(pos, neg)
        return F.cross_entropy(self.candidate_scores(users, cands) - log_q, inv[: len(pos)])


class ItemTowerFusion(FusionRecommender):
    """Fusion models whose item vector q_i does not depend on the user: score = <p_u, q_i>.

    The module provides `user` (an embedding), `items(idx)` (item vectors; `idx=None` for all)
    and `n_items`; a model adds auxiliary terms (regularisers, alignment, adversarial losses)
    through `extra_loss`, which sees the batch and the vectors already computed for it.
    """

    def extra_loss(self, users, pos, neg, p, q_pos, q_neg) -> torch.Tensor | None:
        """Auxiliary terms; under the full softmax loss `neg` and `q_neg` are None."""
        return None

    def pair_loss(self, users, pos, neg):
        m = self.module_
        p = m.user(users)
        q_pos, q_neg = item_rows(m.items, m.n_items, pos, neg)
        loss = self.pair_objective((p * q_pos).sum(-1), (p * q_neg).sum(-1))
        extra = self.extra_loss(users, pos, neg, p, q_pos, q_neg)
        return loss if extra is None else loss + extra

    def softmax_loss(self, users, pos):
        m = self.module_
        p, q = m.user(users), m.items()
        loss = F.cross_entropy(p @ q.T, pos)
        extra = self.extra_loss(users, pos, None, p, q[pos], None)
        return loss if extra is None else loss + extra

    def sampled_softmax_loss(self, users, pos, neg):
        m = self.module_
        cands, inv, log_q = self.sampled_candidates(pos, neg)
        p, q = m.user(users), m.items(None if len(cands) == m.n_items else cands)
        loss = F.cross_entropy(p @ q.T - log_q, inv[: len(pos)])
        extra = self.extra_loss(users, pos, neg, p, q[inv[: len(pos)]], q[inv[len(pos) :]])
        return loss if extra is None else loss + extra

    def candidate_scores(self, users, idx):
        return self.module_.user(users) @ self.module_.items(idx).T


def mlp(sizes: list[int], dropout: float = 0.0, activation=nn.LeakyReLU) -> nn.Sequential:
    """Linear layers of the given sizes with `activation` (and dropout) between them;
    Xavier-normal weights, zero biases."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b)
        nn.init.xavier_normal_(lin.weight)
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(activation())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class ItemIds(nn.Embedding):
    """Item id embeddings with DropoutNet-style id dropout (Volkovs et al., NeurIPS 2017).

    In training, each item row of a batch is zeroed with probability `id_dropout`, so the
    model must also rank items from their content alone, which is all it has for an item
    never seen in training. Off (0) in evaluation; `rows(None)` is every item.
    """

    id_dropout: float = 0.0

    def rows(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        w = self.weight if idx is None else self(idx)
        if self.training and self.id_dropout > 0:
            w = w * (torch.rand(w.shape[0], 1, device=w.device) >= self.id_dropout).to(w.dtype)
        return w


def id_embeddings(n_users: int, n_items: int, dim: int) -> tuple[nn.Embedding, ItemIds]:
    """The user and item id embeddings of the backbone (Xavier-normal, as RecBole's BPR)."""
    user, item = nn.Embedding(n_users, dim), ItemIds(n_items, dim)
    nn.init.xavier_normal_(user.weight)
    nn.init.xavier_normal_(item.weight)
    return user, item
