"""Feature-augmented matrix factorisation in the style of LightFM (Kula, 2015).

item embedding  q_i = e_i + W f_i     (id embedding + linear projection of the item features)
user embedding  p_u = e_u             (id embedding)
score(u, i)     = <p_u, q_i>

`f_i` is the selected modalities, each L2-normalised per item (optionally centred first) and
concatenated (`baselines.modalities.stack_features`). Losses: "bpr" (default; one uniform
negative per training pair) or "warp" (Weston et al., 2011, as in LightFM): for each training
pair, up to `max_trials` negatives are drawn; the first one that violates the margin
(s_neg > s_pos - 1) gives the hinge loss max(0, 1 - s_pos + s_neg), weighted by
log(floor((n_candidates - 1) / trials)); pairs with no violation contribute 0. The sampling
and the search for the first violator are vectorised over the batch (scores of the B x T
candidates are computed without gradient; the loss is then taken on the chosen ones).

Cold-start items: an item with no training interaction must be scored by its features alone.
Two things make that work: (1) item id embeddings start at zero (user id embeddings and the
projection use the usual random init), so an item the loss never touches keeps e_i = 0 and
q_i = W f_i; (2) negatives are drawn only among items with at least one training interaction
("warm" items): with uniform negatives over all items, a never-interacted item is only ever a
negative, its id embedding is pushed away from every user, and cold items are ranked last for
a reason that has nothing to do with their content. (The shared `NegativeSampler` has no
candidate set, so the draw lives here; its membership test is reused to reject positives.)
When every item has a training interaction this is plain uniform sampling.

Defaults: embedding 64, Adam lr 1e-3, batch 2048, no weight decay (as `bpr`), and 50 epochs
for a plain `fit` (under the benchmark's protocols patience on validation stops it, up to the
protocol's maximum; see docs/models.md).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .base import FitData, register
from .bpr import bpr_loss
from .modalities import SPEC, parse_spec, select_features, stack_features
from .params import POSITIVE_INT, Options
from .torch_base import TorchRecommender, embedding_space, item_rows

LOSSES = ("bpr", "warp")


class FeatureMF(nn.Module):
    def __init__(self, n_users: int, features: np.ndarray, dim: int, use_item_ids: bool = True):
        super().__init__()
        n_items, d_feat = features.shape
        self.user = nn.Embedding(n_users, dim)
        nn.init.xavier_normal_(self.user.weight)
        self.item = nn.Embedding(n_items, dim) if use_item_ids else None
        if self.item is not None:
            nn.init.zeros_(self.item.weight)
        self.proj = nn.Linear(d_feat, dim, bias=False)
        nn.init.xavier_normal_(self.proj.weight)
        # input data, not learned: kept out of the state dict and the parameter count
        self.register_buffer(
            "features", torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)), persistent=False
        )

    def items(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        f = self.features if idx is None else self.features[idx]
        q = self.proj(f)
        if self.item is not None:
            q = q + (self.item.weight if idx is None else self.item(idx))
        return q


@register
class FeatureMFRecommender(TorchRecommender):
    """Feature-augmented matrix factorisation in the style of LightFM: q_i = e_i + W f_i.

    score(u, i) = <e_u, e_i + W f_i>, f_i the selected modalities (each optionally centred,
    L2-normalised per item, concatenated). Item id embeddings start at zero and negatives are
    drawn among items with at least one training interaction, so a cold-start item is scored
    by its features alone (see the module docstring). Trained with BPR (one negative per pair)
    or LightFM's WARP loss.

    Parameters
    ----------
    embedding_size : int, default 64
        Width of the embeddings and of the feature projection. Accepted: int >= 1. Tuned by
        `search_space`.
    learning_rate : float, default 1e-3
        Adam's learning rate. Accepted: real > 0. Tuned by `search_space`.
    weight_decay : float, default 0.0
        Adam's L2 weight decay. Accepted: real >= 0. Tuned by `search_space`.
    batch_size : int, default 2048
        Training pairs per step. Accepted: int >= 1.
    epochs : int, default 50
        Epoch cap (the benchmark's protocol sets it and early-stops on validation).
        Accepted: int >= 1.
    loss : str, default "bpr"
        "bpr" (-log sigmoid(s_pos - s_neg)) or "warp" (hinge on the first of up to
        `max_trials` negatives that violates the margin, weighted by log(floor((n - 1) /
        trials)), n the number of warm items). Accepted: one of bpr, warp. Tuned by
        `search_space`.
    max_trials : int, default 10
        Negatives drawn per pair by WARP. Accepted: int >= 1.
    use_item_ids : bool, default True
        Add the item id embedding e_i (False: items are their projected features only).
    center : bool, default True
        Subtract each modality's mean vector before normalising.
    modalities : str, default "all"
        The feature sets used: "all" or comma-separated names or family prefixes
        (`baselines.modalities`); the names are checked against the dataset in `init`.

    Attributes
    ----------
    modalities_ : list of str
        The feature sets selected, in the order they were concatenated.
    device_ : torch.device
        The device the model trains and scores on.
    module_ : torch.nn.Module
        `user` and `item` embeddings, the projection `proj` (W, no bias) and the feature
        matrix (a non-persistent buffer: input data, not learned state).

    References
    ----------
    Kula. Metadata Embeddings for User and Item Cold-start Recommendations. CBRecSys
    workshop at RecSys 2015.

    Weston, Bengio, Usunier. WSABIE: Scaling Up To Large Vocabulary Image Annotation. IJCAI
    2011 (the WARP loss).

    Rendle, Freudenthaler, Gantner, Schmidt-Thieme. BPR: Bayesian Personalized Ranking from
    Implicit Feedback. UAI 2009.
    """

    name = "feature-mf"
    family = "baseline/hybrid"
    _parameter_constraints = {
        "loss": [Options(*LOSSES)],
        "max_trials": [POSITIVE_INT],
        "use_item_ids": [bool],
        "center": [bool],
        "modalities": [SPEC],
    }

    def __init__(
        self,
        embedding_size: int = 64,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 2048,
        epochs: int = 50,
        loss: str = "bpr",
        max_trials: int = 10,
        use_item_ids: bool = True,
        center: bool = True,
        modalities: str = "all",
    ):
        self.embedding_size = embedding_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.loss = loss
        self.max_trials = max_trials
        self.use_item_ids = use_item_ids
        self.center = center
        self.modalities = modalities

    @classmethod
    def search_space(cls, trial):
        return {**embedding_space(trial), "loss": trial.suggest_categorical("loss", list(LOSSES))}

    # --- setup ---------------------------------------------------------------------------
    def validate(self) -> None:
        super().validate()
        parse_spec(self.modalities)  # the spec's syntax; the names are checked against the data in init

    def init(self, data: FitData) -> None:
        # parameter and feature validation first, before any state is built
        self.validate()
        self._selected = select_features(data.features, self.modalities, n_items=data.n_items)
        super().init(data)

    def build(self, data: FitData) -> nn.Module:
        selected = self._selected
        self.modalities_ = list(selected)
        feats = stack_features(selected, center=bool(self.center))
        # negatives come from items with at least one training interaction (module doc)
        pop = np.asarray(data.train.getnnz(axis=0)).ravel()
        self._candidates = np.flatnonzero(pop > 0).astype(np.int64)
        if len(self._candidates) == 0:
            self._candidates = np.arange(data.n_items, dtype=np.int64)
        return FeatureMF(data.n_users, feats, int(self.embedding_size), bool(self.use_item_ids))

    # --- sampling -------------------------------------------------------------------------
    def _draw(self, shape) -> np.ndarray:
        return self._candidates[self._rng.integers(0, len(self._candidates), size=shape)]

    def _negatives(self, users: np.ndarray, max_rounds: int = 20) -> np.ndarray:
        """One negative per user among the warm items, not a training positive of that user
        (redrawn up to `max_rounds`; a user with every warm item keeps the last draw)."""
        neg = self._draw(len(users))
        for _ in range(max_rounds):
            bad = np.flatnonzero(self._sampler.is_positive(users, neg))
            if len(bad) == 0:
                break
            neg[bad] = self._draw(len(bad))
        return neg

    def epoch_batches(self):
        s = self._sampler
        order = self._rng.permutation(len(s.users))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            u, pos = s.users[idx], s.items[idx]
            if self.loss == "bpr":
                yield u, pos, self._negatives(u)
            else:
                cand = self._draw((len(u), int(self.max_trials)))
                valid = ~s.is_positive(np.repeat(u, cand.shape[1]), cand.ravel()).reshape(cand.shape)
                yield u, pos, cand, valid

    # --- losses ---------------------------------------------------------------------------
    def batch_loss(self, users, pos, neg, valid=None):
        m = self.module_
        p = m.user(users)
        if self.loss == "bpr":
            q_pos, q_neg = self._item_rows(pos, neg)
            return bpr_loss((p * q_pos).sum(-1), (p * q_neg).sum(-1))
        (q_pos,) = self._item_rows(pos)
        return self._warp_loss(p, (p * q_pos).sum(-1), neg, valid)

    def _item_rows(self, *idx):
        return item_rows(self.module_.items, self.module_.features.shape[0], *idx)

    def _warp_loss(self, p, s_pos, cand, valid):
        m = self.module_
        b, t = cand.shape
        with torch.no_grad():
            # all item vectors once when that is cheaper than b * t gathered projections
            q = m.items()[cand] if m.features.shape[0] <= b * t else m.items(cand.reshape(-1)).reshape(b, t, -1)
            s_cand = torch.einsum("bd,btd->bt", p, q)
            violates = valid & (s_cand > (s_pos.unsqueeze(1) - 1.0))
            hit = violates.any(dim=1)
            # index of the first violator: argmax over a 0/1 int tensor returns the first max
            first = violates.to(torch.int8).argmax(dim=1)
            trials = (first + 1).to(torch.float64)
            n_cand = len(self._candidates)
            weight = torch.log(torch.clamp(torch.floor((n_cand - 1) / trials), min=1.0)).to(s_pos.dtype)
        if not bool(hit.any()):
            return (s_pos * 0.0).sum()  # keeps the graph; a zero loss
        chosen = cand[torch.arange(b, device=cand.device), first]
        (q_neg,) = self._item_rows(chosen)
        s_neg = (p * q_neg).sum(-1)
        per_pair = weight * torch.relu(1.0 - s_pos + s_neg) * hit.to(s_pos.dtype)
        return per_pair.mean()

    # --- scoring --------------------------------------------------------------------------
    def score_tensor(self, users):
        return self.module_.user(users) @ self.module_.items().T

    def used_modalities(self) -> list[str]:
        return list(getattr(self, "modalities_", []))
