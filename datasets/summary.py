"""`describe(dataset) -> dict`: the facts ``python -m benchmark datasets info NAME`` prints."""

from __future__ import annotations

from typing import Any

from .core import MultimodalDataset
from .splits import has_timestamps


def describe(dataset: MultimodalDataset) -> dict[str, Any]:
    """Name, sizes, density, modalities (name -> dim), timestamps, given split, source,
    license, citation and fingerprint of ``dataset`` (JSON-serialisable)."""
    meta = dataset.meta or {}
    df = dataset.interactions
    out: dict[str, Any] = {
        "name": dataset.name,
        "users": int(dataset.n_users),
        "items": int(dataset.n_items),
        "interactions": int(dataset.n_interactions),
        "density": float(dataset.density),
        "rating_range": ([float(df["rating"].min()), float(df["rating"].max())] if len(df) else None),
        "rating_threshold": meta.get("rating_threshold"),
        "modalities": {m: int(dataset.features[m].shape[1]) for m in dataset.modalities},
        "encoders": dict(meta.get("features", {})),
        "item_text": dataset.item_text is not None,
        "has_timestamps": has_timestamps(dataset),
        "has_given_split": dataset.given_split is not None,
        "source": meta.get("source", ""),
        "license": meta.get("license", ""),
        "citation": meta.get("citation", ""),
        "fingerprint": dataset.fingerprint(),
    }
    if dataset.given_split is not None:
        import numpy as np

        counts = np.bincount(np.asarray(dataset.given_split, dtype=np.int64), minlength=3)
        out["given_split_counts"] = {"train": int(counts[0]), "valid": int(counts[1]), "test": int(counts[2])}
    return out
