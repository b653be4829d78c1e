"""Tuning: validation only (structurally and in outcome), equal budgets, pruning, resume."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import optuna
import pytest

import datasets
from baselines import base as registry
from baselines.base import Recommender
from benchmark.cli import main
from benchmark.model_plan import Plan, run_model, tuning_data
from benchmark.protocol import Protocol
from benchmark.records import RecordStore
from benchmark.storage import storage_kind
from benchmark.tuning import Budget, TuningData, TuningPlan, tune
from conftest import ValidationBlend
from conftest import synthetic_dataset as _synthetic
from datasets.errors import FusebenchError

# seed -> Split, for the oracle below (the test plays the part of a model that cheats)
_SPLITS: dict[int, datasets.Split] = {}


class Oracle(Recommender):
    """Scores exactly the items of one held-out matrix of its split: with target="test" its
    test score is perfect and its validation score poor; with "valid" the other way round.
    Tuning that read test would choose "test"; tuning on validation must choose "valid"."""

    name = "test-oracle"
    family = "baseline/cf"

    def __init__(self, target: str = "test"):
        self.target = target

    @classmethod
    def search_space(cls, trial):
        return {"target": trial.suggest_categorical("target", ["test", "valid"])}

    def fit(self, data):
        self.truth_ = getattr(_SPLITS[data.seed], self.target)
        self.noise_ = np.random.default_rng(data.seed).random(data.train.shape[1]).astype(np.float32) * 1e-3
        return self

    def score(self, users):
        return self.truth_[users].toarray().astype(np.float32) + self.noise_


class Curve(ValidationBlend, Recommender):
    """Iterative: validation recall grows with `quality` (so the pruner has something to prune)."""

    name = "test-curve"
    family = "baseline/cf"

    def __init__(self, quality: float = 0.5, epochs: int = 50):
        self.quality = quality
        self.epochs = epochs

    @classmethod
    def search_space(cls, trial):
        return {"quality": trial.suggest_float("quality", 0.0, 1.0)}

    def truth(self, seed):
        return _SPLITS[seed].valid

    def learned(self):
        return self.quality * min(1.0, self.epoch_ / 5)


class SlowStarter(ValidationBlend, Recommender):
    """Iterative: its defaults (speed="slow") learn slowly but end perfect; "fast", the only
    value its space samples, is ahead for the first epochs and then stuck well below."""

    name = "test-slow-starter"
    family = "baseline/cf"
    truth = Curve.truth

    def __init__(self, speed: str = "slow", epochs: int = 30):
        self.speed = speed
        self.epochs = epochs

    @classmethod
    def search_space(cls, trial):
        return {"speed": trial.suggest_categorical("speed", ["fast"])}

    def learned(self):
        return 0.4 if self.speed == "fast" else min(1.0, self.epoch_ / 10)


@pytest.fixture
def fake_models(monkeypatch):
    for cls in (Oracle, Curve, SlowStarter):
        monkeypatch.setitem(registry._REGISTRY, cls.name, cls)


def _get_split(ds):
    def get(seed):
        if seed not in _SPLITS:
            _SPLITS[seed] = datasets.split(ds, "random", seed=seed)
        return _SPLITS[seed]

    _SPLITS.clear()
    return get


class _Trap:
    """Stands in for the test matrix: any use of it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"tuning touched the test matrix (.{name})")

    def __getitem__(self, key):
        raise AssertionError("tuning touched the test matrix")


def test_budget_parsing_and_validation():
    assert Budget.parse("8") == Budget(trials=8)
    assert Budget.parse("300s").seconds == 300 and Budget.parse("300s").describe() == "300 s"
    assert Budget.parse(5, epoch_cap=7).epoch_cap == 7 and Budget.parse(5).describe() == "5 trials"
    for bad in ("0", "abc", "-3", "5m"):
        with pytest.raises(FusebenchError):
            Budget.parse(bad)
    assert storage_kind("postgresql+psycopg2://u:secret@h:5432/db") == "postgresql"
    assert storage_kind("sqlite:////tmp/x.db") == "sqlite"


def test_tuning_cannot_receive_the_test_matrix(tmp_path):
    ds = _synthetic()
    split = datasets.split(ds, "random", seed=0)
    with pytest.raises(TypeError, match="TuningData"):
        tune(split, "ease", Budget(trials=1), results=tmp_path)
    assert not any("test" in f for f in TuningData.__dataclass_fields__)
    # the tuner's view is built without reading test, and tuning never reads it either
    trapped = datasets.Split(
        train=split.train,
        valid=split.valid,
        test=_Trap(),
        protocol=split.protocol,
        params=split.params,
        seed=split.seed,
    )
    res = tune(tuning_data(ds, trapped), "itemknn", Budget(trials=2), results=tmp_path)
    assert res.trials == 2 and 0 < res.best_valid <= 1


