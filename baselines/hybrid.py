"""Hybrid blend: a weighted sum of a collaborative and a content model's per-user normalised scores.

score(u) = (1 - weight) * norm_u(cf.score(u)) + weight * norm_u(content.score(u)).

Both sub-models are built by name with `make_model` and their own defaults, and fitted on the
same `FitData` (iterative sub-models, e.g. `bpr`, are trained for their fixed `epochs` by their
`fit`, without the benchmark's early stopping; the defaults, EASE and content-kNN, are one-shot).

Normalisation (`normalize`): scores of different models live on unrelated scales, so each
user's score vector is mapped per model before blending. The statistics are taken over the
user's *candidate* items only, i.e. the items not in their training row: seen items are
masked at evaluation, and their scores (typically the largest ones for item-item models) would
otherwise set the scale and squash the differences among the items that can be recommended.
Seen items get the same affine map (so they may leave the range); a user whose candidate
scores are all equal gets 0 for that model.
- "zscore" (default): (s - mean) / std over the candidates;
- "minmax": (s - min) / (max - min) over the candidates (each model's best candidate is 1).
z-scores are the default because a sparse top-k score vector's maximum is a poor scale: with
min-max the blend is far more sensitive to the weight. The default weight 0.2 was chosen on
validation splits; the tuner searches weight in [0, 1] (`search_space`). The comparisons are in
docs/models.md.

`weight` = 0 (1) is exactly the CF (content) model: the other one is then neither fitted nor
used (and its modalities are not recorded). `weight` is what the tuner picks on validation.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from datasets.errors import FusebenchError

from .base import FitData, Recommender, builtin_model, get_model_class, make_model, register
from .params import UNIT, InstanceOf, Options

NORMALIZATIONS = ("minmax", "zscore")
MODEL_NAME = InstanceOf(str, "model name", "a model name")  # resolved in validate()


def normalize_scores(scores: np.ndarray, seen: sp.csr_matrix | None, how: str = "zscore") -> np.ndarray:
    """Per-row affine normalisation of `scores` with statistics over the unseen items (float64)."""
    s = np.asarray(scores, dtype=np.float64)
    cand = np.ones(s.shape, dtype=bool)
    if seen is not None and seen.nnz:
        coo = seen.tocoo()
        cand[coo.row, coo.col] = False
    finite = np.isfinite(s)
    cand &= finite
    has = cand.any(axis=1)
    if how == "minmax":
        lo = np.where(cand, s, np.inf).min(axis=1)
        hi = np.where(cand, s, -np.inf).max(axis=1)
        shift, scale = lo, hi - lo
    elif how == "zscore":
        cnt = np.maximum(cand.sum(axis=1), 1)
        shift = np.where(cand, s, 0.0).sum(axis=1) / cnt
        scale = np.sqrt(np.where(cand, (s - shift[:, None]) ** 2, 0.0).sum(axis=1) / cnt)
    else:
        raise FusebenchError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {how!r}")
    ok = has & (scale > 0) & np.isfinite(scale)
    shift = np.where(ok, shift, 0.0)
    scale = np.where(ok, scale, 1.0)
    out = (s - shift[:, None]) / scale[:, None]
    out[~ok] = 0.0
    out[~finite] = -np.inf  # a NaN/-inf score stays at the bottom
    return out


@register
class HybridBlend(Recommender):
    """Weighted hybrid: a blend of a collaborative and a content model's normalised scores.

    score(u) = (1 - weight) * norm_u(cf.score(u)) + weight * norm_u(content.score(u)), each
    model's scores mapped per user with statistics over the user's candidate (unseen) items
    (see the module docstring). Both sub-models are built by registry name (fusebench's own
    models, or RecBole's as `recbole:NAME`) with their defaults and fitted on the same data; an
    iterative one trains for its fixed `epochs`, without the benchmark's early stopping. weight 0
    (1) fits and uses only the CF (content) model.

    Parameters
    ----------
    cf : str, default "ease"
        Registry name of the collaborative model (a built-in model or `recbole:NAME`; not
        `hybrid-blend` itself). Accepted: model name.
    content : str, default "content-knn"
        Registry name of the content model (same rules as `cf`). Accepted: model name.
    weight : float, default 0.2
        The content model's share of the blend. Accepted: real in [0, 1]. Tuned by
        `search_space`.
    normalize : str, default "zscore"
        Per-user score normalisation before blending: "zscore" ((s - mean) / std over the
        candidates) or "minmax" ((s - min) / (max - min) over the candidates). Accepted: one
        of minmax, zscore.

    Attributes
    ----------
    weight_ : float
        The weight used by the fitted blend.
    cf_model_ : Recommender or None
        The fitted collaborative model (None when weight is 1).
    content_model_ : Recommender or None
        The fitted content model (None when weight is 0).

    References
    ----------
    Burke. Hybrid Recommender Systems: Survey and Experiments. User Modeling and
    User-Adapted Interaction 12(4), 2002 (the weighted hybrid).
    """

    name = "hybrid-blend"
    family = "baseline/hybrid"
    _parameter_constraints = {
        "cf": [MODEL_NAME],
        "content": [MODEL_NAME],
        "weight": [UNIT],
        "normalize": [Options(*NORMALIZATIONS)],
    }

    def __init__(self, cf: str = "ease", content: str = "content-knn", weight: float = 0.2, normalize: str = "zscore"):
        self.cf = cf
        self.content = content
        self.weight = weight
        self.normalize = normalize

    @classmethod
    def needs(cls, params=None) -> set[str]:
        p = {**cls.defaults(), **(params or {})}
        return get_model_class(p["cf"]).needs() | get_model_class(p["content"]).needs()

    @classmethod
    def search_space(cls, trial):
        return {"weight": trial.suggest_float("weight", 0.0, 1.0)}

    def validate(self) -> None:
        super().validate()
        for role in ("cf", "content"):  # model names: they must name a model, and not this one
            name = getattr(self, role)
            cls = get_model_class(name)  # unknown names raise FusebenchError here
            if cls is type(self):
                raise FusebenchError(f"hybrid-blend cannot nest itself (parameter {role}={name!r})")
            if not builtin_model(cls.name) and not name.startswith("recbole:"):
                # a user's class inside the blend would run without its hash in the record's key
                raise FusebenchError(
                    f"hybrid-blend blends fusebench's own models; parameter {role}={name!r} is "
                    "not one (benchmark your model on its own row instead)"
                )

    def uses_seed(self) -> bool:
        w = float(self.weight)
        parts = ([self.cf] if w < 1.0 else []) + ([self.content] if w > 0.0 else [])
        return any(make_model(name).uses_seed() for name in parts)

    def fit(self, data: FitData) -> "HybridBlend":
        self.validate()
        w = float(self.weight)
        self.weight_ = w
        self.cf_model_ = make_model(self.cf).fit(data) if w < 1.0 else None
        self.content_model_ = make_model(self.content).fit(data) if w > 0.0 else None
        self._train = data.train.tocsr()
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        w = self.weight_
        if self.content_model_ is None:
            return np.asarray(self.cf_model_.score(users), dtype=np.float32)
        if self.cf_model_ is None:
            return np.asarray(self.content_model_.score(users), dtype=np.float32)
        seen = self._train[users]
        a = normalize_scores(self.cf_model_.score(users), seen, self.normalize)
        b = normalize_scores(self.content_model_.score(users), seen, self.normalize)
        return ((1.0 - w) * a + w * b).astype(np.float32)

    def used_modalities(self) -> list[str]:
        out: list[str] = []
        for m in (getattr(self, "cf_model_", None), getattr(self, "content_model_", None)):
            if m is not None:
                out += [x for x in m.used_modalities() if x not in out]
        return out

    def n_parameters(self) -> int:
        return int(sum(m.n_parameters() for m in (self.cf_model_, self.content_model_) if m is not None))
