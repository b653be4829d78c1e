"""Run records: one JSON per (dataset, split, model, params, seed), per-user arrays beside it.

Writes are atomic and durable (temp file in the same folder, fsync, rename), and the JSON is
written last, so a record that exists is complete: a killed run leaves at most a stray temp
file, which the next run ignores and overwrites. What a disk fault, a copy or a hand edit can
still break is checked on every read (`read_record`): a damaged record is not a finished run
(the next run redoes it) and the leaderboard leaves it out with one warning line naming it;
`python -m benchmark doctor --fix` moves it to ``results/quarantine/``.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from datasets.download import atomic_write
from datasets.errors import EnvironmentFault

RECORD_VERSION = 1
# what every record holds, and the type it has: a record without one of them cannot be shown
# (records older than RECORD_VERSION 1 lack the rest, and their per-user file: still shown, untested)
REQUIRED = {"key": str, "dataset": dict, "model": dict, "split": dict, "test": dict, "seed": int}


class DamagedRecord(Exception):
    """A record file that cannot be used, and why."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


def read_record(path: str | Path) -> dict[str, Any]:
    """The record at `path` (with its `_path`), checked whole; DamagedRecord otherwise."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DamagedRecord(path, f"unreadable ({exc.strerror or exc})") from None
    if not raw.strip():
        raise DamagedRecord(path, "empty file")
    try:
        rec = json.loads(raw)
    except ValueError:  # includes UnicodeDecodeError
        raise DamagedRecord(path, "not valid JSON (truncated or overwritten)") from None
    if not isinstance(rec, dict):
        raise DamagedRecord(path, f"holds a JSON {type(rec).__name__}, not a record object")
    missing = [k for k, t in REQUIRED.items() if not isinstance(rec.get(k), t)]
    if missing:
        raise DamagedRecord(path, f"lacks {', '.join(missing)}")
    if not isinstance(rec["dataset"].get("name"), str) or not isinstance(rec["model"].get("name"), str):
        raise DamagedRecord(path, "lacks the dataset or model name")
    if rec.get("version", RECORD_VERSION) != RECORD_VERSION:
        raise DamagedRecord(path, f"record version {rec.get('version')!r}; this fusebench reads {RECORD_VERSION}")
    if rec["key"] != path.stem:
        raise DamagedRecord(path, f"its key {rec['key']!r} is not its file name (moved or edited by hand)")
    if not rec["test"] and not rec.get("failed"):
        raise DamagedRecord(path, "holds no test results")
    npz = path.with_suffix(".npz")
    if not npz.is_file():
        if "version" in rec:  # every versioned record is written with its per-user file
            raise DamagedRecord(path, f"its per-user results {npz.name} are missing")
    elif not zipfile.is_zipfile(npz):
        raise DamagedRecord(path, f"its per-user results {npz.name} are damaged")
    rec["_path"] = str(path)
    return rec


def warn_damaged(err: DamagedRecord, action: str) -> None:
    print(
        f"warning: damaged record {err.path} ({err.reason}); {action} "
        "(python -m benchmark doctor --fix moves it to quarantine/)",
        file=sys.stderr,
    )


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

    def check_layout(self) -> None:
        """Before a run writes anything: every path it will write is usable (EnvironmentFault
        naming the one that is not; run `doctor` for the whole list)."""
        for path, folder in (
            (self.root, True),
            (self.runs, True),
            (self.root / ".tuning-locks", True),
            (self.root / "LEADERBOARD.md", False),
            (self.root / "tuning.db", False),
        ):
            if folder and path.exists() and not path.is_dir():
                raise EnvironmentFault(f"{path}: a file where a folder belongs (move it away)")
            if not folder and path.is_dir():
                raise EnvironmentFault(f"{path}: a folder where a file belongs (move it away)")

    def exists(self, dataset: str, model: str, key: str) -> bool:
        """Whether the run is finished: its record exists and reads back whole (a damaged one
        is announced and the run is done again, overwriting it)."""
        return self.finished(dataset, model, key) is not None

    def finished(self, dataset: str, model: str, key: str) -> dict[str, Any] | None:
        """The record of a finished run (with its `_path`), None when there is none or it is
        damaged (announced; the run is done again, overwriting it)."""
        path = self._base(dataset, model, key).with_suffix(".json")
        if not path.exists():
            return None
        try:
            return read_record(path)
        except DamagedRecord as err:
            warn_damaged(err, "running it again")
            return None

    def write(self, record: dict[str, Any], per_user: dict[str, np.ndarray]) -> Path:
        base = self._base(record["dataset"]["name"], record["model"]["name"], record["key"])
        buf = io.BytesIO()  # zipped in memory: a zip writer failing on a full disk would complain at exit
        np.savez_compressed(buf, **per_user)
        atomic_write(base.with_suffix(".npz"), lambda f: f.write(buf.getbuffer()))
        data = json.dumps(record, indent=2, sort_keys=True, default=_json_default).encode()
        try:
            atomic_write(base.with_suffix(".json"), lambda f: f.write(data))
        except BaseException:  # e.g. the disk filled between the two writes: no orphan .npz
            base.with_suffix(".npz").unlink(missing_ok=True)
            raise
        return base.with_suffix(".json")

    def load(self, dataset: str, model: str, key: str) -> dict[str, Any]:
        """The record of one finished run (with its `_path`, like `records()` yields)."""
        return read_record(self._base(dataset, model, key).with_suffix(".json"))

    def paths(self) -> list[Path]:
        """Every record file (damaged or not), in a stable order."""
        if not self.runs.is_dir():
            return []
        return [p for p in sorted(self.runs.rglob("*.json")) if not p.name.startswith(".")]

    def records(self) -> Iterator[dict[str, Any]]:
        """Every readable record; each damaged one is skipped with one warning line."""
        for path in self.paths():
            try:
                yield read_record(path)
            except DamagedRecord as err:
                warn_damaged(err, "left out")

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
