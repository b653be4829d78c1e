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
import shlex
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from datasets.download import atomic_write
from datasets.errors import EnvironmentFault

RECORD_VERSION = 1
# what every record holds, and the type it has: a record without one of them cannot be shown
# (records older than RECORD_VERSION 1 lack the rest, and their per-user file: still shown, untested)
REQUIRED = {"key": str, "dataset": dict, "model": dict, "split": dict, "test": dict, "seed": int}


EXTERNAL = "external"  # the family of recommendations made elsewhere (benchmark.score)


def upgrade(rec: Mapping[str, Any]) -> dict[str, Any]:
    """A record in this fusebench's form (RECORD_VERSION) from any form it can read: a field
    that later code added gets the value its absence meant. A copy; `rec` is not changed."""
    out = dict(rec)  # a record without "version" (0) differs from version 1 only by the fields filled here
    out.setdefault("placebo", None)  # runs before the placebo controls were all real runs
    if "seed" not in out:
        out["seed"] = (out.get("split") or {}).get("seed", 0)
    training = dict(out.get("training") or {})
    if training.get("epochs_run") is not None and not training.get("stopped_by"):
        # before `stopped_by`: a run that did not stop early ran to its bound
        training["stopped_by"] = "patience" if training.get("stopped_early") else "max_epochs"
    out["training"] = training
    return out


class RunRecord(dict):
    """A run record as read back: its JSON object (a dict, upgraded by `upgrade`) and the file
    it came from (`path`, None for a record not yet on disk), with one typed reader per field
    that the tables, the page, the reproduction and the API read, so what a field means is
    written once."""

    def __init__(self, data: Mapping[str, Any], path: str | Path | None = None):
        super().__init__(upgrade(data))
        self.path = None if path is None else str(path)

    @classmethod
    def of(cls, rec: Mapping[str, Any]) -> RunRecord:
        """`rec` itself when it is one, else the record it holds."""
        return rec if isinstance(rec, RunRecord) else cls(rec)

    @property
    def dataset_name(self) -> str:
        return self["dataset"]["name"]

    @property
    def model_name(self) -> str:
        return self["model"]["name"]

    @property
    def family(self) -> str:
        return self["model"].get("family", "?")

    @property
    def run_seed(self) -> int:
        return int(self["seed"]) if self["seed"] is not None else 0

    @property
    def protocol(self) -> str:
        """The split's protocol (random, given, ...)."""
        return (self.get("split") or {}).get("protocol", "unknown")

    @property
    def split_params(self) -> str:
        return json.dumps((self.get("split") or {}).get("params", {}), sort_keys=True, default=str)

    @property
    def settings(self) -> dict[str, Any]:
        """The selection and test-time settings (`protocol.DEFAULT_SETTINGS`' keys)."""
        from .protocol import DEFAULT_SETTINGS  # the protocol module loads the model registry: only here

        return {k: self["training"].get(k, d) for k, d in DEFAULT_SETTINGS.items()}

    @property
    def tuned(self) -> dict[str, Any] | None:
        """The tuning that chose the parameters; None for an untuned run (no trials)."""
        t = self.get("tuning")
        return t if isinstance(t, dict) and int(t.get("trials") or 0) > 0 else None

    @property
    def created(self) -> str:
        return str((self.get("provenance") or {}).get("created") or "")

    @property
    def stopped_at_bound(self) -> bool:
        """An iterative run that ended at its epoch bound instead of by patience (one-shot
        runs never do)."""
        tr = self["training"]
        return tr.get("epochs_run") is not None and tr["stopped_by"] != "patience"

    @property
    def external(self) -> bool:
        """Recommendations made elsewhere (`python -m benchmark score --dataset`)."""
        return self.family == EXTERNAL

    @property
    def code(self) -> dict[str, Any] | None:
        """What produced the run beyond fusebench's own code: a user's model class
        (`model.source`: spec, sha256) or an external system's run file (`model.run_file`)."""
        m = self["model"]
        src = m.get("run_file") if self.external else m.get("source")
        return src if isinstance(src, dict) and src.get("sha256") else None

    @property
    def model_arg(self) -> str:
        """What `--model` takes to run this model again: a user class's import spec, else its name."""
        src = self["model"].get("source")
        spec = src.get("spec") if isinstance(src, dict) else None
        return shlex.quote(str(spec)) if spec else self.model_name

    @property
    def variant(self) -> str:
        """The parameter set and code version: the runs of one leaderboard row (over seeds).
        Another version of a user's code (or run file) is another variant."""
        m = self["model"]
        code = (m.get("source") or {}).get("sha256") or (m.get("run_file") or {}).get("sha256")
        return json.dumps([m.get("params") or {}, code], sort_keys=True, default=str)

    def changed_params(self) -> dict[str, Any]:
        """The model parameters that differ from its defaults (the protocol's epoch bound, a
        setting of the table, left out)."""
        m, tr = self["model"], self["training"]
        return {
            k: v
            for k, v in (m.get("params") or {}).items()
            if (m.get("defaults") or {}).get(k) != v and not (k == tr.get("epochs_param") and v == tr.get("max_epochs"))
        }

    def number(self, key: str, part: str | None = None) -> float:
        """A number of the record as a float, NaN where it is absent or not a number:
        `number("train_seconds")`, or a metric of a part: `number("recall@20", "test")`."""
        holder = self if part is None else (self.get(part) or {})
        try:
            return float(holder.get(key))
        except (TypeError, ValueError):
            return float("nan")

    def per_user(self) -> dict[str, np.ndarray] | None:
        """The per-user arrays beside the record; None for a record without a file."""
        return None if self.path is None else RecordStore.per_user(self)


class DamagedRecord(Exception):
    """A record file that cannot be used, and why."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


def read_record(path: str | Path) -> RunRecord:
    """The record at `path`, checked whole; DamagedRecord otherwise."""
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
    return RunRecord(rec, path)


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

    def finished(self, dataset: str, model: str, key: str) -> RunRecord | None:
        """The record of a finished run, None when there is none or it is damaged (announced;
        the run is done again, overwriting it)."""
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

    def load(self, dataset: str, model: str, key: str) -> RunRecord:
        """The record of one finished run."""
        return read_record(self._base(dataset, model, key).with_suffix(".json"))

    def paths(self) -> list[Path]:
        """Every record file (damaged or not), in a stable order."""
        if not self.runs.is_dir():
            return []
        return [p for p in sorted(self.runs.rglob("*.json")) if not p.name.startswith(".")]

    def records(self) -> Iterator[RunRecord]:
        """Every readable record; each damaged one is skipped with one warning line."""
        for path in self.paths():
            try:
                yield read_record(path)
            except DamagedRecord as err:
                warn_damaged(err, "left out")

    @staticmethod
    def per_user(record: RunRecord) -> dict[str, np.ndarray]:
        """The per-user arrays beside a record read back (`path`)."""
        with np.load(Path(record.path).with_suffix(".npz")) as z:
            return {k: z[k] for k in z.files}


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")
