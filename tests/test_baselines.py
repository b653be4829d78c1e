"""Baselines against independent reference computations on small matrices."""

import numpy as np
import pytest
import scipy.sparse as sp

from baselines import FitData, make_model, model_names
from baselines.itemknn import topk_cosine
from baselines.sampling import NegativeSampler
from datasets.errors import FusebenchError


def random_binary(n_users=60, n_items=40, density=0.15, seed=0):
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < density).astype(np.float32)
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1.0  # nobody empty
    return sp.csr_matrix(dense)


def test_registry_has_the_foundation_models():
    assert {"pop", "itemknn", "ease", "bpr"} <= set(model_names())


def test_unknown_model_and_parameter_are_user_errors():
    with pytest.raises(FusebenchError, match="unknown model"):
        make_model("nope")
    with pytest.raises(FusebenchError, match="no parameter"):
        make_model("ease", {"lambda": 3})


def test_pop_scores_are_training_counts():
    x = random_binary()
    s = make_model("pop").fit(FitData(train=x)).score(np.array([0, 5]))
    np.testing.assert_array_equal(s[0], np.asarray(x.sum(0)).ravel())
    np.testing.assert_array_equal(s[0], s[1])


def test_ease_matches_the_closed_form():
    x = random_binary()
    lam = 7.0
    m = make_model("ease", {"l2": lam}).fit(FitData(train=x))
    g = (x.T @ x).toarray().astype(np.float64) + lam * np.eye(x.shape[1])
    p = np.linalg.inv(g)
    b = np.eye(x.shape[1]) - p / np.diag(p)  # Steck 2019, eq. (8)
    np.testing.assert_allclose(m.B_, b, atol=1e-5)
    assert np.all(np.diag(m.B_) == 0)
    users = np.arange(10)
    np.testing.assert_allclose(m.score(users), x[users].toarray() @ b, atol=1e-4)


def test_ease_rejects_non_positive_l2():
    with pytest.raises(FusebenchError, match="l2"):
        make_model("ease", {"l2": 0.0}).fit(FitData(train=random_binary()))


@pytest.mark.parametrize("shrink", [0.0, 5.0])
def test_itemknn_similarity_matches_dense_reference(shrink):
    x = random_binary()
    d = x.toarray().astype(np.float64)
    norms = np.linalg.norm(d, axis=0)
    full = d.T @ d / (np.outer(norms, norms) + shrink + 1e-12)
    np.fill_diagonal(full, 0.0)
    s = topk_cosine(x, k=x.shape[1], shrink=shrink, block=7).toarray()
    np.testing.assert_allclose(s, full, atol=1e-6)


def test_itemknn_keeps_k_neighbours_per_item():
    x = random_binary(n_users=200, n_items=50, density=0.3)
    k = 5
    s = topk_cosine(x, k=k, shrink=0.0, block=16).toarray()
    d = x.toarray()
    norms = np.linalg.norm(d, axis=0)
    full = d.T @ d / (np.outer(norms, norms) + 1e-12)
    np.fill_diagonal(full, 0.0)
    assert ((s > 0).sum(axis=0) <= k).all()
    for i in range(x.shape[1]):
        kept = s[:, i][s[:, i] > 0]
        # every kept similarity is at least the k-th largest one of that column
        assert kept.min() >= np.sort(full[:, i])[-k] - 1e-6


def test_negative_sampler_never_returns_a_positive_and_is_seeded():
    x = random_binary(density=0.6)
    a = NegativeSampler(x, np.random.default_rng(3))
    users = np.repeat(np.arange(x.shape[0]), 50)
    neg = a.negatives(users)
    assert not x[users, neg].A1.any()
    b = NegativeSampler(x, np.random.default_rng(3))
    np.testing.assert_array_equal(neg, b.negatives(users))


def test_bpr_is_deterministic_and_learns():
    x = random_binary(n_users=100, n_items=50, density=0.2)
    data = FitData(train=x, seed=11)
    runs = []
    for _ in range(2):
        m = make_model("bpr", {"epochs": 5, "batch_size": 64, "learning_rate": 0.05})
        m.init(data)
        losses = [m.train_epoch() for _ in range(5)]
        runs.append((losses, m.score(np.arange(10))))
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert runs[0][0] == runs[1][0]
    assert runs[0][0][-1] < runs[0][0][0] < 0.7  # BPR loss starts at log 2 = 0.693
