"""Models written outside the package: `--model FILE.py:Class`, `package.module:Class`, the
`fusebench.models` entry points, and the contract check that guards them."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import baselines.base as base
import baselines.external as external
from baselines.checks import ContractError, check_recommender
from benchmark.cli import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "examples" / "puresvd.py"

# an iterative torch model, as a user would write it outside the package
USER_MF = """
import torch

from baselines.torch_base import TorchRecommender


class TinyMF(TorchRecommender):
    name = "tiny-mf"
    family = "baseline/cf"

    def __init__(self, embedding_size: int = 16, learning_rate: float = 0.01, weight_decay: float = 0.0,
                 batch_size: int = 2048, epochs: int = 5):
        self.embedding_size = embedding_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs

    def build(self, data):
        module = torch.nn.Module()
        module.user = torch.nn.Embedding(data.n_users, self.embedding_size)
        module.item = torch.nn.Embedding(data.n_items, self.embedding_size)
        for table in (module.user, module.item):
            torch.nn.init.normal_(table.weight, std=0.1)
        return module

    def batch_loss(self, users, pos, neg):
        u = self.module_.user(users)
        diff = (u * self.module_.item(pos)).sum(-1) - (u * self.module_.item(neg)).sum(-1)
        return -torch.nn.functional.logsigmoid(diff).mean()

    def score_tensor(self, users):
        return self.module_.user(users) @ self.module_.item.weight.T
"""


@pytest.fixture(autouse=True)
def _registry_restored():
    """What a test registers from outside stays in that test (others list the registry)."""
    saved = dict(base._REGISTRY), dict(base._SOURCES), dict(external._LOADED), base._discovered
    yield
    base._REGISTRY.clear()
    base._REGISTRY.update(saved[0])
    base._SOURCES.clear()
    base._SOURCES.update(saved[1])
    external._LOADED.clear()
    external._LOADED.update(saved[2])
    base._discovered = saved[3]


def _records(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results / "runs").rglob("*.json"))]


def _cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_documented_example_keeps_the_contract():
    check_recommender(external.load(f"{EXAMPLE}:PureSVD"))


def test_a_model_in_a_file_runs_through_the_cli_and_reaches_the_leaderboard(capsys, tmp_path):
    res = tmp_path / "res"
    code, out, err = _cli(
        [
            "run",
            "--dataset",
            "ml-100k",
            "--model",
            "docs/examples/puresvd.py:PureSVD",
            "--seed",
            "0",
            "--results",
            str(res),
        ],
        capsys,
    )
    assert code == 0, err
    (rec,) = _records(res)
    sha = hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    assert rec["model"]["name"] == "puresvd"
    assert rec["model"]["source"] == {"spec": "docs/examples/puresvd.py:PureSVD", "path": str(EXAMPLE), "sha256": sha}
    assert 0.2 < rec["test"]["recall@20"] < 0.5  # a real model, trained: PureSVD is near BPR on ml-100k
    board = (res / "LEADERBOARD.md").read_text()
    assert "puresvd" in board and sha[:8] in board
    assert "--model docs/examples/puresvd.py:PureSVD" in board or "docs/examples/puresvd.py:PureSVD" in board
    # same code: resumed; the record's key holds the code's hash
    code, out, _ = _cli(
        [
            "run",
            "--dataset",
            "ml-100k",
            "--model",
            "docs/examples/puresvd.py:PureSVD",
            "--seed",
            "0",
            "--results",
            str(res),
        ],
        capsys,
    )
    assert code == 0 and "1 already finished" in out


def test_edited_code_makes_a_new_record(capsys, tmp_path):
    src = tmp_path / "svd.py"
    src.write_text(EXAMPLE.read_text())
    res = tmp_path / "res"
    args = ["run", "--dataset", "ml-100k", "--model", f"{src}:PureSVD", "--seed", "0", "--results", str(res)]
    assert _cli(args, capsys)[0] == 0
    src.write_text(EXAMPLE.read_text().replace("n_iter: int = 7", "n_iter: int = 4"))
    code, out, _ = _cli(args, capsys)
    assert code == 0 and "1 runs done" in out
    shas = {r["model"]["source"]["sha256"] for r in _records(res)}
    assert len(shas) == 2


def test_an_iterative_user_model_runs_in_worker_processes_like_in_one(tmp_path, capsys):
    src = tmp_path / "user_models" / "mf.py"
    src.parent.mkdir()
    src.write_text(USER_MF)
    out = {}
    for jobs in ("1", "2"):
        res = tmp_path / f"res{jobs}"
        code, _, err = _cli(
            [
                "run",
                "--all",
                "--datasets",
                "ml-100k",
                "--models",
                f"pop,{src}:TinyMF",
                "--no-tune",
                "--seeds",
                "1",
                "--epochs",
                "3",
                "--jobs",
                jobs,
                "--results",
                str(res),
            ],
            capsys,
        )
        assert code == 0, err
        out[jobs] = {r["model"]["name"]: r for r in _records(res)}
    assert set(out["1"]) == {"pop", "tiny-mf"}
    one, two = out["1"]["tiny-mf"], out["2"]["tiny-mf"]
    assert one["key"] == two["key"] and one["test"] == two["test"]
    assert one["training"]["epochs_run"] == 3 and two["model"]["source"]["spec"] == f"{src}:TinyMF"


BROKEN = {
    "missing file": ("nosuch/dir/model.py:Thing", "not found"),
    "missing class": ("{file}:Nope", "no class 'Nope' there; its Recommender classes: PureSVD"),
    "not a recommender": ("{file}:np", "not a subclass of baselines.Recommender"),
    "missing module": ("no_such_pkg.models:Thing", "model module 'no_such_pkg.models' not found"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_mistakes_in_the_spec_are_one_line_and_write_nothing(case, capsys, tmp_path):
    src = tmp_path / "svd.py"
    src.write_text(EXAMPLE.read_text())
    spec, message = BROKEN[case]
    res = tmp_path / "res"
    code, out, err = _cli(
        ["run", "--dataset", "ml-100k", "--model", spec.format(file=src), "--seed", "0", "--results", str(res)], capsys
    )
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not res.exists()


USER_ERRORS = {
    "syntax error": ("class Broken(:\n", "Broken", ":1: syntax error"),
    "import error": ("import no_such_module_xyz\n", "Broken", "importing it failed: ModuleNotFoundError"),
    "built-in name": (
        "from baselines import Recommender\nclass Broken(Recommender):\n    name = 'ease'\n"
        "    family = 'baseline/cf'\n",
        "Broken",
        "'ease' is a built-in model's",
    ),
    "no family": (
        "from baselines import Recommender\nclass Broken(Recommender):\n    name = 'mine'\n",
        "Broken",
        "family '' must be one of",
    ),
}


@pytest.mark.parametrize("case", sorted(USER_ERRORS))
def test_mistakes_in_the_users_file_are_one_line_and_write_nothing(case, capsys, tmp_path):
    code_text, cls, message = USER_ERRORS[case]
    src = tmp_path / "mine.py"
    src.write_text(code_text)
    res = tmp_path / "res"
    code, out, err = _cli(
        ["run", "--dataset", "ml-100k", "--model", f"{src}:{cls}", "--seed", "0", "--results", str(res)], capsys
    )
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not res.exists()


# each breaks one property of the contract; the check must name it
CONTRACT_BREAKS = {
    "score": ("return np.zeros((len(users), self.n_items_), np.float64)", "'score': score(users) must return float32"),
    "training data": ("data.train.data[:] = 2.0", "'training data'"),
    "seed": ("self.noise_ = np.random.rand()", "'seed'"),
    "get_params": ("self.factors = factors * 2", "'get_params'"),
    "search_space": ("return {'factors': trial.suggest_int('factors', -5, -1)}", "'search_space'"),
}

ONE_SHOT = """
import numpy as np
from baselines import Recommender
from baselines.params import Interval


