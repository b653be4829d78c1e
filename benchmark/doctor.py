"""`python -m benchmark doctor [--results DIR] [--fix]`: what in a results folder is damaged or
orphaned, and (with --fix) out of the way.

A campaign's state is its records (``runs/**/KEY.json`` + ``KEY.npz``), its tuning studies
(``tuning.db``) and their lock files (``.tuning-locks/``). `run` and `leaderboard` already skip
a damaged record with a warning (and `run` redoes it); `doctor` lists every problem at once and
`--fix` moves each damaged file to ``quarantine/<its path>`` with a ``.reason`` file beside it,
so nothing is deleted and the next `run` redoes what was lost. Exit code 0: nothing to fix (or
everything fixed); 1: problems found and left in place.

Lock files left by finished tunings are normal (a lock is the open file, not its presence) and
are not reported; temporary files younger than an hour may belong to a run still writing.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets.errors import FusebenchError

from .records import DamagedRecord, RecordStore, read_record

QUARANTINE = "quarantine"
STALE_TEMP_S = 3600  # a temporary file this old belongs to no running write
SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class Finding:
    path: Path
    what: str  # record, per-user results, temporary file, study storage, lock
    reason: str


def check_sqlite(path: Path) -> str | None:
    """Why `path` cannot serve as an Optuna SQLite storage, or None when it can."""
    if path.is_dir():
        return "a folder where the study database belongs"
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if not head:
        return None  # an empty file is a database SQLite has not written yet
    if head != SQLITE_MAGIC:
        return "not a SQLite database (overwritten or damaged)"
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            ok = con.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        return f"damaged SQLite database ({exc})"
    return None if ok == "ok" else f"damaged SQLite database ({ok})"


def _per_user_readable(npz: Path) -> str | None:
    try:
        with np.load(npz, allow_pickle=False) as z:
            for k in z.files:
                z[k]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        return f"its per-user results {npz.name} are unreadable ({exc})"
    return None


def examine(results: str | Path) -> list[Finding]:
    root = Path(results)
    if not root.is_dir():
        raise FusebenchError(
            f"{root}: no results folder there" if not root.exists() else f"{root}: is a file, not a results folder"
        )
    found: list[Finding] = []
    store = RecordStore(root)
    if store.runs.exists() and not store.runs.is_dir():
        found.append(Finding(store.runs, "records folder", "a file where the records folder belongs"))
    for path in store.paths():
        try:
            read_record(path)
            reason = _per_user_readable(path.with_suffix(".npz"))
        except DamagedRecord as err:
            reason = err.reason
        if reason is not None:
            found.append(Finding(path, "record", reason))
    if store.runs.is_dir():
        now = time.time()
        for npz in sorted(store.runs.rglob("*.npz")):
            if not npz.name.startswith(".") and not npz.with_suffix(".json").exists():
                found.append(
                    Finding(npz, "per-user results", "no record beside it (its run stopped between the two writes)")
                )
        for tmp in sorted(store.runs.rglob(".*.part")):
            if now - tmp.stat().st_mtime > STALE_TEMP_S:
                found.append(Finding(tmp, "temporary file", "left by a write that was killed"))
    db = root / "tuning.db"
    if db.exists():
        reason = check_sqlite(db)
        if reason is not None:
            found.append(Finding(db, "study storage", reason))
    locks = root / ".tuning-locks"
    if locks.exists() and not locks.is_dir():
        found.append(Finding(locks, "lock", "a file where the lock folder belongs"))
    for name in ("LEADERBOARD.md",):
        p = root / name
        if p.exists() and not p.is_file():
            found.append(Finding(p, "leaderboard", "a folder where the leaderboard file belongs"))
    return found


def quarantine(root: str | Path, finding: Finding) -> Path:
    """Move the finding's file (and a damaged record's .npz) under quarantine/, with the reason."""
    root = Path(root)
    rel = finding.path.relative_to(root)
    dest = root / QUARANTINE / rel
    if dest.exists():  # quarantined before under this name: keep both
        dest = root / QUARANTINE / time.strftime("%Y%m%dT%H%M%S") / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if finding.what == "record" and finding.path.with_suffix(".npz").exists():
        shutil.move(str(finding.path.with_suffix(".npz")), str(dest.with_suffix(".npz")))
    shutil.move(str(finding.path), str(dest))
    dest.with_name(dest.name + ".reason").write_text(f"{finding.what}: {finding.reason}\n")
    return dest


def cmd_doctor(args) -> int:
    root = Path(args.results)
    found = examine(root)
    if not found:
        print(f"{root}: nothing damaged or orphaned")
        return 0
    for f in found:
        line = f"{f.what}: {f.path} ({f.reason})"
        if args.fix:
            try:
                line += f" -> {quarantine(root, f)}"
            except OSError as exc:
                line += f"; could not move it ({exc.strerror or exc})"
                args.fix = False  # report it as left in place
        print(line)
    fixed = (
        "moved to " + os.path.join(str(root), QUARANTINE)
        if args.fix
        else "left in place (--fix moves them to quarantine/)"
    )
    print(f"{len(found)} problem(s); {fixed}")
    return 0 if args.fix else 1
