"""Where tuning studies live: Optuna storage URLs (SQLite by default, PostgreSQL for workers on
several machines), opened with retries (two workers racing to create a fresh database's
tables), a damaged SQLite file named in one line, and the per-study lock that lets one process
at a time run a study's bookkeeping (the full-length check)."""

from __future__ import annotations

import contextlib
import hashlib
import random
import time
import warnings
from pathlib import Path
from typing import Iterator

import optuna

from datasets.errors import FusebenchError

# server storages: heartbeat every HEARTBEAT_S; a RUNNING trial silent for GRACE_S is failed
HEARTBEAT_S = 5
GRACE_S = 20
# SQLite: how long a study's lock is waited for before "being tuned by another process"
LOCK_WAIT_S = 5


def storage_kind(url: str) -> str:
    """'postgresql+psycopg2://u:pw@h/db' -> 'postgresql' (never the credentials)."""
    return url.split(":", 1)[0].split("+", 1)[0]


def default_storage(results: str | Path) -> str:
    path = Path(results).resolve() / "tuning.db"
    return f"sqlite:///{path}"


def _driver_url(url: str) -> str:
    """A bare postgresql:// URL uses psycopg2 when it is installed (our `postgres` extra);
    SQLAlchemy 2.1's default driver for it is psycopg 3."""
    scheme, sep, rest = url.partition("://")
    if scheme in ("postgresql", "postgres") and sep:
        import importlib.util

        if importlib.util.find_spec("psycopg2") is not None or importlib.util.find_spec("psycopg") is None:
            return f"postgresql+psycopg2://{rest}"
        return f"postgresql+psycopg://{rest}"
    return url


def _open_racing(url: str, attempts: int = 8, **kwargs) -> optuna.storages.RDBStorage:
    """Open an RDB storage. Workers started together on a fresh database (several machines on
    one server, or `run --all --jobs N` on one SQLite file) race to create Optuna's tables, and
    the losers get a unique-constraint or "already exists" error; the tables exist by then, so
    wait a moment and open again."""
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, **kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.OperationalError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.25 * (attempt + 1) + random.random() * 0.25)
    raise AssertionError("unreachable")


def open_storage(url: str) -> optuna.storages.RDBStorage:
    kind = storage_kind(url)
    url = _driver_url(url)
    if kind == "sqlite":
        path = _sqlite_path(url)
        if path is not None:
            from .doctor import check_sqlite

            damaged = check_sqlite(path) if path.exists() else None
            if damaged:
                raise FusebenchError(
                    f"tuning storage {path}: {damaged}; move it away and tuning starts "
                    "afresh (python -m benchmark doctor --fix quarantines a results/tuning.db)"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
        return _open_racing(url, engine_kwargs={"connect_args": {"timeout": 60}})
    try:
        return _open_racing(
            url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S, engine_kwargs={"pool_pre_ping": True}
        )
    except ImportError as e:  # e.g. psycopg2 missing
        raise FusebenchError(f"storage {kind}: {e} (pip install psycopg2-binary for PostgreSQL)") from None
    except Exception as e:  # noqa: BLE001 - connection errors are the user's to fix
        raise FusebenchError(f"cannot open tuning storage {kind}: {str(e).splitlines()[0]}") from None


def _sqlite_path(url: str) -> Path | None:
    rest = url.split(":///", 1)[1] if ":///" in url else ""
    return Path(rest) if rest and rest != ":memory:" else None


@contextlib.contextmanager
def _exclusive(url: str, study: str) -> Iterator[None]:
    """SQLite: one process per study at a time (so RUNNING trials found at start are dead)."""
    path = _sqlite_path(url)
    if path is None:
        yield
        return
    import fcntl

    lock_dir = path.parent / ".tuning-locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    lock = lock_dir / (hashlib.sha256(f"{path.name}/{study}".encode()).hexdigest()[:20] + ".lock")
    with open(lock, "w") as f:
        # a worker of a killed `run --all --jobs N` may take up to a second to notice and exit
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise FusebenchError(
                        f"study {study!r} is being tuned by another process on this machine; several workers "
                        "need a server storage (--storage postgresql://...)"
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
