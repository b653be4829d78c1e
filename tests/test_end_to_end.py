"""`run --all` for real: every model on every default dataset, and kill-then-resume.

Slow (minutes): run with `python -m pytest -q -m slow`; CI runs them.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=REPO, capture_output=True,
                          text=True, **kw)


def _test_metric(results: Path) -> dict[tuple[str, str], float]:
    out = {}
    for p in (results / "runs").rglob("*.json"):
        rec = json.loads(p.read_text())
        out[(rec["dataset"]["name"], rec["model"]["name"])] = rec["test"]["recall@20"]
    return out


def test_run_all_covers_every_model_and_dataset(tmp_path):
    results = tmp_path / "results"
    t0 = time.perf_counter()
    proc = _cli("run", "--all", "--results", str(results), timeout=1800)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    print(f"run --all took {elapsed:.0f} s")
    recall = _test_metric(results)
    from baselines import model_names

    for ds in ("ml-100k", "ml-latest-small", "lfm2k"):
        for model in model_names():
            assert (ds, model) in recall, f"missing {ds} x {model}"
        # the learned models beat popularity by a clear margin on every dataset
        for model in ("ease", "bpr", "itemknn"):
            assert recall[(ds, model)] > 1.2 * recall[(ds, "pop")], (ds, model, recall)
    board = (results / "LEADERBOARD.md").read_text()
    for ds in ("ml-100k", "ml-latest-small", "lfm2k"):
        assert f"## {ds}" in board
    assert "**" in board
    again = _cli("run", "--all", "--results", str(results), timeout=600)
    assert again.returncode == 0
    assert re.search(r"^0 runs done", again.stdout, re.M), again.stdout


def test_killed_run_resumes_without_broken_records(tmp_path):
    results = tmp_path / "results"
    args = ["run", "--all", "--datasets", "ml-100k", "--models", "pop,itemknn,ease,bpr", "--seeds", "2",
            "--results", str(results)]
    proc = subprocess.Popen([sys.executable, "-m", "benchmark", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while time.time() < deadline and len(list((results / "runs").rglob("*.json"))) < 3:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up: the worst case
    proc.wait()
    before = {p: p.read_text() for p in (results / "runs").rglob("*.json")}
    assert 3 <= len(before) < 8
    for text in before.values():
        json.loads(text)  # every record on disk is complete
    resumed = _cli(*args, timeout=1200)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    m = re.search(r"^(\d+) runs done, (\d+) already finished", resumed.stdout, re.M)
    assert m and int(m.group(1)) == 8 - len(before) and int(m.group(2)) == len(before)
    after = {p: p.read_text() for p in (results / "runs").rglob("*.json")}
    assert len(after) == 8
    assert all(after[p] == t for p, t in before.items())  # finished runs were not redone
    for p in after:
        assert p.with_suffix(".npz").exists()
