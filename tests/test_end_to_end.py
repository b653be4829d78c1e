"""`run --all` for real: every model on every default dataset, the tuned multi-seed pipeline,
and kill-then-resume (during seed runs and during tuning).

Slow (minutes): run with `python -m pytest -q -m slow`; CI runs them.
"""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=REPO, capture_output=True, text=True, **kw)


def _test_metric(results: Path) -> dict[tuple[str, str], float]:
    out = {}
    for p in (results / "runs").rglob("*.json"):
        rec = json.loads(p.read_text())
        out[(rec["dataset"]["name"], rec["model"]["name"])] = rec["test"]["recall@20"]
    return out


# every model on every dataset, untuned, one seed, two epochs per iterative model: CI time is
# spent on coverage (the multimodal models cost seconds per epoch on CPU); the tuned pipeline
# is tested below on a subset
ALL_QUICK = (
    "run",
    "--all",
    "--datasets",
    "ml-100k,ml-latest-small,lfm2k",
    "--no-tune",
    "--seeds",
    "1",
    "--epochs",
    "2",
)


def test_run_all_covers_every_model_and_dataset(tmp_path):
    results = tmp_path / "results"
    t0 = time.perf_counter()
    proc = _cli(*ALL_QUICK, "--results", str(results), timeout=3600)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    print(f"{' '.join(ALL_QUICK)} took {elapsed:.0f} s")
    recall = _test_metric(results)
    from baselines import model_names

    for ds in ("ml-100k", "ml-latest-small", "lfm2k"):
        for model in model_names():
            assert (ds, model) in recall, f"missing {ds} x {model}"
        # the learned one-shot models beat popularity by a clear margin on every dataset
        # (iterative ones are cut at two epochs here)
        for model in ("ease", "rp3beta", "itemknn"):
            assert recall[(ds, model)] > 1.2 * recall[(ds, "pop")], (ds, model, recall)
    board = (results / "LEADERBOARD.md").read_text()
    for ds in ("ml-100k", "ml-latest-small", "lfm2k"):
        assert f"## {ds}" in board
    assert "**" in board
    again = _cli(*ALL_QUICK, "--results", str(results), timeout=600)
    assert again.returncode == 0
    assert re.search(r"^0 runs done", again.stdout, re.M), again.stdout


def test_killed_run_resumes_without_broken_records(tmp_path):
    results = tmp_path / "results"
    args = [
        "run",
        "--all",
        "--no-tune",
        "--datasets",
        "ml-100k",
        "--models",
        "pop,itemknn,ease,bpr",
        "--seeds",
        "2",
        "--results",
        str(results),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmark", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
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


# --- the tuned pipeline: tune -> seeds -> records, killed in tuning and in seed runs ---------

# bpr trials (4 epochs) last long enough to be killed inside one; --epochs keeps its seed runs short
TUNED = [
    "run",
    "--all",
    "--datasets",
    "ml-100k",
    "--models",
    "pop,ease,itemknn,bpr",
    "--budget",
    "4",
    "--epoch-cap",
    "4",
    "--epochs",
    "8",
    "--seeds",
    "2",
    "--jobs",
    "2",
]
N_RUNS = 4 * 2


def _trials(results: Path, states=("COMPLETE", "PRUNED")) -> list[tuple]:
    """(study, number, state, params, value) of the stored trials in the given states."""
    db = results / "tuning.db"
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=30) as con:
            rows = con.execute(
                "SELECT s.study_name, t.number, t.state, t.trial_id FROM trials t JOIN studies s USING (study_id)"
            ).fetchall()
            out = []
            for name, number, state, tid in rows:
                if state not in states:
                    continue
                params = dict(
                    con.execute("SELECT param_name, param_value FROM trial_params WHERE trial_id=?", (tid,)).fetchall()
                )
                value = con.execute("SELECT value FROM trial_values WHERE trial_id=?", (tid,)).fetchone()
                out.append((name, number, state, tuple(sorted(params.items())), value[0] if value else None))
            return sorted(out)
    except sqlite3.OperationalError:  # tables not created yet
        return []


