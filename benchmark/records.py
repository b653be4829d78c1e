"""Run records: one JSON per (dataset, split, model, params, seed), per-user arrays beside it.

Writes are atomic (temp file in the same folder, then rename), and the JSON is written last,
so a record that exists is complete: a killed run leaves at most a stray temp file, which
the next run ignores and overwrites.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from datasets.download import atomic_write

RECORD_VERSION = 1


def record_key(identity: dict[str, Any]) -> str:
    """Stable hash of everything that defines a run (not of its outcome)."""
    blob = json.dumps(identity, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]




class RecordStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.runs = self.root / "runs"

    def _base(self, dataset: str, model: str, key: str) -> Path:
        safe = lambda s: s.replace("/", "_").replace(":", "_")  # noqa: E731
        return self.runs / safe(dataset) / safe(model) / key

    def exists(self, dataset: str, model: str, key: str) -> bool:
        return self._base(dataset, model, key).with_suffix(".json").exists()

    def write(self, record: dict[str, Any], per_user: dict[str, np.ndarray]) -> Path:
        base = self._base(record["dataset"]["name"], record["model"]["name"], record["key"])
        atomic_write(base.with_suffix(".npz"), lambda f: np.savez_compressed(f, **per_user))
        data = json.dumps(record, indent=2, sort_keys=True, default=_json_default).encode()
        atomic_write(base.with_suffix(".json"), lambda f: f.write(data))
        return base.with_suffix(".json")

    def load(self, dataset: str, model: str, key: str) -> dict[str, Any]:
        """The record of one finished run (with its `_path`, like `records()` yields)."""
        path = self._base(dataset, model, key).with_suffix(".json")
        with open(path) as f:
            rec = json.load(f)
        rec["_path"] = str(path)
        return rec

    def records(self) -> Iterator[dict[str, Any]]:
        if not self.runs.exists():
            return
        for path in sorted(self.runs.rglob("*.json")):
            if path.name.startswith("."):
                continue
            with open(path) as f:
                rec = json.load(f)
            rec["_path"] = str(path)
            yield rec

    @staticmethod
    def per_user(record: dict[str, Any]) -> dict[str, np.ndarray]:
        with np.load(Path(record["_path"]).with_suffix(".npz")) as z:
            return {k: z[k] for k in z.files}


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")