def test_a_model_perfect_on_leaked_test_data_does_not_win_tuning(tmp_path, fake_models):
    ds = _synthetic()
    get_split = _get_split(ds)
    store = RecordStore(tmp_path / "results")
    plan = Plan(tuning=TuningPlan(Budget(trials=6)), results=tmp_path / "results")
    res, outs = run_model(store, ds, "test-oracle", {}, Protocol(seeds=(0, 1)), plan, get_split)
    study = optuna.load_study(study_name=res.study, storage=f"sqlite:///{tmp_path / 'results' / 'tuning.db'}")
    tried = {t.user_attrs["params"]["target"] for t in study.trials}
    assert study.trials[0].user_attrs["params"] == {"target": "test"}  # trial 0: the defaults
    assert tried == {"test", "valid"}, "both candidates must be tried for the test to mean anything"
    assert res.best_params == {"target": "valid"} and res.best_valid == pytest.approx(1.0)
    for out in outs:
        assert out.record["model"]["params"] == {"target": "valid"}
        assert out.record["test"]["recall@20"] < 0.5  # the honest (poor) test score
        assert out.record["tuning"]["best_params"] == {"target": "valid"}
    # the configuration tuning rejected is the one that is perfect on test
    cheat, _ = run_model(store, ds, "test-oracle", {"target": "test"}, Protocol(seeds=(0,)), Plan(), get_split)
    rec = next(r for r in store.records() if r["model"]["params"]["target"] == "test")
    assert cheat is None and rec["test"]["recall@20"] == pytest.approx(1.0)


