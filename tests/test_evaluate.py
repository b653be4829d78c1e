"""Tests of the batched full-ranking evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from benchmark import metrics as M
from benchmark.evaluate import EvalResult, evaluate, mean_metrics
from datasets.errors import FusebenchError

N_USERS, N_ITEMS = 60, 40


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    train = sp.random(N_USERS, N_ITEMS, density=0.15, format="csr", random_state=rng)
    train.data[:] = 1
    test = sp.random(N_USERS, N_ITEMS, density=0.08, format="csr", random_state=rng)
    test.data[:] = 1
    test = test - test.multiply(train)  # disjoint from train
    test.eliminate_zeros()
    test = sp.csr_matrix(test)
    # some users without test items
    test = sp.csr_matrix(test.multiply((np.arange(N_USERS) % 5 != 0)[:, None]))
    test.eliminate_zeros()
    weights = rng.standard_normal((N_USERS, N_ITEMS)).astype(np.float32)
    weights[:, ::7] = 0.5  # ties
    return train, test, weights


class Recorder:
    def __init__(self, weights):
        self.weights = weights
        self.calls: list[np.ndarray] = []

    def __call__(self, users):
        assert users.dtype == np.int64
        self.calls.append(users.copy())
        return self.weights[users]


def test_batching_is_invariant():
    train, test, w = make_data()
    pop = np.asarray((train > 0).sum(axis=0)).ravel()
    results = [
        evaluate(Recorder(w), test, train, ks=(5, 10), batch_size=b, item_popularity=pop) for b in (1, 7, 10_000)
    ]
    for r in results[1:]:
        assert r.per_user.keys() == results[0].per_user.keys()
        for key in r.per_user:
            np.testing.assert_array_equal(r.per_user[key], results[0].per_user[key], err_msg=key)
        assert r.summary == pytest.approx(results[0].summary, nan_ok=True)
        assert r.n_users_evaluated == results[0].n_users_evaluated


def test_matches_direct_computation():
    train, test, w = make_data(1)
    res = evaluate(Recorder(w), test, train, ks=(3, 10), batch_size=8)
    topk = M.topk_items(w, 10, train)
    direct = M.rank_metrics(topk, test, M.RANK_METRICS, (3, 10))
    for key, v in direct.items():
        np.testing.assert_allclose(res.per_user[key], v, equal_nan=True)
    lm = M.list_metrics(topk[res.evaluated_users], (3, 10), N_ITEMS)
    for k in (3, 10):
        assert res.summary[f"item_coverage@{k}"] == pytest.approx(lm[f"item_coverage@{k}"])
        assert res.summary[f"gini@{k}"] == pytest.approx(lm[f"gini@{k}"])
    assert res.summary["ndcg@10"] == pytest.approx(np.nanmean(direct["ndcg@10"]))
    assert isinstance(res, EvalResult) and res.seconds >= 0


def test_users_without_truth_are_nan_and_never_scored():
    train, test, w = make_data(2)
    rec = Recorder(w)
    res = evaluate(rec, test, train, ks=(5,), batch_size=4)
    scored = np.concatenate(rec.calls)
    has_truth = np.diff(test.indptr) > 0
    assert set(scored.tolist()) == set(np.flatnonzero(has_truth).tolist())
    assert len(scored) == len(set(scored.tolist()))
    assert res.n_users_evaluated == int(has_truth.sum())
    for v in res.per_user.values():
        assert v.shape == (N_USERS,)
        assert np.isnan(v[~has_truth]).all()
        assert not np.isnan(v[has_truth]).any()


def test_users_restriction():
    train, test, w = make_data(3)
    rec = Recorder(w)
    res = evaluate(rec, test, train, ks=(5,), users=np.array([0, 1, 2, 3, 1]))
    scored = np.concatenate(rec.calls)
    expect = [u for u in (1, 2, 3) if test[u].nnz]
    assert sorted(scored.tolist()) == expect
    assert np.isnan(res.per_user["recall@5"][4:]).all()


def test_exclude_masks_items():
    n_users, n_items = 3, 6
    truth = sp.csr_matrix(np.array([[0, 0, 0, 0, 1, 0], [0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1]]))
    exclude = sp.csr_matrix(np.array([[1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0]]))
    scores = np.tile(np.arange(n_items, 0, -1, dtype=np.float32), (n_users, 1))  # item 0 best
    res = evaluate(lambda u: scores[u], truth, exclude, metrics=("mrr", "hit"), ks=(1, 2))
    # user 0: items 0-3 masked -> ranking 4, 5: hit at rank 1
    assert res.per_user["mrr@1"][0] == 1.0
    # user 1: nothing masked -> ranking 0, 1: hit at rank 2
    assert res.per_user["mrr@1"][1] == 0.0 and res.per_user["mrr@2"][1] == 0.5
    # user 2: only item 5 left -> hit at 1, list padded with -1
    assert res.per_user["hit@1"][2] == 1.0
    no_mask = evaluate(lambda u: scores[u], truth, None, metrics=("hit",), ks=(1,))
    assert no_mask.per_user["hit@1"][0] == 0.0


def test_wrong_shape_raises():
    train, test, w = make_data(4)
    with pytest.raises(FusebenchError, match="shape"):
        evaluate(lambda u: w[u][:, :-1], test, train)
    with pytest.raises(FusebenchError, match="shape"):
        evaluate(lambda u: w[u].T, test, train)
    with pytest.raises(FusebenchError, match="shape"):
        evaluate(lambda u: w[u], test, train[:, :-1])
    with pytest.raises(FusebenchError, match="unknown metric"):
        evaluate(lambda u: w[u], test, train, metrics=("nope",))


def test_nan_scores_rank_last_and_int_scores_accepted():
    truth = sp.csr_matrix(np.array([[1, 0, 0]]))
    s = np.array([[np.nan, 1.0, 0.0]], dtype=np.float32)
    res = evaluate(lambda u: s[u], truth, None, metrics=("mrr",), ks=(3,))
    assert res.per_user["mrr@3"][0] == pytest.approx(1 / 3)
    si = np.array([[5, 1, 0]])
    res = evaluate(lambda u: si[u], truth, None, metrics=("mrr",), ks=(3,))
    assert res.per_user["mrr@3"][0] == 1.0


def test_mean_metrics():
    m = mean_metrics({"a": np.array([1.0, np.nan, 3.0]), "b": np.array([np.nan])})
    assert m["a"] == 2.0 and np.isnan(m["b"])


def test_evaluation_keeps_torch_thread_count():
    """Numba's OpenMP start resets torch's thread count; evaluate puts it back."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        truth = sp.random(64, 30, density=0.2, format="csr", random_state=0, dtype=np.float32)
        truth.data[:] = 1
        evaluate(lambda u: np.random.default_rng(0).random((len(u), 30)).astype(np.float32), truth)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
