"""`benchmark.api`: the CLI's pipeline from Python, returning DataFrames; the README's example
runs as written."""

import json
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import baselines.base as base
from baselines import Recommender
from benchmark import api

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _registry_restored():
    saved = dict(base._REGISTRY), dict(base._SOURCES)
    yield
    base._REGISTRY.clear()
    base._REGISTRY.update(saved[0])
    base._SOURCES.clear()
    base._SOURCES.update(saved[1])


class ItemMean(Recommender):
    """Popularity weighted by the items' mean position in users' rows (a model of this module)."""

    name = "item-mean"
    family = "baseline/cf"

    def __init__(self, damping: float = 1.0):
        self.damping = damping

    def fit(self, data):
        self.pop_ = (np.asarray(data.train.sum(axis=0)).ravel() + self.damping).astype(np.float32)
        return self

    def score(self, users):
        return np.tile(self.pop_, (len(users), 1))


def _records(results: Path) -> dict:
    return {
        (r["model"]["name"], r["seed"]): r
        for r in (json.loads(p.read_text()) for p in (results / "runs").rglob("*.json"))
    }


def test_the_readme_example_runs_as_written(tmp_path):
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- api-example -->\s*```python\n(.*?)```", text, re.S)
    assert block, "README lost its Python API example"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 6
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    assert "ease" in proc.stdout and "recall@20" in proc.stdout
    assert (tmp_path / "results" / "LEADERBOARD.md").is_file()


def test_api_runs_are_the_cli_runs_and_classes_work_like_names(tmp_path, capsys):
    from benchmark.cli import main

    cli_res, api_res = tmp_path / "cli", tmp_path / "api"
    assert (
        main(
            [
                "run",
                "--all",
                "--datasets",
                "ml-100k",
                "--models",
                "pop,ease",
                "--no-tune",
                "--seeds",
                "2",
                "--results",
                str(cli_res),
            ]
        )
        == 0
    )
    runs = api.run(datasets=["ml-100k"], models=["pop", "ease", ItemMean], budget=None, seeds=2, results=api_res)
    assert list(runs.columns[:5]) == ["dataset", "model", "seed", "status", "family"]
    assert len(runs) == 6 and set(runs.status) == {"done"}
    cli, ours = _records(cli_res), _records(api_res)
    for key in cli:  # the same runs, the same keys and numbers
        assert cli[key]["key"] == ours[key]["key"] and cli[key]["test"] == ours[key]["test"]
    row = runs[(runs.model == "ease") & (runs.seed == 1)].iloc[0]
    assert row["recall@20"] == ours[("ease", 1)]["test"]["recall@20"]
    assert ours[("item-mean", 0)]["model"]["source"]["spec"] == f"{__name__}:ItemMean"
    # resumed: nothing runs again, and the frame says so
    again = api.run(datasets=["ml-100k"], models=["pop", "ease", ItemMean], budget=None, seeds=2, results=api_res)
    assert set(again.status) == {"skipped"} and again["recall@20"].tolist() == runs["recall@20"].tolist()

    (table,) = api.leaderboard(api_res).values()
    assert set(table.index) == {"pop", "ease", "item-mean"} and table.loc["ease", "reference"]
    assert table.loc["pop", "delta_vs_reference"] < 0 and table.loc["pop", "p_holm"] < 0.05
    assert table.loc["ease", "recall@20"] == pytest.approx(
        np.mean([ours[("ease", s)]["test"]["recall@20"] for s in (0, 1)]), abs=1e-12
    )
    assert not table["stopped_by_cap"].any()
    # LEADERBOARD.json, written with the Markdown by the same generator, holds the same numbers
    board = json.loads((api_res / "LEADERBOARD.json").read_text())["datasets"]["ml-100k"]
    assert board["protocol"] == "random" and board["findings"][0].startswith("The best model by test Recall@20")
    ease = board["models"]["ease"]
    assert ease["family"] == "baseline/cf" and ease["reference"] and ease["test"]["recall@20"]["seeds"] == 2
    assert ease["test"]["recall@20"]["mean"] == table.loc["ease", "recall@20"]
    pop = board["models"]["pop"]["vs_reference"]["recall@20"]
    assert pop["delta"] == table.loc["pop", "delta_vs_reference"] and pop["p_holm"] < 0.05
    assert board["models"]["pop"]["placebo_lift"] is None and board["models"]["pop"]["stopped_by_cap"] is False


def test_a_class_defined_in_a_session_runs_in_this_process(tmp_path):
    session = types.ModuleType("__main__fake")
    exec(
        "from baselines import Recommender\nimport numpy as np\n"
        "class Flat(Recommender):\n    name = 'flat'\n    family = 'baseline/cf'\n"
        "    def fit(self, data):\n        self.n_ = data.n_items\n        return self\n"
        "    def score(self, users):\n        return np.zeros((len(users), self.n_), np.float32)\n",
        session.__dict__,
    )
    runs = api.run(datasets=["ml-100k"], models=[session.Flat], budget=None, seeds=1, results=tmp_path, jobs=2)
    assert runs.model.tolist() == ["flat"] and runs.status.tolist() == ["done"]


def test_api_errors_are_the_cli_errors(tmp_path):
    from datasets.errors import FusebenchError

    with pytest.raises(FusebenchError, match="unknown model 'nosuch'"):
        api.run(datasets=["ml-100k"], models=["nosuch"], budget=None, results=tmp_path)
    with pytest.raises(FusebenchError, match="neither a model name nor a Recommender"):
        api.run(datasets=["ml-100k"], models=[42], budget=None, results=tmp_path)
    with pytest.raises(FusebenchError, match="does not exist"):
        api.leaderboard(tmp_path / "nothing")
    assert not (tmp_path / "runs").exists()


def test_a_session_class_cannot_take_a_built_in_name_and_can_be_redefined(tmp_path):
    from baselines.ease import EASE
    from datasets.errors import FusebenchError

    class MyEase(EASE):
        name = "ease"

    MyEase.__module__ = "__main__"
    with pytest.raises(FusebenchError, match="'ease' is a built-in model's"):
        api.run(datasets=["ml-100k"], models=[MyEase], budget=None, seeds=1, results=tmp_path)
    assert base.get_model_class("ease") is EASE
    shas = []
    for damping in ("1.0", "2.0"):  # the same notebook cell run twice, edited in between
        session = types.ModuleType("__main__fake")
        exec(
            "from baselines import Recommender\nimport numpy as np\n"
            "class Flat(Recommender):\n    name = 'flat'\n    family = 'baseline/cf'\n"
            "    def fit(self, data):\n        self.n_ = data.n_items\n        return self\n"
            f"    def score(self, users):\n        return np.full((len(users), self.n_), {damping}, np.float32)\n",
            session.__dict__,
        )
        runs = api.run(datasets=["ml-100k"], models=[session.Flat], budget=None, seeds=1, results=tmp_path)
        assert runs.status.tolist() == ["done"]  # new code: a new record, not the old one resumed
        shas.append(base.model_source("flat")["sha256"])
    assert shas[0] != shas[1]
    with pytest.raises(FusebenchError, match="models is empty"):
        api.run(datasets=["ml-100k"], models=[], results=tmp_path)
