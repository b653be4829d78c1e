"""The protocol loop: validation-driven early stopping and best-state restore."""

import numpy as np
import pytest
import scipy.sparse as sp

from baselines import FitData, Recommender
from benchmark.training import parse_metric, train
from datasets.errors import FusebenchError


class ScheduledModel(Recommender):
    """Scores the validation items perfectly only at the epochs in `good` (a test double)."""

    name = "scheduled"
    family = "baseline/cf"
    iterative = True

    def __init__(self, valid, good=(3,), epochs=50):
        self.valid = valid
        self.good = good
        self.epochs = epochs

    def init(self, data):
        self.epoch_ = 0

    def train_epoch(self):
        self.epoch_ += 1
        return 1.0 / self.epoch_

    def score(self, users):
        s = self.valid[users].toarray()
        return s if self.epoch_ in self.good else -s


def _data(seed=0):
    rng = np.random.default_rng(seed)
    train = sp.csr_matrix((rng.random((30, 20)) < 0.2).astype(np.float32))
    valid = sp.csr_matrix(((rng.random((30, 20)) < 0.1) & (train.toarray() == 0)).astype(np.float32))
    return train, valid


def test_early_stopping_restores_the_best_epoch():
    train_m, valid = _data()
    model = ScheduledModel(valid, good=(3,))
    seen = []
    out = train(
        model, FitData(train=train_m), valid, metric="recall@5", patience=4, on_eval=lambda e, v: seen.append((e, v))
    )
    assert out.best_epoch == 3
    assert out.best_valid == 1.0
    assert out.epochs_run == 7 and out.stopped_early  # 4 evaluations without improvement
    assert model.epoch_ == 3  # best state restored
    assert [e for e, _ in seen] == list(range(1, 8))
    assert len(out.history) == 7 and out.history[0]["loss"] == 1.0


def test_eval_every_and_last_epoch_are_validated():
    train_m, valid = _data()
    model = ScheduledModel(valid, good=(6,), epochs=7)
    out = train(model, FitData(train=train_m), valid, metric="recall@5", eval_every=3, patience=10)
    evaluated = [h["epoch"] for h in out.history if "recall@5" in h]
    assert evaluated == [3, 6, 7]
    assert out.best_epoch == 6 and model.epoch_ == 6


def test_one_shot_models_fit_once():
    from baselines import make_model

    train_m, valid = _data()
    m = make_model("pop")
    out = train(m, FitData(train=train_m), valid)
    assert out.epochs_run is None and out.train_seconds >= 0
    assert m.item_counts_.shape == (20,)


@pytest.mark.parametrize("bad", ["recall", "recall@", "recall@0", "@5"])
def test_bad_metric_spec(bad):
    with pytest.raises(FusebenchError):
        parse_metric(bad)


def test_an_iterative_model_without_validation_rows_is_a_user_error():
    train_m, valid = _data()
    empty = sp.csr_matrix(valid.shape, dtype=np.float32)
    with pytest.raises(FusebenchError, match="no validation interactions"):
        train(ScheduledModel(empty), FitData(train=train_m), empty)
