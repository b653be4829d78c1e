"""The A/A check (issue 13 part 3): groups of one model's own seeds tested against each other."""

from __future__ import annotations

import numpy as np

import datasets
from benchmark import aa
from benchmark.cli import main
from benchmark.records import RecordStore
from benchmark.seed_run import run_one
from tests.test_placebo import clustered_dataset


def test_splits_keep_the_first_seed_in_the_first_group():
    got = aa.splits([0, 1, 2, 3, 4, 5])
    assert len(got) == 10 and all(a[0] == 0 and len(a) == 3 and sorted(a + b) == list(range(6)) for a, b in got)
    assert aa.splits([3, 5, 7, 9]) == [([3, 5], [7, 9]), ([3, 7], [5, 9]), ([3, 9], [5, 7])]


def test_aa_command_reads_the_records_and_counts_false_positives(tmp_path, capsys):
    ds = clustered_dataset(True)
    store = RecordStore(tmp_path)
    for seed in range(4):
        s = datasets.split(ds, seed=seed)
        run_one(store, ds, s, "bpr", {"epochs": 3})
        run_one(store, ds, s, "pop", {})
    (bpr,) = [r for r in aa.check(list(store.records())) if r.model.startswith("bpr")]
    assert bpr.seeds == (0, 1, 2, 3) and bpr.splits == 3 and len(bpr.seed_aware_p) == 3
    assert all(0 <= p <= 1 for p in bpr.seed_aware_p + bpr.wilcoxon_p)
    assert bpr.seed_aware == int(np.sum(np.array(bpr.seed_aware_p) < 0.05))
    assert main(["aa", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "seed-aware" in out and "Pooled over 2 rows, 6 splits" in out
    assert main(["aa", "--results", str(tmp_path), "--metric", "recall@7"]) == 2
    assert "unknown metric 'recall@7'" in capsys.readouterr().err
    assert main(["aa", "--results", str(tmp_path), "--dataset", "nothing"]) == 0
    assert "No row with 4 or more seeds" in capsys.readouterr().out