def test_iterative_trials_are_pruned_and_capped(tmp_path, fake_models):
    ds = _synthetic()
    get_split = _get_split(ds)
    data = tuning_data(ds, get_split(0))
    res = tune(data, "test-curve", Budget(trials=8, epoch_cap=8), results=tmp_path)
    assert res.trials == 8 and res.pruned >= 1 and res.complete + res.pruned == 8
    study = optuna.load_study(study_name=res.study, storage=f"sqlite:///{tmp_path / 'tuning.db'}")
    for t in study.trials:
        assert t.intermediate_values and max(t.intermediate_values) <= 8  # per-epoch reports, capped
        if t.state == optuna.trial.TrialState.PRUNED:
            assert max(t.intermediate_values) < 8
    best = max((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert res.best_params == best.user_attrs["params"]


def _history(url, name):
    st = optuna.load_study(study_name=name, storage=url)
    return [(t.state.name, t.params, t.value) for t in st.trials if t.state.name in ("COMPLETE", "PRUNED")]


def test_resume_extends_the_same_study_and_skips_finished_trials(tmp_path, ml100k):
    split = datasets.split(ml100k, "random", seed=0)
    data = tuning_data(ml100k, split)
    a = tune(data, "ease", Budget(trials=3), results=tmp_path / "a")
    again = tune(data, "ease", Budget(trials=3), results=tmp_path / "a")
    assert again.new_trials == 0 and again.best_params == a.best_params
    more = tune(data, "ease", Budget(trials=5), results=tmp_path / "a")
    assert more.new_trials == 2 and more.trials == 5
    # a trial left RUNNING by a killed process is failed on restart and its slot rerun
    url_b = f"sqlite:///{tmp_path / 'b' / 'tuning.db'}"
    tune(data, "ease", Budget(trials=2), results=tmp_path / "b")
    st = optuna.load_study(study_name=a.study, storage=url_b)
    st.ask()  # a trial that never finished: what SIGKILL leaves behind
    b = tune(data, "ease", Budget(trials=5), results=tmp_path / "b")
    assert b.trials == 5 and b.new_trials == 3
    states = [t.state.name for t in optuna.load_study(study_name=a.study, storage=url_b).trials]
    assert states.count("FAIL") == 1 and "RUNNING" not in states
    # same seed, same history: interrupted + resumed equals uninterrupted, trial by trial
    url_a = f"sqlite:///{tmp_path / 'a' / 'tuning.db'}"
    assert _history(url_a, a.study) == _history(url_b, a.study)
    assert b.best_params == more.best_params and b.best_valid == more.best_valid


def test_records_carry_tuning_and_budget_is_part_of_the_key(tmp_path):
    ds = _synthetic()
    get_split = _get_split(ds)
    store = RecordStore(tmp_path / "results")
    plan = Plan(tuning=TuningPlan(Budget(trials=2)), results=tmp_path / "results")
    cfg = Protocol(seeds=(0, 1))
    res, outs = run_model(store, ds, "itemknn", {"shrink": 0.0}, cfg, plan, get_split)
    assert [o.status for o in outs] == ["done", "done"]
    t = outs[0].record["tuning"]
    assert t["trials"] == 2 and t["budget"] == "2 trials" and t["storage"] == "sqlite"
    assert t["best_params"]["shrink"] == 0.0  # fixed parameters stay fixed
    assert set(t) >= {"best_valid", "study", "epoch_cap", "pruner", "sampler", "timeout"}
    assert outs[0].record["model"]["params"]["k"] == t["best_params"]["k"]
    _, again = run_model(store, ds, "itemknn", {"shrink": 0.0}, cfg, plan, get_split)
    assert [o.status for o in again] == ["skipped", "skipped"]
    plan = replace(plan, tuning=TuningPlan(Budget(trials=3)))
    _, more = run_model(store, ds, "itemknn", {"shrink": 0.0}, cfg, plan, get_split)
    assert [o.status for o in more] == ["done", "done"] and more[0].key != outs[0].key
    # nothing to tune: a plain run, the same record as --no-tune
    res, pop = run_model(store, ds, "pop", {}, cfg, plan, get_split)
    assert res.trials == 0 and "tuning" not in pop[0].record


def test_cli_tune_and_run_with_budget(tmp_path, capsys, ml100k):
    results = tmp_path / "results"
    code = main(["tune", "--dataset", "ml-100k", "--model", "ease", "--trials", "2", "--results", str(results)])
    out = capsys.readouterr().out
    assert code == 0 and "2 finished trials" in out and "best valid recall@20" in out
    code = main(
        ["run", "--dataset", "ml-100k", "--model", "ease", "--budget", "2", "--seeds", "2", "--results", str(results)]
    )
    out = capsys.readouterr().out
    assert code == 0 and "2 runs done" in out and "(0 new tuning trials)" in out  # the study was reused
    recs = list(RecordStore(results).records())
    assert len(recs) == 2 and all(r["tuning"]["trials"] == 2 for r in recs)
    assert {r["seed"] for r in recs} == {0, 1}
    board = (results / "LEADERBOARD.md").read_text()
    assert "2 trials" in board


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--all", "--no-tune", "--budget", "3"], "contradict"),
        (["run", "--all", "--budget", "lots"], "--budget"),
        (["run", "--all", "--pruner", "nope"], "unknown pruner"),
        (["tune", "--dataset", "ml-100k", "--model", "ease", "--trials", "2", "--timeout", "5"], "not both"),
        (["tune", "--dataset", "ml-100k", "--model", "nope"], "unknown model"),
        (
            ["tune", "--dataset", "ml-100k", "--model", "ease", "--storage", "postgresql://x@127.0.0.1:1/none"],
            "cannot open tuning storage",
        ),
    ],
)
def test_tuning_user_errors_exit_2(args, message, tmp_path, capsys):
    code = main(args + ["--results", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "runs").exists()


def test_tuning_record_is_json_and_has_no_password():
    from benchmark.tuning import TuningResult

    r = TuningResult(
        study="s",
        storage=storage_kind("postgresql://u:hunter2@h/db"),
        budget=Budget(trials=3),
        metric="recall@20",
        trials=3,
        complete=2,
        pruned=1,
        new_trials=3,
        best_params={"l2": 1.0},
        best_valid=0.3,
        seconds=1.0,
        sampler="TPE(seed=0)",
        pruner="median",
        split_seed=0,
    )
    text = json.dumps(r.as_record())
    assert "hunter2" not in text and '"storage": "postgresql"' in text


def test_the_epoch_cap_does_not_beat_the_defaults_at_convergence(tmp_path, fake_models, monkeypatch):
    ds = _synthetic()
    data = tuning_data(ds, _get_split(ds)(0))
    res = tune(data, "test-slow-starter", Budget(trials=2, epoch_cap=3), results=tmp_path)
    study = optuna.load_study(study_name=res.study, storage=f"sqlite:///{tmp_path / 'tuning.db'}")
    at_cap = {t.user_attrs["params"]["speed"]: t.value for t in study.trials}
    assert at_cap["fast"] > at_cap["slow"]  # at the cap the sampled configuration wins ...
    full = res.full_length
    assert full["defaults"] > full["best"] and full["chosen"] == "defaults"  # ... at convergence not
    assert res.best_params == {"speed": "slow"}
    # a resumed study reads both values back instead of training again
    import benchmark.tuning as tuning

    monkeypatch.setattr(tuning, "train", lambda *a, **k: pytest.fail("retrained on resume"))
    again = tune(data, "test-slow-starter", Budget(trials=2, epoch_cap=3), results=tmp_path)
    assert again.full_length == full and again.best_params == res.best_params and again.new_trials == 0
    assert again.as_record()["full_length"] == full
