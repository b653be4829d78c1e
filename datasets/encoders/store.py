"""Extracted feature matrices attached to a dataset (what ``features extract`` writes).

A store is a folder holding, per extracted modality, ``<slug>.npy`` (float32, one row per
item in the dataset's item order), ``<slug>.mask.npy`` (bool, True = present) and one
``index.json`` that records the item ids the rows are aligned to and, per modality, the
encoder (name, version, settings, content fingerprint), the number of missing items and
why each is missing. Where it lives:

- a catalogue dataset (``catalogue:PATH``): ``PATH/features/``, beside its content;
- any other dataset: ``<cache>/features/<dataset>/`` (``$FUSEBENCH_CACHE`` or
  ``~/.cache/fusebench``).

`datasets.load` attaches every stored modality to the dataset (after its own ones, which a
store can never replace), with its mask and its encoder in ``meta["features"]``, so models see
it like any precomputed feature file; the dataset's fingerprint changes accordingly. Files
are written through temporary files and renamed, the index last.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..core import MODALITY_ROOTS, MultimodalDataset
from ..download import atomic_write, cache_dir
from ..errors import FusebenchError
from ..specs import CATALOGUE_PREFIX
from .cache import slug

INDEX = "index.json"


def store_dir(dataset_name: str) -> Path:
    """Where ``features extract`` writes for ``dataset_name`` (see the module doc)."""
    if dataset_name.startswith(CATALOGUE_PREFIX):
        return Path(dataset_name[len(CATALOGUE_PREFIX) :]) / "features"
    return cache_dir() / "features" / slug(dataset_name)


def _inside(folder: Path, name: str, dataset: str) -> Path:
    """`folder / name`, refused when the index points anywhere else (``../``, an absolute path,
    a link out): an index is data, and data does not choose which files are read."""
    path = (Path(folder) / name).resolve()
    if not path.is_relative_to(Path(folder).resolve()):
        raise FusebenchError(f"dataset {dataset!r}: {Path(folder) / INDEX} points outside its folder ({name!r})")
    return path


def read_index(folder: Path) -> dict[str, Any] | None:
    p = Path(folder) / INDEX
    if not p.is_file():
        return None
    try:
        idx = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FusebenchError(f"extracted-feature index {p} is unreadable ({exc}); delete it and extract again") from exc
    if not isinstance(idx, dict) or not isinstance(idx.get("modalities"), dict) or "item_ids" not in idx:
        raise FusebenchError(f"extracted-feature index {p} is malformed; delete it and extract again")
    return idx


def _ids(item_ids) -> list[str]:
    return [str(i) for i in item_ids]


def write_feature(
    folder: str | os.PathLike,
    dataset: MultimodalDataset,
    modality: str,
    features: np.ndarray,
    mask: np.ndarray,
    provenance: dict[str, Any],
    problems: dict[int, str] | None = None,
) -> Path:
    """Store one aligned feature matrix (with mask and provenance) for ``dataset``; returns the .npy path."""
    folder = Path(folder)
    if modality.split("/")[0] not in MODALITY_ROOTS:
        raise FusebenchError(f"modality {modality!r} must start with one of {MODALITY_ROOTS}")
    features = np.ascontiguousarray(features, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if features.shape[0] != dataset.n_items or mask.shape != (dataset.n_items,):
        raise FusebenchError(f"feature {modality!r}: {features.shape[0]} rows for {dataset.n_items} items")
    features = np.where(mask[:, None], features, 0.0).astype(np.float32)
    idx = read_index(folder) or {}
    ids = _ids(dataset.item_ids)
    if idx and idx["item_ids"] != ids:
        idx = {}  # the item set changed: older extractions no longer align; start over
    idx.setdefault("version", 1)
    idx["dataset"] = dataset.name
    idx["item_ids"] = ids
    mods = idx.setdefault("modalities", {})
    base = slug(modality)
    atomic_write(folder / f"{base}.npy", lambda fh: np.save(fh, features))
    atomic_write(folder / f"{base}.mask.npy", lambda fh: np.save(fh, mask))
    mods[modality] = {
        "file": f"{base}.npy",
        "mask": f"{base}.mask.npy",
        "provenance": provenance,
        "missing": {ids[i]: why for i, why in sorted((problems or {}).items())},
    }
    atomic_write(folder / INDEX, lambda fh: fh.write(json.dumps(idx, indent=1, sort_keys=True).encode()))
    return folder / f"{base}.npy"


def attach(ds: MultimodalDataset, folder: str | os.PathLike) -> MultimodalDataset:
    """``ds`` plus every modality stored in ``folder`` (unchanged when there is no store)."""
    folder = Path(folder)
    idx = read_index(folder)
    if not idx or not idx["modalities"]:
        return ds
    if idx["item_ids"] != _ids(ds.item_ids):
        raise FusebenchError(
            f"dataset {ds.name!r}: the extracted features in {folder} were made for a different item set; "
            "run `features extract` again or delete that folder"
        )
    feats, masks = dict(ds.features), dict(ds.feature_masks)
    encoders = dict(ds.meta.get("features", {}))
    prov = dict(ds.meta.get("feature_provenance", {}))
    for mod, entry in sorted(idx["modalities"].items()):
        if mod in feats:
            continue  # a dataset's own modality always wins; extract under another --modality name
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("file", "mask")):
            raise FusebenchError(f"dataset {ds.name!r}: {folder / INDEX} entry {mod!r} is malformed; extract again")
        files = _inside(folder, entry["file"], ds.name), _inside(folder, entry["mask"], ds.name)
        try:
            x = np.load(files[0], allow_pickle=False)
            m = np.load(files[1], allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise FusebenchError(
                f"dataset {ds.name!r}: extracted feature {mod!r} in {folder} is unreadable ({exc})"
            ) from exc
        if x.ndim != 2 or x.shape[0] != ds.n_items or m.shape != (ds.n_items,):
            raise FusebenchError(
                f"dataset {ds.name!r}: extracted feature {mod!r} in {folder} does not align with its items"
            )
        feats[mod] = np.ascontiguousarray(x, dtype=np.float32)
        m = m.astype(bool)
        if not m.all():
            masks[mod] = m
        p = entry.get("provenance", {})
        encoders[mod] = f"{p.get('encoder', '?')}@{p.get('version', '?')} (extracted)"
        prov[mod] = p
    meta = {**ds.meta, "features": encoders, "feature_provenance": prov}
    return replace(ds, features=feats, feature_masks=masks, meta=meta)
