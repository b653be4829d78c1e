"""Which item feature sets (modalities) a model uses: one parser, one set of error messages.

Models that read item features take a ``modalities: str = "all"`` constructor parameter and
call :func:`select_features` at the top of ``fit``/``init``. A spec is ``"all"`` or a
comma-separated list of names. A name is either an exact feature-set name of the dataset
(``"text"``, ``"audio/vggish"``) or a family prefix that selects every feature set of that
family (``"audio"`` selects ``"audio/vggish"`` and ``"audio/whisper"`` when the dataset has no
plain ``"audio"``). Selection keeps the order of the spec (``"all"``: the dataset's order), so
the same spec on the same dataset always yields the same concatenation.

:func:`stack_features` turns a selection into one matrix: each block is L2-normalised per
item (optionally centred first), then the blocks are concatenated, so that no modality
dominates because of its dimension or scale; the cosine between two concatenated rows is then
the mean of the per-modality cosines (for items whose rows are all non-zero).
"""

from __future__ import annotations

import numpy as np

from datasets.errors import FusebenchError

from .params import InstanceOf

ALL = "all"
# the declared constraint of every `modalities` parameter; its syntax is then checked by
# parse_spec in the model's validate(), its names against the data in fit/init
SPEC = InstanceOf(str, "str: 'all' or names, comma-separated", "a string like 'all' or 'text,audio/vggish'")


def parse_spec(spec: str) -> list[str] | None:
    """``"all"`` -> None; ``"text, audio/vggish"`` -> ``["text", "audio/vggish"]``."""
    if not isinstance(spec, str):
        raise FusebenchError(f"modalities must be a string like 'all' or 'text,audio/vggish', got {spec!r}")
    names = [s.strip() for s in spec.split(",")]
    if not any(names):
        raise FusebenchError("modalities is empty; use 'all' or a comma-separated list of feature sets")
    if any(not n for n in names):
        raise FusebenchError(f"modalities {spec!r} has an empty entry")
    if ALL in names:
        if len(names) > 1:
            raise FusebenchError(f"modalities {spec!r}: 'all' cannot be combined with other names")
        return None
    if len(set(names)) != len(names):
        raise FusebenchError(f"modalities {spec!r} names a feature set twice")
    return names


def select_features(
    features: dict[str, np.ndarray], spec: str = ALL, n_items: int | None = None
) -> dict[str, np.ndarray]:
    """The feature sets named by ``spec`` (see the module doc), validated.

    Raises FusebenchError when the dataset has no item features, when a name matches no
    feature set (the message lists the available ones), or when a matrix is not a finite 2-D
    array with one row per item (``n_items``, when given).
    """
    names = parse_spec(spec)
    available = list(features or {})
    if not available:
        raise FusebenchError("this model needs item features, but the dataset has none (no modality)")
    if names is None:
        chosen = available
    else:
        chosen = []
        for name in names:
            if name in features:
                hits = [name]
            else:
                hits = [a for a in available if a.startswith(name + "/")]
            if not hits:
                raise FusebenchError(f"unknown modality {name!r}; this dataset has: {', '.join(available)} (or 'all')")
            for h in hits:
                if h in chosen:
                    raise FusebenchError(f"modalities {spec!r} selects {h!r} twice")
                chosen.append(h)
    out: dict[str, np.ndarray] = {}
    for name in chosen:
        x = np.asarray(features[name])
        if x.ndim != 2 or x.shape[1] == 0:
            raise FusebenchError(
                f"feature set {name!r} must be a 2-D (n_items, d) array with d > 0, got shape {x.shape}"
            )
        if n_items is not None and x.shape[0] != n_items:
            raise FusebenchError(f"feature set {name!r} has {x.shape[0]} rows but there are {n_items} items")
        if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
            raise FusebenchError(f"feature set {name!r} has non-finite or non-numeric values")
        out[name] = x
    return out


def feature_mask(masks: dict[str, np.ndarray] | None, name: str, n_items: int) -> np.ndarray | None:
    """Modality `name`'s presence mask from `FitData.feature_masks` as bool (n_items,), checked;
    None when the modality has none (every item present)."""
    m = (masks or {}).get(name)
    if m is None:
        return None
    m = np.asarray(m, dtype=bool)
    if m.shape != (n_items,):
        raise FusebenchError(f"feature mask of {name!r} has shape {m.shape}, expected ({n_items},)")
    return m


def l2_normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def stack_features(selected: dict[str, np.ndarray], center: bool = False) -> np.ndarray:
    """One float32 (n_items, sum d) matrix: per block optionally centred (column means
    removed), then rows L2-normalised, then blocks concatenated in selection order."""
    if not selected:
        raise FusebenchError("no feature set selected")
    blocks = []
    for x in selected.values():
        x = np.asarray(x, dtype=np.float64)
        if center:
            x = x - x.mean(axis=0, keepdims=True)
        blocks.append(l2_normalize_rows(x))
    return np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=np.float32)
