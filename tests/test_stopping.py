"""One stopping rule for every iterative model: patience on validation up to one protocol-level
maximum of epochs (never a model's own epoch default); records say why training stopped; the
leaderboard marks rows cut at the maximum; the full-length shortcut changes no number."""

from __future__ import annotations

import json

import numpy as np
import pytest

import datasets
import fusion_models  # noqa: F401  (registers the fusion models)
from baselines import base as registry
from baselines.base import Recommender, get_model_class, make_model, model_names
from baselines.bpr import BPRMF as BPR
from benchmark.leaderboard import CAPPED, render
from benchmark.model_plan import Plan, run_model
from benchmark.protocol import MAX_EPOCHS, Protocol
from benchmark.records import RecordStore, RunRecord
from benchmark.seed_run import run_one
from benchmark.tuning import Budget, TuningPlan
from conftest import ValidationBlend, synthetic_dataset

ITERATIVE = [m for m in model_names() if get_model_class(m).iterative]


@pytest.mark.parametrize("name", ITERATIVE)
@pytest.mark.parametrize("cfg", [Protocol(), Protocol.mmrec()], ids=["fusebench", "mmrec"])
def test_every_iterative_model_trains_to_the_same_protocol_maximum(name, cfg):
    model = make_model(name, cfg.model_params(name, {}))
    # the bound the training loop reads is the protocol's, whatever the model's own default
    assert model.epochs == MAX_EPOCHS == cfg.epochs
    assert cfg.patience >= 10


def test_an_explicit_epochs_parameter_is_the_users_bound():
    assert Protocol().model_params("bpr", {"epochs": 7})["epochs"] == 7
    assert Protocol(epochs=12).model_params("ials", {})["iterations"] == 12
    assert Protocol().model_params("ease", {}) == {}  # one-shot: nothing to bound


class Creeper(ValidationBlend, Recommender):
    """Iterative: validation recall creeps up by a little every epoch until `peak`, then stays.
    Its own `epochs` default (30) is far below where it converges."""

    name = "test-creeper"
    family = "baseline/cf"

    def __init__(self, peak: int = 120, epochs: int = 30):
        self.peak = peak
        self.epochs = epochs

    def truth(self, seed):
        return _VALID[seed]

    def learned(self):
        return 0.02 + 0.9 * min(self.epoch_, self.peak) / self.peak


_VALID: dict = {}


@pytest.fixture
def creeper(monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, Creeper.name, Creeper)
    ds = synthetic_dataset(n_users=150, n_items=120, per_user=14)
    split = datasets.split(ds, "random", seed=0)
    _VALID[0] = split.valid
    return ds, split


def test_a_slowly_improving_model_is_not_stopped_by_its_own_epoch_default(creeper, tmp_path):
    ds, split = creeper
    rec = run_one(RecordStore(tmp_path), ds, split, Creeper.name, {}, Protocol()).record
    tr = rec["training"]
    assert rec["model"]["params"]["epochs"] == MAX_EPOCHS
    assert tr["epochs_run"] > 30 and tr["best_epoch"] > 30  # past its own default of 30
    assert tr["stopped_by"] == "patience" and tr["stopped_early"]
    assert tr["epochs_run"] == tr["best_epoch"] + Protocol().patience
    assert not RunRecord(rec).stopped_at_bound


def test_a_run_that_ends_at_the_maximum_is_recorded_and_marked(creeper, tmp_path):
    ds, split = creeper
    store = RecordStore(tmp_path)
    capped = run_one(store, ds, split, Creeper.name, {}, Protocol(epochs=40)).record
    assert capped["training"]["stopped_by"] == "max_epochs" and capped["training"]["epochs_run"] == 40
    assert RunRecord(capped).stopped_at_bound
    run_one(store, ds, split, "pop", {}, Protocol(epochs=40))
    board = render(list(store.records()))
    row = next(line for line in board.splitlines() if line.startswith(f"| {Creeper.name}"))
    assert CAPPED in row
    assert f"{CAPPED} Not converged" in board and f"`{Creeper.name}` (1 of 1 seeds, at 40 epochs)" in board
    pop_row = next(line for line in board.splitlines() if line.startswith("| pop"))
    assert CAPPED not in pop_row


def test_a_converged_table_says_so(creeper, tmp_path):
    ds, split = creeper
    store = RecordStore(tmp_path)
    run_one(store, ds, split, Creeper.name, {}, Protocol())
    board = render(list(store.records()))
    assert f"{CAPPED} Not converged" not in board
    assert "Every iterative run in this table stopped by patience" in board


def test_old_records_without_stopped_by_are_read_from_stopped_early():
    assert RunRecord({"training": {"epochs_run": 60, "stopped_early": False}}).stopped_at_bound
    assert not RunRecord({"training": {"epochs_run": 60, "stopped_early": True}}).stopped_at_bound
    assert not RunRecord({"training": {"epochs_run": None}}).stopped_at_bound
    old = {"split": {"seed": 4}, "training": {"epochs_run": 60, "stopped_early": False}}
    rec = RunRecord(old)
    # what the absent fields meant, filled on reading (the record read is not changed)
    assert (rec["seed"], rec["placebo"], rec["training"]["stopped_by"]) == (4, None, "max_epochs")
    assert old == {"split": {"seed": 4}, "training": {"epochs_run": 60, "stopped_early": False}}


