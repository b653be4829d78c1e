"""`load(name)` and `available()`: the dataset names fusebench knows.

Names: ``ml-100k`` (from the installed recbole package), ``ml-latest-small`` (vendored),
``lfm2k`` (mirror / cache / verified download), ``ml-1m`` (GroupLens zip: mirror / cache /
MD5-verified download; `datasets.ml1m`), ``amazon-baby`` / ``amazon-sports`` /
``amazon-clothing`` (MMRec's processed folders in the mirror; `datasets.amazon`),
``mmrec:PATH`` (any MMRec-format folder),
``recbole:PATH`` (any RecBole atomic dataset folder; see `datasets.atomic.load_recbole_folder`)
and ``catalogue:PATH`` (a raw-content catalogue folder; see `datasets.catalogue`).
``ALIAS=SPEC`` loads SPEC under the name ALIAS (two folders whose files share a name can
then sit in one run: ``shop_a=mmrec:/a,shop_b=mmrec:/b``). Every loaded dataset keeps the
canonical spec it was loaded from in ``meta["spec"]``: that, not its short name, is what a
worker process or a later command loads again.
Features extracted with ``features extract`` (`datasets.encoders.store`) are attached to
the dataset they were extracted for. Loaded datasets are cached in-process (they are
immutable: their feature matrices, masks and given split are read-only arrays), keyed by
name, resolved mirror/cache folders and rating threshold.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from .core import MultimodalDataset
from .download import cache_dir, mirror_dir
from .errors import FusebenchError
from .specs import CATALOGUE_PREFIX, MMREC_PREFIX, PATH_PREFIXES, RECBOLE_PREFIX, split_alias


def _ml100k(data_dir):
    from .movielens import load_ml100k

    return load_ml100k()


def _mls(data_dir):
    from .movielens import load_ml_latest_small

    return load_ml_latest_small()


def _lfm2k(data_dir):
    from .lfm2k import load_lfm2k

    return load_lfm2k(data_dir)


def _ml1m(data_dir):
    from .ml1m import load_ml1m

    return load_ml1m(data_dir)


def _amazon(name: str) -> Callable[[str | None], MultimodalDataset]:
    def load(data_dir):
        from .amazon import load_amazon

        return load_amazon(name, data_dir)

    return load


LOADERS: dict[str, Callable[[str | None], MultimodalDataset]] = {
    "ml-100k": _ml100k,
    "ml-latest-small": _mls,
    "lfm2k": _lfm2k,
    "ml-1m": _ml1m,
    "amazon-baby": _amazon("amazon-baby"),
    "amazon-sports": _amazon("amazon-sports"),
    "amazon-clothing": _amazon("amazon-clothing"),
}


def missing_files(name: str, data_dir: str | os.PathLike | None = None) -> list[str]:
    """For the datasets whose files the user provides (ml-1m offline, amazon-*): one line per
    absent file (``PATH  <- where it comes from``); [] when loading can proceed (or for names
    whose files ship with fusebench or its dependencies)."""
    name = resolve_name(name)
    if name == "ml-1m":
        from .ml1m import missing_files as ml1m_missing

        return ml1m_missing(data_dir)
    if name.startswith("amazon-"):
        from .amazon import missing_files as amazon_missing

        return amazon_missing(name, data_dir)
    return []


def available() -> list[str]:
    """Names `load` accepts (plus ``mmrec:PATH`` / ``recbole:PATH`` / ``catalogue:PATH`` folders)."""
    return list(LOADERS)


def _freeze(ds: MultimodalDataset) -> MultimodalDataset:
    for mat in ds.features.values():
        mat.flags.writeable = False
    for mask in ds.feature_masks.values():
        mask.flags.writeable = False
    if ds.given_split is not None:
        ds.given_split.flags.writeable = False
    for arr in (ds.user_ids, ds.item_ids):
        if isinstance(arr, np.ndarray):
            arr.flags.writeable = False
    return ds


@lru_cache(maxsize=16)
def _load_cached(
    name: str, mirror: str | None, cache: str, threshold: float | None, extracted: bool = True
) -> MultimodalDataset:
    if threshold is not None:
        return _freeze(_load_cached(name, mirror, cache, None, extracted).implicit(threshold))
    alias, spec = split_alias(name)
    if alias is not None:
        ds = _load_cached(spec, mirror, cache, None, extracted)
        return _freeze(replace(ds, name=alias, meta={**ds.meta, "spec": name}))
    ds = _load_spec(name, mirror, extracted)
    object.__setattr__(ds, "meta", {**ds.meta, "spec": name})  # not replace(): that validates again
    return _freeze(ds)


def _load_spec(name: str, mirror: str | None, extracted: bool) -> MultimodalDataset:
    if name.startswith(CATALOGUE_PREFIX):
        from .catalogue import load_catalogue

        return load_catalogue(name[len(CATALOGUE_PREFIX) :], extracted=extracted)
    if name.startswith(MMREC_PREFIX):
        from .mmrec import load_mmrec_folder

        ds = load_mmrec_folder(name[len(MMREC_PREFIX) :])  # marks all-zero feature rows missing
    elif name.startswith(RECBOLE_PREFIX):
        from .atomic import load_recbole_folder

        ds = load_recbole_folder(name[len(RECBOLE_PREFIX) :])
    else:
        ds = LOADERS[name](mirror)
    if not extracted:
        return ds
    from .encoders.store import attach, store_dir

    return attach(ds, store_dir(name))


def resolve_name(name: str) -> str:
    """The canonical form of a dataset name (``PREFIX:PATH`` with an absolute path);
    FusebenchError for an unknown name."""
    if not isinstance(name, str):
        raise FusebenchError(f"dataset name must be a string, got {name!r}")
    alias, spec = split_alias(name)
    if alias is not None:
        if alias in LOADERS:
            raise FusebenchError(f"{name!r}: {alias!r} is the name of a registered dataset; pick another name")
        return f"{alias}={resolve_name(spec)}"
    if name.startswith(PATH_PREFIXES):
        prefix = next(p for p in PATH_PREFIXES if name.startswith(p))
        path = name[len(prefix) :]
        if not path:
            raise FusebenchError(f"{prefix} needs a folder, e.g. {prefix}/data/baby")
        return prefix + str(Path(path).expanduser().resolve())
    if name not in LOADERS:
        raise FusebenchError(
            f"unknown dataset {name!r}; available: {', '.join(available())} (or mmrec:PATH / recbole:PATH / "
            "catalogue:PATH for an MMRec / RecBole atomic / raw-content catalogue folder)"
        )
    return name


def load(
    name: str,
    data_dir: str | os.PathLike | None = None,
    rating_threshold: float | None = None,
    extracted: bool = True,
) -> MultimodalDataset:
    """Load a dataset by name; ``rating_threshold`` keeps ratings >= it as positives.

    ``extracted=False`` leaves out the features that ``features extract`` attached to it.

    ``data_dir`` is an offline mirror folder (default ``$FUSEBENCH_DATA_DIR``) holding
    ``<dataset>/<file>`` or ``<file>``; it matters for downloaded datasets (lfm2k).
    """
    name = resolve_name(name)
    if rating_threshold is not None:
        try:
            rating_threshold = float(rating_threshold)
        except (TypeError, ValueError) as exc:
            raise FusebenchError(f"rating_threshold must be a number, got {rating_threshold!r}") from exc
        if not np.isfinite(rating_threshold):
            raise FusebenchError(f"rating_threshold must be finite, got {rating_threshold!r}")
    mirror = mirror_dir(data_dir)
    return _load_cached(
        name,
        None if mirror is None else str(mirror.resolve()),
        str(cache_dir().resolve()),
        rating_threshold,
        bool(extracted),
    )


def clear_cache() -> None:
    """Forget datasets loaded in this process (e.g. after the files changed)."""
    _load_cached.cache_clear()
