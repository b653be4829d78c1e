"""Seed runs shared through a server storage: `run --all --storage postgresql://...` started on
several machines splits the seed runs between them, as it already shares the tuning studies.

Each run (its record key: dataset, split, model, configuration, seed, placebo) is claimed in the
database before it trains, so no two machines run it. A claim is kept alive by a heartbeat
every `storage.HEARTBEAT_S`; the claim of a machine that died (silent for `storage.GRACE_S`,
the tuning workers' rule) is taken over by the next machine that asks. A finished record and
its per-user arrays are stored in the database beside the claim, so any machine finds it
(written into its own results folder when it asks) and `leaderboard --storage URL` builds the
same page from any machine.

One table, `fusebench_runs`, in the database that holds the Optuna studies, created on first use
with SQLAlchemy (which Optuna's storage is built on). SQLite storages are one machine's: nothing
is shared through them (`open_shared` returns None).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import threading
import time
import uuid
from typing import Any, Iterator

import numpy as np

from .storage import GRACE_S, HEARTBEAT_S, _driver_url, storage_kind

TABLE = "fusebench_runs"
RUNNING, DONE = "running", "done"


def _table(metadata):
    import sqlalchemy as sa

    return sa.Table(
        TABLE,
        metadata,
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("dataset", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("worker", sa.Text, nullable=False),
        sa.Column("heartbeat", sa.Float, nullable=False),  # time.time() of the holder's last beat
        sa.Column("record", sa.Text),  # the record's JSON, once done
        sa.Column("arrays", sa.LargeBinary),  # its per-user arrays (.npz bytes), once done
    )


class SharedRuns:
    """The runs of a campaign in one server database: claims, heartbeats, finished records."""

    def __init__(self, url: str):
        import sqlalchemy as sa

        self.engine = sa.create_engine(_driver_url(url), pool_pre_ping=True)
        self.table = _table(sa.MetaData())
        for attempt in range(8):  # machines started together race to create the table
            try:
                self.table.create(self.engine, checkfirst=True)
                break
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError):
                if attempt == 7:
                    raise
                time.sleep(0.25 * (attempt + 1))
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def finished(self, key: str) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """The record and per-user arrays of a run finished by any machine, else None."""
        t = self.table
        with self.engine.connect() as c:
            row = c.execute(t.select().where(t.c.key == key, t.c.state == DONE)).first()
        return None if row is None else _unpack(row)

    def claim(self, key: str, dataset: str, model: str, force: bool = False) -> str | None:
        """Claim a run for this process: None when it is now ours, else the worker that holds it
        or finished it. The claim of a worker silent for GRACE_S is taken over, and with
        `force` (`run --force`) a finished run too."""
        import sqlalchemy as sa

        t, now = self.table, time.time()
        try:
            with self.engine.begin() as c:
                c.execute(
                    t.insert().values(
                        key=key, dataset=dataset, model=model, state=RUNNING, worker=self.worker, heartbeat=now
                    )
                )
            return None
        except sa.exc.IntegrityError:
            pass
        with self.engine.begin() as c:
            row = c.execute(sa.select(t.c.state, t.c.worker, t.c.heartbeat).where(t.c.key == key)).first()
            if row is None:  # released meanwhile: ask again
                return self.claim(key, dataset, model, force)
            if (row.state == RUNNING and row.heartbeat < now - GRACE_S) or (force and row.state == DONE):
                # its holder stopped beating: take it over, unless another worker did first
                taken = c.execute(
                    t.update()
                    .where(t.c.key == key, t.c.state == row.state, t.c.worker == row.worker)
                    .values(state=RUNNING, worker=self.worker, heartbeat=now)
                ).rowcount
                if taken == 1:
                    return None
            return row.worker

    @contextlib.contextmanager
    def holding(self, key: str) -> Iterator[None]:
        """Beat for a claimed run while the block runs; an error releases the claim (the run
        is free for any machine again)."""
        t, stop = self.table, threading.Event()

        def beat():
            while not stop.wait(HEARTBEAT_S):
                with self.engine.begin() as c:
                    c.execute(t.update().where(t.c.key == key, t.c.worker == self.worker).values(heartbeat=time.time()))

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield
        except BaseException:
            stop.set()
            thread.join()
            with self.engine.begin() as c:
                c.execute(t.delete().where(t.c.key == key, t.c.worker == self.worker, t.c.state == RUNNING))
            raise
        stop.set()
        thread.join()

    def put(self, record: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Store a finished run (whoever holds the claim now: a run is seeded, so a worker that
        took over a claim it thought dead writes the same numbers)."""
        import sqlalchemy as sa

        from .records import _json_default

        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        values = dict(
            state=DONE,
            worker=self.worker,
            heartbeat=time.time(),
            record=json.dumps(record, sort_keys=True, default=_json_default),
            arrays=buf.getvalue(),
        )
        t = self.table
        with self.engine.begin() as c:
            if c.execute(t.update().where(t.c.key == record["key"]).values(**values)).rowcount == 0:
                try:
                    c.execute(
                        t.insert().values(
                            key=record["key"],
                            dataset=record["dataset"]["name"],
                            model=record["model"]["name"],
                            **values,
                        )
                    )
                except sa.exc.IntegrityError:
                    pass  # stored by another worker meanwhile: the same run

    def records(self) -> Iterator[tuple[dict[str, Any], dict[str, np.ndarray]]]:
        """Every finished run in the database: (record, per-user arrays), by key."""
        t = self.table
        with self.engine.connect() as c:
            for row in c.execute(t.select().where(t.c.state == DONE).order_by(t.c.key)):
                yield _unpack(row)

    def workers(self) -> dict[str, str]:
        """key -> the worker that finished or holds each run (for tests and `doctor`)."""
        t = self.table
        with self.engine.connect() as c:
            return {row.key: row.worker for row in c.execute(t.select())}


def _unpack(row) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    with np.load(io.BytesIO(row.arrays)) as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads(row.record), arrays


_OPEN: dict[str, SharedRuns] = {}


def open_shared(storage: str | None) -> SharedRuns | None:
    """The shared runs of a server storage (one per URL and process); None for SQLite or none."""
    if storage is None or storage_kind(storage) == "sqlite":
        return None
    if storage not in _OPEN:
        import sqlalchemy.exc

        from datasets.errors import FusebenchError

        try:
            _OPEN[storage] = SharedRuns(storage)
        except ImportError as e:  # e.g. psycopg2 missing
            raise FusebenchError(f"storage {storage_kind(storage)}: {e} (pip install psycopg2-binary)") from None
        except sqlalchemy.exc.SQLAlchemyError as e:
            raise FusebenchError(
                f"cannot open storage {storage_kind(storage)} for the shared runs: {str(e).splitlines()[0]}"
            ) from None
    return _OPEN[storage]


def gather(storage: str, store) -> int:
    """Write every run finished in `storage`'s database that `store` (a RecordStore) lacks into
    it; returns how many were written."""
    shared = open_shared(storage)
    if shared is None:
        return 0
    n = 0
    for record, arrays in shared.records():
        if not store.exists(record["dataset"]["name"], record["model"]["name"], record["key"]):
            store.write(record, arrays)
            n += 1
    return n
