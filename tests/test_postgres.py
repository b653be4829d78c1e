"""Distributed tuning on a real PostgreSQL server: two worker processes, one study.

Needs ``FUSEBENCH_TEST_POSTGRES_URL`` (``.ci/run`` starts a throw-away server on loopback and
sets it, together with ``FUSEBENCH_REQUIRE_POSTGRES=1`` so that the test cannot skip in CI).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest

from benchmark.storage import GRACE_S, _driver_url

REPO = Path(__file__).resolve().parents[1]
URL = os.environ.get("FUSEBENCH_TEST_POSTGRES_URL")

if not URL:
    if os.environ.get("FUSEBENCH_REQUIRE_POSTGRES"):
        raise RuntimeError("FUSEBENCH_REQUIRE_POSTGRES is set but FUSEBENCH_TEST_POSTGRES_URL is not")
    pytest.skip(
        "no PostgreSQL server: set FUSEBENCH_TEST_POSTGRES_URL=postgresql://... (.ci/run starts one)",
        allow_module_level=True,
    )


def _worker(study: str, trials: int, results: Path, model: str = "itemknn", *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmark",
            "tune",
            "--dataset",
            "ml-100k",
            "--model",
            model,
            "--trials",
            str(trials),
            "--storage",
            URL,
            "--study",
            study,
            "--results",
            str(results),
            *extra,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _trials(study: str):
    return optuna.load_study(study_name=study, storage=_driver_url(URL)).get_trials(deepcopy=False)


def _check_exactly_once(study: str, budget: int) -> list:
    trials = _trials(study)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == budget, [(t.number, t.state.name) for t in trials]
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials)))  # every trial once, no gaps, no duplicates
    assert all(t.user_attrs["rank"] < budget for t in finished)  # each started within the budget
    for t in trials:  # anything that did not finish is accounted for: over budget or a dead worker
        if t.state.name == "FAIL":
            assert t.user_attrs.get("surplus") or t.user_attrs.get("worker")
    return finished


def test_two_workers_share_one_study_and_run_each_trial_once(tmp_path):
    study = f"test-two-workers-{uuid.uuid4().hex[:8]}"
    budget = 12
    procs = [_worker(study, budget, tmp_path / f"w{i}") for i in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert f"{budget} finished trials" in out and "(postgresql)" in out
    finished = _check_exactly_once(study, budget)
    workers = {t.user_attrs["worker"] for t in finished}
    assert len(workers) == 2, f"both workers should have run trials: {workers}"
    # both workers report the same best configuration
    best = [line for out, _ in outs for line in out.splitlines() if line.startswith("best valid")]
    assert len(best) == 2 and best[0] == best[1]


def test_a_killed_worker_s_trial_is_failed_and_its_slot_taken(tmp_path):
    study = f"test-killed-worker-{uuid.uuid4().hex[:8]}"
    budget = 4
    # bpr trials take seconds (epochs reported to the pruner), so the kill lands inside a trial
    slow = ("--epoch-cap", "4", "--pruner", "none")
    victim = _worker(study, budget, tmp_path / "victim", "bpr", *slow)
    deadline = time.time() + 300
    running = []
    while time.time() < deadline and not running:
        time.sleep(0.5)
        try:
            running = [
                t
                for t in _trials(study)
                if t.state.name == "RUNNING" and t.user_attrs.get("worker", "").endswith(f":{victim.pid}")
            ]
        except KeyError:  # the study does not exist yet
            pass
    assert running, "the victim never started a trial"
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate()
    t0 = time.time()
    survivor = _worker(study, budget, tmp_path / "survivor", "bpr", *slow)
    out, err = survivor.communicate(timeout=900)
    assert survivor.returncode == 0, err[-2000:]
    finished = _check_exactly_once(study, budget)
    failed = [t for t in _trials(study) if t.state.name == "FAIL"]
    assert running[0].number in {t.number for t in failed}  # the dead worker's trial, failed by heartbeat
    assert all(t.user_attrs["worker"].endswith(f":{survivor.pid}") or t.number < running[0].number for t in finished)
    # the survivor waited for the heartbeat's grace period at most once, not forever
    assert time.time() - t0 < 600 + GRACE_S


@pytest.fixture
def fresh_database():
    """A database of its own on the test server (the shared runs' table is per database)."""
    import sqlalchemy as sa

    name = f"fb_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(_driver_url(URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield URL.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _campaign(results: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmark", "run", "--all", "--datasets", "ml-100k", "--models", "pop,ease,bpr"]
        + ["--no-tune", "--seeds", "3", "--epochs", "4", "--jobs", "1", "--results", str(results), *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _numbers(results: Path) -> dict:
    """LEADERBOARD.json without the timings (two runs of the same records differ only there)."""
    import json

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != "train_seconds"}
        return [strip(v) for v in x] if isinstance(x, list) else x

    return strip(json.loads((results / "LEADERBOARD.json").read_text()))


def test_two_workers_share_the_seed_runs_and_any_machine_builds_the_same_leaderboard(tmp_path, fresh_database):
    from benchmark.shared_runs import SharedRuns

    procs = [_campaign(tmp_path / f"w{i}", "--storage", fresh_database) for i in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    # every run finished once, by one worker: the runs each worker did add up to the 9 runs
    held = SharedRuns(fresh_database).workers()
    assert len(held) == 9
    trained = [err.count(" recall@20=") for _, err in outs]
    assert sum(trained) == 9 and all(n >= 1 for n in trained), trained  # none twice, both worked
    # from a third folder, the storage gives the page a single process makes
    gathered = tmp_path / "any"
    lb = subprocess.run(
        [sys.executable, "-m", "benchmark", "leaderboard", "--results", str(gathered), "--storage", fresh_database],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert lb.returncode == 0, lb.stderr[-2000:]
    assert "gathered 9 records" in lb.stdout
    alone = _campaign(tmp_path / "alone")
    _, err = alone.communicate(timeout=900)
    assert alone.returncode == 0, err[-2000:]
    assert _numbers(gathered) == _numbers(tmp_path / "alone")


def test_the_claim_of_a_worker_that_stopped_beating_is_taken_over(fresh_database):
    import sqlalchemy as sa

    from benchmark.shared_runs import SharedRuns

    a, b = SharedRuns(fresh_database), SharedRuns(fresh_database)
    assert a.claim("k1", "ml-100k", "bpr") is None  # a holds it
    assert b.claim("k1", "ml-100k", "bpr") == a.worker  # alive: b leaves it
    with a.engine.begin() as c:  # a dies: its last beat ages past the grace period
        c.execute(sa.update(a.table).where(a.table.c.key == "k1").values(heartbeat=time.time() - GRACE_S - 1))
    assert b.claim("k1", "ml-100k", "bpr") is None
    assert a.claim("k1", "ml-100k", "bpr") == b.worker
    # a failing run releases its claim: the run is free again
    with pytest.raises(RuntimeError), b.holding("k1"):
        raise RuntimeError("diverged")
    assert a.claim("k1", "ml-100k", "bpr") is None
