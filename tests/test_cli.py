"""The command line: user errors exit 2 with one line and write nothing; runs resume."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmark.cli import main

REPO = Path(__file__).resolve().parents[1]


def run_cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_models_list_shows_defaults(capsys):
    code, out, _ = run_cli(["models", "list"], capsys)
    assert code == 0
    for name in ("pop", "itemknn", "ease", "bpr"):
        assert any(line.startswith(name + " ") for line in out.splitlines())
    assert "l2=500.0" in out and "embedding_size=64" in out
    # each model says what it reads: the CF models interactions only, the e2e models raw content
    lines = out.splitlines()
    reads = {lines[i].split()[0]: lines[i + 1].strip() for i, line in enumerate(lines[:-1]) if not line.startswith(" ")}
    assert reads["ease"] == "reads: interactions"
    assert reads["vbpr"] == "reads: interactions; item feature matrices (extracted or shipped)"
    assert "raw item content" in reads["e2e-attention"] and "images/" in reads["e2e-attention"]


def test_datasets_list_and_info(capsys, ml100k):
    code, out, _ = run_cli(["datasets", "list"], capsys)
    assert code == 0 and {"ml-100k", "ml-latest-small", "lfm2k"} <= set(out.split())
    code, out, _ = run_cli(["datasets", "info", "ml-100k"], capsys)
    assert code == 0
    assert "943" in out and "1682" in out.replace(",", "") and "100000" in out.replace(",", "")
    assert "text" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--dataset", "ml-100k", "--model", "nope"], "unknown model"),
        (["run", "--dataset", "nope", "--model", "pop"], "unknown dataset"),
        (["run", "--dataset", "ml-100k", "--model", "ease", "--param", "lambda=3"], "no parameter"),
        (["run", "--dataset", "ml-100k", "--model", "ease", "--param", "l2=abc"], "expects a number"),
        (["run", "--dataset", "ml-100k", "--model", "ease", "--param", "l2"], "NAME=VALUE"),
        (["run", "--dataset", "ml-100k", "--model", "bpr", "--param", "epochs=1.5"], "integer"),
        (["run", "--dataset", "ml-100k", "--model", "pop", "--protocol", "weird"], "unknown protocol"),
        (["run", "--all", "--models", "pop,nope"], "unknown model"),
        (["run", "--dataset", "ml-100k"], "--model"),
        (["run", "--all", "--models", "pop,bpr", "--metric", "nosuch@20"], "unknown metric"),
        (["tune", "--dataset", "ml-100k", "--model", "ease", "--metric", "nosuch@20"], "unknown metric"),
        (
            ["run", "--dataset", "ml-100k", "--model", "ease", "--param", "l2=-1", "--budget", "2"],
            "ease: parameter l2 must be a real number > 0, got -1.0",
        ),
        (
            ["run", "--dataset", "ml-100k", "--model", "itemknn", "--param", "k=0", "--budget", "2"],
            "itemknn: parameter k must be an integer >= 1, got 0",
        ),
        (
            ["run", "--dataset", "ml-100k", "--model", "feature-mf", "--param", "loss=hinge", "--budget", "2"],
            "feature-mf: parameter loss must be one of bpr, warp, got 'hinge'",
        ),
        (["run", "--dataset", "ml-100k", "--model", "bpr", "--param", "weight_decay=NaN"], "finite"),
        (["run", "--all", "--datasets", ",,", "--models", "pop"], "--datasets got no names"),
        (["run", "--all", "--models", " , "], "--models got no names"),
        (["run", "--dataset", "ml-100k", "--model", "pop", "--rating-threshold", "6"], "no interactions"),
    ],
)
def test_user_errors_exit_2_with_one_line_and_write_nothing(args, message, capsys, tmp_path):
    results = tmp_path / "results"
    code, out, err = run_cli(args + ["--results", str(results)], capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not results.exists()


def _mmrec_folder(tmp_path, features):
    d = tmp_path / "broken"
    d.mkdir()
    rows = ["userID\titemID\trating\tx_label"]
    rng = np.random.default_rng(0)
    for u in range(20):
        for i in rng.choice(10, 5, replace=False):
            rows.append(f"{u}\t{i}\t1\t{0 if rng.random() < 0.8 else 2}")
    (d / "broken.inter").write_text("\n".join(rows) + "\n")
    np.save(d / "text_feat.npy", features)
    return d


@pytest.mark.parametrize(
    "features, message",
    [
        (np.ones((7, 4), dtype=np.float32), "row"),  # 7 rows for 10 items
        (np.full((10, 4), np.nan, dtype=np.float32), "NaN"),
    ],
)
def test_malformed_features_are_user_errors(features, message, capsys, tmp_path):
    folder = _mmrec_folder(tmp_path, features)
    results = tmp_path / "results"
    code, _, err = run_cli(["run", "--dataset", f"mmrec:{folder}", "--model", "pop", "--results", str(results)], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not results.exists()


def test_run_writes_a_complete_record_and_resumes(capsys, tmp_path, ml100k):
    results = tmp_path / "results"
    args = [
        "run",
        "--dataset",
        "ml-100k",
        "--model",
        "itemknn",
        "--param",
        "k=50",
        "--seed",
        "3",
        "--results",
        str(results),
    ]
    code, out, _ = run_cli(args, capsys)
    assert code == 0 and "1 runs done" in out
    recs = list((results / "runs").rglob("*.json"))
    assert len(recs) == 1
    rec = json.loads(recs[0].read_text())
    assert rec["model"]["params"] == {"k": 50, "shrink": 10.0}
    assert rec["seed"] == 3 and rec["split"]["seed"] == 3 and rec["split"]["protocol"] == "random"
    assert rec["dataset"]["fingerprint"] == ml100k.fingerprint()
    assert rec["provenance"]["versions"]["numpy"] and rec["provenance"]["device"].startswith("cpu")
    assert 0 < rec["test"]["recall@20"] < 1 and rec["train_seconds"] >= 0 and rec["eval_seconds"] > 0
    per_user = np.load(recs[0].with_suffix(".npz"))
    assert per_user["recall@20"].shape == (943,)
    assert np.isclose(np.nanmean(per_user["recall@20"]), rec["test"]["recall@20"], atol=1e-6)
    board = (results / "LEADERBOARD.md").read_text()
    assert "ml-100k" in board and "itemknn (k=50)" in board

    code, out, _ = run_cli(args, capsys)
    assert code == 0 and "0 runs done, 1 already finished" in out
    code, out, _ = run_cli(args + ["--force"], capsys)
    assert code == 0 and "1 runs done" in out
    assert len(list((results / "runs").rglob("*.json"))) == 1
    assert not list((results / "runs").rglob("*.tmp"))


def test_module_entry_point_exit_code(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark",
            "run",
            "--dataset",
            "ml-100k",
            "--model",
            "nope",
            "--results",
            str(tmp_path / "r"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown model 'nope'")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("fmt, prefix", [("recbole", "recbole"), ("mmrec", "mmrec")])
def test_datasets_export_round_trips_through_load(fmt, prefix, capsys, tmp_path, ml100k):
    import datasets

    code, out, err = run_cli(["datasets", "export", "ml-100k", "--format", fmt, str(tmp_path / "out")], capsys)
    assert code == 0, err
    folder = Path(out.split("wrote ", 1)[1].strip())
    back = datasets.load(f"{prefix}:{folder}")
    assert back.n_interactions == ml100k.n_interactions
    assert back.n_users == ml100k.n_users and back.n_items == ml100k.n_items
    assert back.modalities == ml100k.modalities