class FastBPR(BPR):
    """BPR whose only sampled configuration learns fast: it wins the capped trials, so the
    full-length check trains both it and the defaults to convergence."""

    name = "test-fast-bpr"

    @classmethod
    def search_space(cls, trial):
        return {"learning_rate": trial.suggest_categorical("learning_rate", [0.02])}


def _comparable(rec: dict) -> dict:
    """A record without what differs between two runs of the same training: timings, the
    time of writing, and the storage-derived tuning seconds."""
    rec = json.loads(json.dumps(rec))
    rec.pop("provenance", None)
    rec.pop("train_seconds", None)
    rec.pop("eval_seconds", None)
    rec["training"].pop("train_seconds", None)
    rec["training"].pop("valid_seconds", None)
    rec.get("tuning", {}).pop("seconds", None)
    return rec


def test_the_seed_run_that_reuses_the_full_length_training_is_bit_identical(monkeypatch, tmp_path):
    monkeypatch.setitem(registry._REGISTRY, FastBPR.name, FastBPR)
    ds = synthetic_dataset(n_users=200, n_items=150, per_user=15)
    splits = {}

    def get_split(seed):
        if seed not in splits:
            splits[seed] = datasets.split(ds, "random", seed=seed)
        return splits[seed]

    params = {"embedding_size": 8, "batch_size": 256}
    cfg = Protocol(patience=3, epochs=60, seeds=(0, 1))
    plan = Plan(tuning=TuningPlan(Budget(trials=2, epoch_cap=3)), results=tmp_path)
    store = RecordStore(tmp_path)
    result, outs = run_model(store, ds, FastBPR.name, params, cfg, plan, get_split)
    assert result.full_length is not None and result.trained is not None  # the check ran here
    shortcut, a = outs[0].record, outs[0].located().per_user()
    # the slow path: the same seed run, trained from scratch
    slow = run_one(
        store,
        ds,
        get_split(0),
        FastBPR.name,
        {**result.best_params, **params},
        cfg,
        force=True,
        tuning=result.as_record(),
    )
    assert slow.key == outs[0].key
    assert _comparable(shortcut) == _comparable(slow.record)
    b = slow.located().per_user()
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def test_perf_train_prints_each_models_epoch_and_the_reference_ratio(capsys):
    from benchmark.cli import main

    assert main(["perf", "train", "--dataset", "ml-100k", "--models", "bpr,vbpr", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| model | s / epoch | s / validation | x BPR's epoch")
    bpr = next(line for line in table if line.startswith("| bpr |"))
    assert "| 1.00 | recbole:BPR |" in bpr and "(RecBole " in bpr
    vbpr = next(line for line in table if line.startswith("| vbpr |"))
    assert vbpr.count("|") == 9 and float(vbpr.split("|")[-2]) > 0  # its floor was counted


def test_perf_train_refuses_one_shot_models():
    from benchmark.cli import main

    assert main(["perf", "train", "--models", "ease"]) == 2


@pytest.mark.parametrize("model", ["ease", "itemknn", "content-knn", "hybrid-blend"])
def test_seeds_of_a_seed_free_model_on_a_given_split_are_the_first_seeds_bit_for_bit(tmp_path, model):
    """lfm2k's given split is the same under every seed, and these fits never read the seed:
    seeds 1 and 2 take seed 0's results; the slow path (training each seed) gives the same
    records and per-user arrays."""
    ds = datasets.load("lfm2k")
    get_split = lambda seed: datasets.split(ds, "given", seed=seed)  # noqa: E731
    cfg, plan = Protocol(seeds=(0, 1, 2)), Plan(results=tmp_path / "fast")
    _, outs = run_model(RecordStore(tmp_path / "fast"), ds, model, {}, cfg, plan, get_split)
    assert [o.status for o in outs] == ["done"] * 3
    assert [o.record.get("same_as") for o in outs] == [None, outs[0].key, outs[0].key]
    slow_store = RecordStore(tmp_path / "slow")
    for seed, fast in zip([0, 1, 2], outs):
        slow = run_one(slow_store, ds, get_split(seed), model, {}, cfg)
        assert slow.key == fast.key and fast.record["seed"] == fast.record["split"]["seed"] == seed
        fast_rec = _comparable(fast.record)
        fast_rec.pop("same_as", None)
        assert fast_rec == _comparable(slow.record)
        a, b = fast.located().per_user(), slow.located().per_user()
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def test_a_seeded_model_or_a_split_that_moves_with_the_seed_trains_every_seed(tmp_path):
    ds = datasets.load("lfm2k")
    cfg = Protocol(patience=1, epochs=2, seeds=(0, 1))
    plan = Plan(results=tmp_path)
    given = lambda seed: datasets.split(ds, "given", seed=seed)  # noqa: E731
    _, outs = run_model(RecordStore(tmp_path), ds, "bpr", {}, cfg, plan, given)  # seeded: BPR samples
    assert all("same_as" not in o.record for o in outs)
    assert outs[0].record["test"] != outs[1].record["test"]
    random = lambda seed: datasets.split(ds, "random", seed=seed)  # noqa: E731
    _, outs = run_model(RecordStore(tmp_path), ds, "ease", {}, cfg, plan, random)
    assert all("same_as" not in o.record for o in outs)
    # a blend whose CF part trains with the seed asks it
    assert make_model("hybrid-blend", {"cf": "bpr"}).uses_seed()
    assert not make_model("hybrid-blend", {"weight": 1.0, "cf": "bpr"}).uses_seed()
