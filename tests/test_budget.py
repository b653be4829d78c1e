"""Budget curves (issue 13 part 4): best validation so far per trial, read from the stored
Optuna studies, and the Kendall tau of the models' ranking at half and at the full budget."""

from __future__ import annotations

import json

import optuna
import pytest

import datasets
from benchmark import budget
from benchmark.leaderboard import write_leaderboard
from benchmark.model_plan import Plan, run_model
from benchmark.protocol import Protocol
from benchmark.records import RecordStore
from benchmark.storage import default_storage
from benchmark.tuning import Budget, TuningPlan
from tests.test_placebo import clustered_dataset

MODELS = ("itemknn", "ease", "content-knn", "bpr")


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("budget")
    ds = clustered_dataset(True)
    store = RecordStore(root)
    plan = Plan(tuning=TuningPlan(Budget(trials=4, epoch_cap=3)), results=root)
    for m in MODELS:
        run_model(
            store,
            ds,
            m,
            {},
            Protocol(epochs=5, patience=2, seeds=(0,)),
            plan,
            lambda seed: datasets.split(ds, seed=seed),
        )
    write_leaderboard(root)
    return root


def test_best_so_far_keeps_the_best_complete_value():
    assert budget.best_so_far([None, 0.2, 0.1, None, 0.3]) == [None, 0.2, 0.2, 0.2, 0.3]
    assert budget.best_so_far([float("nan"), 0.1]) == [None, 0.1]


def test_curves_are_the_studies_best_so_far_and_the_page_states_the_tau(tuned):
    board = json.loads((tuned / "LEADERBOARD.json").read_text())
    (entry,) = board["datasets"].values()
    b = entry["budget"]
    assert b["trials"] == 4 and b["half"] == 2 and b["missing_studies"] == 0
    assert set(b["best_so_far"]) == set(MODELS)
    recs = {r["model"]["name"]: r for r in RecordStore(tuned).records()}
    rdb = optuna.storages.RDBStorage(default_storage(tuned))
    for m in MODELS:
        study = optuna.load_study(study_name=recs[m]["tuning"]["study"], storage=rdb)
        values = [t.value if t.state.name == "COMPLETE" else None for t in study.trials]
        assert b["best_so_far"][m] == budget.best_so_far(values)
        assert b["best_so_far"][m][-1] == pytest.approx(study.best_value)
    assert -1 <= b["kendall_tau"] <= 1
    page = (tuned / "LEADERBOARD.md").read_text()
    assert f"after 2 of 4 trials agrees with the ranking after all 4 with Kendall τ = {b['kendall_tau']:.2f}" in page
    png = tuned / "plots" / f"{entry['title'].split(' ')[0]}__random__budget.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"({png.relative_to(tuned)})" in page


def test_a_missing_study_file_is_counted_not_fatal(tuned, tmp_path):
    import shutil

    shutil.copytree(tuned / "runs", tmp_path / "runs")
    write_leaderboard(tmp_path)  # no tuning.db in this folder
    board = json.loads((tmp_path / "LEADERBOARD.json").read_text())
    (entry,) = board["datasets"].values()
    assert entry["budget"]["missing_studies"] == len(MODELS) and entry["budget"]["kendall_tau"] is None
    page = (tmp_path / "LEADERBOARD.md").read_text()
    assert f"no readable study for the {len(MODELS)} tuned rows" in page and "__budget.png" not in page
