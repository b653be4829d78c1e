"""`perf scale`: the synthetic folder of a large dataset's shape, the per-model table on a tiny
shape (every column, RecBole's BPR beside ours), and the refusal of a shape that cannot fit."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

import datasets
from benchmark.cli import main
from benchmark.perf_scale import MIN_PER_USER, make_folder


def test_the_folder_has_the_shape_a_given_split_and_power_law_popularity(tmp_path):
    root = make_folder(tmp_path, 400, 300, 6000, 8, 16)
    ds = datasets.load(f"mmrec:{root}")
    assert ds.n_users == 400 and ds.n_items <= 300
    assert 0.95 * 6000 <= ds.n_interactions <= 6000
    assert ds.features["text"].shape[1] == 8 and ds.features["image"].shape[1] == 16
    assert (ds.features["image"] >= 0).all()  # rectified
    labels = ds.given_split
    users = ds.interactions["user"].to_numpy()
    for lab in (0, 1, 2):  # every user has train, valid and test interactions
        assert len(np.unique(users[labels == lab])) == 400
    counts = np.sort(np.bincount(ds.interactions["item"].to_numpy(), minlength=ds.n_items))[::-1]
    assert counts[: len(counts) // 5].sum() > 0.4 * counts.sum()  # a head of popular items
    assert np.bincount(users).min() >= MIN_PER_USER
    again = make_folder(tmp_path, 400, 300, 6000, 8, 16)  # kept and reused, not rebuilt
    assert (
        again == root
        and (root / f"{root.name}.inter").stat().st_mtime_ns == again.joinpath(f"{root.name}.inter").stat().st_mtime_ns
    )


def test_perf_scale_prints_every_column_on_a_tiny_shape(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "benchmark", "perf", "scale", "--users", "200", "--items", "150"]
        + ["--interactions", "2500", "--text-dim", "8", "--image-dim", "16", "--models", "pop,bpr,fusion-concat"]
        + ["--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    rows = {line.split(" | ")[0].strip("| "): line for line in out.stdout.splitlines() if line.startswith("| ")}
    assert {"pop", "bpr", "fusion-concat"} <= set(rows)
    assert "recbole:BPR" in rows["bpr"] and "RecBole" in rows["bpr"]  # the reference, same data, same run
    cells = [c.strip() for c in rows["bpr"].strip("|").split("|")]
    assert float(cells[1]) > 0 and float(cells[5]) > 0  # seconds per epoch, peak GiB
    assert "(" in cells[8] and float(cells[9]) > 0  # the floor and the multiple of it
    assert rows["pop"].split("|")[2].strip().startswith("(")  # one-shot: the fit's seconds


def test_a_shape_that_cannot_fit_is_refused_before_anything_is_allocated(tmp_path, capsys):
    out = tmp_path / "scale"
    code = main(
        ["perf", "scale", "--users", "1000", "--items", "100000000", "--interactions", "5000"]
        + ["--models", "bpr", "--out", str(out)]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "needs about" in err[0] and "GiB" in err[0], err
    assert not out.exists()
