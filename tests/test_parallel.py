"""`run --all --jobs N`: (dataset, model) jobs in spawned workers give the same studies and the
same numbers as one process, errors in a worker stop the run with one line, bad values exit 2."""

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.jobs import Job, auto_jobs, longest_first, run_parallel
from benchmark.model_plan import Plan
from benchmark.protocol import Protocol
from datasets.errors import FusebenchError

REPO = Path(__file__).resolve().parents[1]
# four cheap tunable models, so two workers start tuning together on a fresh tuning.db
ARGS = [
    "run",
    "--all",
    "--datasets",
    "ml-100k",
    "--models",
    "ease,itemknn,rp3beta,pop",
    "--budget",
    "3",
    "--seeds",
    "2",
]


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "benchmark", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


def _outcome(results: Path):
    records = {}
    for p in (results / "runs").rglob("*.json"):
        rec = json.loads(p.read_text())
        records[(rec["model"]["name"], rec["seed"])] = (
            rec["model"]["params"],
            rec["test"],
            rec["provenance"]["device"],
            rec["provenance"]["git_revision"],
        )
    with sqlite3.connect(results / "tuning.db") as con:
        trials = sorted(
            con.execute(
                "SELECT s.study_name, t.number, t.state, v.value FROM trials t JOIN studies s USING (study_id) "
                "LEFT JOIN trial_values v USING (trial_id)"
            ).fetchall()
        )
    return records, trials


def test_parallel_jobs_match_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for folder, jobs in ((one, "1"), (two, "2")):
        proc = _cli(*ARGS, "--jobs", jobs, "--results", str(folder))
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "8 runs done, 0 already finished" in proc.stdout
    rec1, trials1 = _outcome(one)
    rec2, trials2 = _outcome(two)
    assert len(rec1) == 8 and rec1.keys() == rec2.keys()
    for key in rec1:
        params1, test1, dev1, rev1 = rec1[key]
        params2, test2, dev2, rev2 = rec2[key]
        assert params1 == params2 and test1 == test2 and rev1 == rev2, key
        assert "parallel jobs" not in dev1 and "2 parallel jobs x" in dev2
    assert trials1 == trials2 and len(trials1) == 3 * 3 and {t[2] for t in trials1} == {"COMPLETE"}
    # a rerun with another --jobs finds every record and every trial
    again = _cli(*ARGS, "--jobs", "2", "--results", str(one))
    assert again.returncode == 0 and "0 runs done, 8 already finished" in again.stdout, again.stdout


def test_an_error_in_a_worker_stops_the_run(tmp_path):
    job = Job(
        "no-such-dataset",
        "no-such-dataset",
        "",
        None,
        None,
        "pop",
        {},
        Protocol(split="random"),
        Plan(results=str(tmp_path)),
    )
    done = []
    with pytest.raises(FusebenchError, match="no-such-dataset"):
        run_parallel([job, job], 2, lambda i, r: done.append(i))
    assert done == [] and not (tmp_path / "runs").exists()


def test_jobs_option():
    assert auto_jobs("cuda") == 1 and 1 <= auto_jobs("cpu") <= 4
    for bad in ("0", "-1", "two"):
        proc = _cli("run", "--all", "--models", "pop", "--jobs", bad)
        assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
        assert "--jobs expects a positive integer or 'auto'" in proc.stderr


def test_longest_jobs_start_first_per_dataset():
    import fusion_models  # noqa: F401  (registers vbpr)
    from baselines.base import get_model_class

    def job(ds, model):
        return Job(ds, ds, "", None, None, model, {}, Protocol(split="random"), Plan())

    jobs = [job(d, m) for d in ("a", "b") for m in ("ease", "bpr", "pop", "vbpr", "itemknn")]
    order = [(j.dataset, j.model) for j in longest_first(jobs, lambda m: get_model_class(m).iterative)]
    # datasets keep their order; within one, iterative models first, each group in its given order
    assert order == [(d, m) for d in ("a", "b") for m in ("bpr", "vbpr", "ease", "pop", "itemknn")]
    assert sorted(order) == sorted((j.dataset, j.model) for j in jobs)
