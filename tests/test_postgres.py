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
