"""The (dataset, model) jobs of `run --all`, run one after another or in worker processes.

Each job (tune, then the seed runs) is independent of the others: its study and its records
are its own, and every run is seeded, so running jobs side by side changes no number except
through the thread count (recorded in every record's device description). On a CPU, two
single-threaded jobs get more done than one two-threaded job: the models are small and torch
scales poorly on them (on 2 cores: 1.4x the throughput, measured on ml-100k).

Workers are spawned (not forked: torch's and numba's thread pools do not survive a fork),
ignore Ctrl-C (the parent stops them), and exit when the parent dies, so a killed `run --all`
leaves nothing running and resumes like a sequential one.

This module imports nothing heavy at the top: a worker sets its thread count before torch
and numba are loaded.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .provenance import REVISION_ENV, WORKERS_ENV, git_revision  # light: the standard library only

if TYPE_CHECKING:
    from .model_plan import Plan
    from .protocol import Protocol

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
MAX_AUTO_JOBS = 4
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def auto_jobs(device: str) -> int:
    """Parallel jobs for `--jobs auto`: one per core (at most 4) on a CPU, one on a GPU."""
    return 1 if not device.startswith("cpu") else max(1, min(cpu_cores(), MAX_AUTO_JOBS))


@dataclass
class Job:
    """One (dataset, model) of a run: what a worker needs to load, tune and run it.

    `dataset` is the canonical spec the dataset was loaded from (``meta["spec"]``: a folder's
    absolute path, never its short name, which two folders can share or a registered dataset
    can hold), `name` its short name for messages, `fingerprint` its content as the parent
    loaded it: a worker that loads different content (the files changed meanwhile) stops.
    `cfg` is the run's protocol with its split rule resolved for this dataset."""

    dataset: str
    name: str
    fingerprint: str
    data_dir: str | None
    rating_threshold: float | None
    model: str
    params: dict[str, Any]
    cfg: Protocol
    plan: Plan
    # a model from outside the package (baselines.model_source): a worker imports that code
    # again and stops if it is not the code the run started with
    model_source: dict[str, Any] | None = None


def longest_first(jobs: list[Job], iterative: Callable[[str], bool]) -> list[Job]:
    """The jobs reordered so that, per dataset, the iterative models start first.

    Iterative models cost minutes, one-shot models seconds: started last, one long job runs
    alone at the end while the other workers idle (measured: vbpr, last by name, trained alone
    for its last minutes). Datasets keep their order (one dataset's data is loaded at a time);
    the order changes no number, every job is independent and seeded.
    """
    rank = {d: i for i, d in enumerate(dict.fromkeys(j.dataset for j in jobs))}
    return sorted(jobs, key=lambda j: (rank[j.dataset], not iterative(j.model)))  # stable


def execute(job: Job, dataset=None, *, on_tuned=None, on_run=None, progress=None):
    """Tune and run one job (loading its dataset unless given). Returns (tuning, outcomes)."""
    import fusion_models  # noqa: F401  (registers the fusion models in a fresh worker)

    from .model_plan import run_model
    from .records import RecordStore

    if job.model_source is not None:
        from baselines.external import load_source

        load_source(job.model_source)
    ds = dataset if dataset is not None else _load(job)
    rule = job.cfg.split_rule(ds)
    held = _SPLITS.get((id(ds), rule))
    if held is None or held[0] is not ds:  # the entry holds its dataset, so the id is not reused
        held = _SPLITS[(id(ds), rule)] = (ds, {})
    splits: dict[int, Any] = held[1]

    def get_split(seed):
        if seed not in splits:
            splits[seed] = job.cfg.split_of(ds, seed)
        return splits[seed]

    return run_model(
        RecordStore(job.plan.results),
        ds,
        job.model,
        job.params,
        job.cfg,
        job.plan,
        get_split,
        on_tuned=on_tuned,
        on_run=on_run,
        progress=progress,
    )


def _load(job: Job):
    import datasets
    from datasets.errors import FusebenchError

    ds = datasets.load(job.dataset, data_dir=job.data_dir, rating_threshold=job.rating_threshold)
    if ds.fingerprint() != job.fingerprint:
        raise FusebenchError(
            f"dataset {job.dataset}: its files changed while the run was going "
            "(a worker loaded other content than the run started with); run again"
        )
    return ds


# splits made in this process, shared by the jobs of a dataset (a split is a pure function of
# dataset, protocol and seed); keyed by the loaded dataset object, which `datasets.load` reuses,
# rather than by its fingerprint, which hashes every interaction and feature
_SPLITS: dict[tuple, tuple[Any, dict[int, Any]]] = {}


def _init_worker(threads: int, workers: int, parent: int, revision: str | None) -> None:
    for var in THREAD_VARS:
        os.environ[var] = str(threads)
    os.environ[WORKERS_ENV] = str(workers)
    if revision:
        os.environ[REVISION_ENV] = revision
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:  # Linux: the kernel kills this worker the moment the parent dies
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # elsewhere the watcher below does it within half a second

    def watch_parent():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)  # orphaned: the parent was killed, so this job's result has no reader

    threading.Thread(target=watch_parent, daemon=True).start()


def _work(item: tuple[int, Job]):
    i, job = item
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    return i, execute(job)


def run_parallel(jobs: list[Job], workers: int, on_done: Callable[[int, Any], None]) -> None:
    """Run `jobs` on `workers` spawned processes; `on_done(index, (tuning, outcomes))` is
    called in the parent as each job finishes (in completion order). The first error stops
    every worker and is raised here."""
    import multiprocessing as mp

    threads = max(1, cpu_cores() // workers)
    ctx = mp.get_context("spawn")
    pool = ctx.Pool(workers, initializer=_init_worker, initargs=(threads, workers, os.getpid(), git_revision()))
    try:
        # chunksize 1: jobs differ in cost by 1000x, so hand them out one at a time
        for i, result in pool.imap_unordered(_work, list(enumerate(jobs)), chunksize=1):
            on_done(i, result)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