class Broken(Recommender):
    name = "broken"
    family = "baseline/cf"
    _parameter_constraints = {{"factors": [Interval(int, 1, None)]}}

    def __init__(self, factors: int = 4):
        self.factors = factors
        {init}

    @classmethod
    def search_space(cls, trial):
        {space}

    def fit(self, data):
        self.n_items_ = data.n_items
        self.pop_ = np.asarray(data.train.sum(axis=0), np.float32).ravel()
        {fit}
        return self

    def score(self, users):
        {score}
        return np.tile(self.pop_ + np.float32(getattr(self, "noise_", 0.0)), (len(users), 1))
"""


def _broken(prop: str) -> str:
    line = CONTRACT_BREAKS[prop][0]
    slots = {"init": "pass", "space": "return {}", "fit": "pass", "score": "pass"}
    slot = {"score": "score", "training data": "fit", "seed": "fit", "get_params": "init", "search_space": "space"}[
        prop
    ]
    slots[slot] = line
    return ONE_SHOT.format(**slots)


@pytest.mark.parametrize("prop", sorted(CONTRACT_BREAKS))
def test_the_contract_check_names_the_broken_property(prop, tmp_path):
    src = tmp_path / "broken.py"
    src.write_text(_broken(prop))
    with pytest.raises(ContractError, match=CONTRACT_BREAKS[prop][1].replace("(", r"\(").replace(")", r"\)")):
        check_recommender(external.load(f"{src}:Broken"))


def test_a_model_breaking_the_contract_is_refused_before_anything_is_written(capsys, tmp_path):
    src = tmp_path / "broken.py"
    src.write_text(_broken("score"))
    res = tmp_path / "res"
    code, out, err = _cli(
        ["run", "--dataset", "ml-100k", "--model", f"{src}:Broken", "--seed", "0", "--results", str(res)], capsys
    )
    assert code == 2 and "property 'score'" in err and len(err.strip().splitlines()) == 1, err
    assert not res.exists()
    # the sound version of the same class passes and runs
    src.write_text(ONE_SHOT.format(init="pass", space="return {}", fit="pass", score="pass"))
    assert (
        _cli(["run", "--dataset", "ml-100k", "--model", f"{src}:Broken", "--seed", "0", "--results", str(res)], capsys)[
            0
        ]
        == 0
    )


def _subprocess_env(path: Path) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), str(REPO)])}


def test_a_module_spec_and_tuning(tmp_path):
    pkg = tmp_path / "site" / "mylab"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "svd.py").write_text(EXAMPLE.read_text())
    res = tmp_path / "res"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark",
            "tune",
            "--dataset",
            "ml-100k",
            "--model",
            "mylab.svd:PureSVD",
            "--trials",
            "2",
            "--results",
            str(res),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_subprocess_env(tmp_path / "site"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "study ml-100k/puresvd/" in proc.stdout and "2 finished trials" in proc.stdout


def test_installed_entry_points_register_models(tmp_path):
    site = tmp_path / "site"
    (site / "labmodels").mkdir(parents=True)
    (site / "labmodels" / "__init__.py").write_text("")
    (site / "labmodels" / "svd.py").write_text(EXAMPLE.read_text())
    info = site / "labmodels-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: labmodels\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text("[fusebench.models]\npuresvd = labmodels.svd:PureSVD\n")
    env = _subprocess_env(site)
    listed = subprocess.run(
        [sys.executable, "-m", "benchmark", "models", "list"], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert listed.returncode == 0 and any(line.startswith("puresvd ") for line in listed.stdout.splitlines())
    res = tmp_path / "res"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark",
            "run",
            "--dataset",
            "ml-100k",
            "--model",
            "puresvd",
            "--seed",
            "0",
            "--results",
            str(res),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    (rec,) = _records(res)
    assert rec["model"]["source"]["entry_point"] == "puresvd (labmodels 1.2)"
    assert rec["model"]["source"]["spec"] == "labmodels.svd:PureSVD"
    # a package whose model takes a built-in name is left out with one warning naming the package;
    # every other command goes on, and asking for that entry point's model gives the reason
    (info / "entry_points.txt").write_text("[fusebench.models]\nease2 = labmodels.bad:Ease\n")
    (site / "labmodels" / "bad.py").write_text(
        textwrap.dedent("""
        from baselines import Recommender
        class Ease(Recommender):
            name = "ease"
            family = "baseline/cf"
    """)
    )
    listed = subprocess.run(
        [sys.executable, "-m", "benchmark", "models", "list"], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert listed.returncode == 0 and "labmodels 1.2" in listed.stderr and "built-in" in listed.stderr
    assert len(listed.stderr.strip().splitlines()) == 1
    asked = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark",
            "run",
            "--dataset",
            "ml-100k",
            "--model",
            "ease2",
            "--seed",
            "0",
            "--results",
            str(res),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert asked.returncode == 2 and "labmodels 1.2" in asked.stderr.splitlines()[-1]


def test_sources_hash_the_defining_file_and_classes_pickle(tmp_path, monkeypatch):
    import pickle

    pkg = tmp_path / "site" / "relab"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .svd import PureSVD\n")  # re-exported from the package
    (pkg / "svd.py").write_text(EXAMPLE.read_text().replace("@register\n", ""))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    cls = external.load("relab:PureSVD")
    assert base.model_source("puresvd")["sha256"] == hashlib.sha256((pkg / "svd.py").read_bytes()).hexdigest()
    # a class from a file spec pickles (spawned DataLoader workers, joblib)
    src = tmp_path / "svd_file.py"
    src.write_text(EXAMPLE.read_text().replace('name = "puresvd"', 'name = "puresvd-file"'))
    made = external.load(f"{src}:PureSVD")(factors=3)
    assert pickle.loads(pickle.dumps(made)).factors == 3
    assert cls.name in base.model_names() and "puresvd" not in base.campaign_models()


def test_a_users_register_decorator_is_harmless_and_built_in_names_stay_built_in(tmp_path):
    src = tmp_path / "mine.py"
    src.write_text(
        "from baselines import Recommender, register\n\n@register\nclass Mine(Recommender):\n"
        "    name = 'mine'\n    family = 'baseline/cf'\n"
    )
    assert external.load(f"{src}:Mine").name == "mine"
    src.write_text(src.read_text() + "\n# edited\n")
    assert external.load(f"{src}:Mine").name == "mine"  # the edited file replaces the old class
    assert base.builtin_model("ease") and not base.builtin_model("mine")