def _history(results: Path) -> dict[str, list]:
    """Per study: the finished trials' (state, params, value) in order (numbers aside)."""
    out: dict[str, list] = {}
    for name, _, state, params, value in _trials(results):
        out.setdefault(name, []).append((state, params, value))
    return out


def _records(results: Path) -> dict[tuple, dict]:
    out = {}
    for p in (results / "runs").rglob("*.json"):
        rec = json.loads(p.read_text())
        out[(rec["dataset"]["name"], rec["model"]["name"], rec["seed"])] = rec
    return out


def _kill_when(args, results: Path, ready, timeout=900):
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmark", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.2)
    assert proc.poll() is None, f"the run ended before the kill point: {proc.stderr.read()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_tuned_pipeline_killed_in_tuning_and_in_seed_runs_resumes_to_the_same_results(tmp_path):
    # the uninterrupted reference
    ref = tmp_path / "ref"
    proc = _cli(*TUNED, "--results", str(ref), timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{N_RUNS} runs done, 0 already finished" in proc.stdout
    ref_records, ref_history = _records(ref), _history(ref)
    assert len(ref_records) == N_RUNS
    for (ds, model, seed), rec in ref_records.items():
        if model == "pop":
            assert "tuning" not in rec  # nothing to tune
            continue
        t = rec["tuning"]
        assert t["trials"] == 4 and t["budget"] == "4 trials" and t["epoch_cap"] == 4 and t["storage"] == "sqlite"
        assert len(ref_history[t["study"]]) == 4
        assert rec["model"]["params"] == {**rec["model"]["params"], **t["best_params"]}
    board = (ref / "LEADERBOARD.md").read_text()
    assert "4 trials" in board

    res = tmp_path / "killed"
    args = [*TUNED, "--results", str(res)]

    # 1. kill inside a bpr tuning trial (bpr is the last job; the other worker may be busy too)
    def bpr_trial_running():
        running = [t for t in _trials(res, ("RUNNING",)) if "/bpr/" in t[0]]
        return running and any("/bpr/" in t[0] for t in _trials(res))

    _kill_when(args, res, bpr_trial_running)
    finished_before = _trials(res)
    assert finished_before and len(_records(res)) < N_RUNS

    # 2. resume, and kill again once a bpr seed run is recorded (the second one is running)
    def bpr_seed_recorded():
        return any(k[1] == "bpr" for k in _records(res))

    _kill_when(args, res, bpr_seed_recorded)
    assert set(finished_before) <= set(_trials(res))  # no finished trial lost or redone
    records_before = {p: p.read_text() for p in (res / "runs").rglob("*.json")}
    assert 0 < len(records_before) < N_RUNS

    # 3. resume to the end
    proc = _cli(*args, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r"^(\d+) runs done, (\d+) already finished", proc.stdout, re.M)
    assert m and int(m.group(1)) == N_RUNS - len(records_before) and int(m.group(2)) == len(records_before)
    assert all(p.read_text() == t for p, t in records_before.items())  # finished runs were not redone
    assert set(finished_before) <= set(_trials(res))
    # a trial killed mid-way was failed on restart and its slot rerun; nothing else failed (with
    # --jobs 2, the default on 2 cores, each worker may have been inside a trial at the kill)
    failed = _trials(res, ("FAIL",))
    assert len(failed) <= 2  # none if the kill fell between trials
    assert not _trials(res, ("RUNNING",))

    # the same studies and the same records as the uninterrupted run
    assert _history(res) == ref_history
    got = _records(res)
    assert got.keys() == ref_records.keys()
    for k, rec in ref_records.items():
        assert got[k]["key"] == rec["key"], k
        assert got[k]["model"]["params"] == rec["model"]["params"], k
        assert got[k]["test"] == rec["test"], k
        assert got[k].get("tuning", {}).get("best_params") == rec.get("tuning", {}).get("best_params"), k
    again = _cli(*args, timeout=600)
    assert again.returncode == 0 and re.search(r"^0 runs done", again.stdout, re.M), again.stdout
