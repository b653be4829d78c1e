"""The collaborative-filtering baselines (UserKNN, RP3beta, iALS, Mult-VAE, LightGCN) against
independent dense reference computations on small matrices, plus a short real-data check
that each one clearly beats popularity on ML-100K."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import datasets
from baselines import FitData, make_model, model_names
from baselines.ials import cg_sweep, ials_loss
from baselines.lightgcn import normalized_adjacency
from benchmark.evaluate import evaluate
from benchmark.training import train
from datasets.errors import FusebenchError

NEW = ("userknn", "rp3beta", "ials", "multvae", "lightgcn")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Small tensors: one thread is faster, and immune to a busy shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def random_matrix(n_users=50, n_items=30, density=0.2, seed=0, weighted=False):
    """A user-item matrix where nobody is empty; `weighted` gives distinct values (no ties)."""
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < density).astype(np.float32)
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1.0
    if weighted:
        dense *= rng.uniform(0.5, 5.0, size=dense.shape).astype(np.float32)
    return sp.csr_matrix(dense)


def keep_topk_rows(m, k):
    """Dense reference of a row-wise top-k that keeps positive entries only."""
    out = np.zeros_like(m)
    for r in range(m.shape[0]):
        best = np.argsort(-m[r], kind="stable")[:k]
        best = best[m[r, best] > 0]
        out[r, best] = m[r, best]
    return out


def test_all_registered_as_cf_baselines():
    from baselines import get_model_class

    assert set(NEW) <= set(model_names())
    for name in NEW:
        cls = get_model_class(name)
        assert cls.family == "baseline/cf"
        assert set(cls.defaults()) == set(cls.param_names())


@pytest.mark.parametrize(
    "name, params",
    [
        ("userknn", {"k": 0}),
        ("userknn", {"shrink": -1.0}),
        ("rp3beta", {"k": 0}),
        ("rp3beta", {"beta": -0.1}),
        ("rp3beta", {"alpha": -1.0}),
        ("ials", {"factors": 0}),
        ("ials", {"regularization": -1.0}),
        ("ials", {"alpha": -1.0}),
        ("ials", {"iterations": 0}),
        ("ials", {"cg_steps": 0}),
        ("multvae", {"dropout": 1.0}),
        ("multvae", {"latent_size": 0}),
        ("multvae", {"learning_rate": 0.0}),
        ("lightgcn", {"embedding_size": 0}),
        ("lightgcn", {"n_layers": -1}),
        ("lightgcn", {"reg_weight": -1.0}),
        ("lightgcn", {"batch_size": 0}),
    ],
)
def test_bad_parameters_are_user_errors(name, params):
    from baselines import get_model_class

    with pytest.raises(FusebenchError):  # refused when made, before any data is read
        make_model(name, params)
    m = get_model_class(name)(**params)  # built by hand: refused when fitted
    data = FitData(train=random_matrix())
    with pytest.raises(FusebenchError):
        m.init(data) if m.iterative else m.fit(data)


# --- UserKNN --------------------------------------------------------------------------------
@pytest.mark.parametrize("k, shrink", [(49, 0.0), (49, 7.0), (5, 3.0)])
def test_userknn_matches_dense_cosine(k, shrink):
    x = random_matrix(weighted=True)
    d = x.toarray().astype(np.float64)
    norms = np.linalg.norm(d, axis=1)
    sim = d @ d.T / (np.outer(norms, norms) + shrink + 1e-12)
    np.fill_diagonal(sim, 0.0)
    w = keep_topk_rows(sim, k)  # row u: u's own k nearest users
    m = make_model("userknn", {"k": k, "shrink": shrink}).fit(FitData(train=x))
    np.testing.assert_allclose(m.W_.toarray(), w, atol=1e-5)
    users = np.array([0, 3, 7, 49])
    np.testing.assert_allclose(m.score(users), w[users] @ d, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(m.score(users, block=3), m.score(users), atol=1e-6)
    assert ((m.W_ > 0).sum(axis=1) <= k).all()


# --- RP3beta --------------------------------------------------------------------------------
def rp3beta_dense(d, alpha, beta, k, normalize):
    p_ui = d / d.sum(axis=1, keepdims=True)
    b = (d > 0).astype(np.float64).T
    p_iu = b / b.sum(axis=1, keepdims=True)
    w = (p_iu**alpha) @ (p_ui**alpha) / b.sum(axis=1)[None, :] ** beta
    np.fill_diagonal(w, 0.0)
    w = keep_topk_rows(w, k)
    if normalize:
        w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
    return w


@pytest.mark.parametrize(
    "alpha, beta, k, normalize",
    [(1.0, 0.5, 29, False), (0.7, 0.6, 29, True), (1.3, 0.0, 6, True), (1.0, 0.6, 4, False)],
)
def test_rp3beta_matches_dense_formula(alpha, beta, k, normalize):
    x = random_matrix(weighted=True)
    d = x.toarray().astype(np.float64)
    ref = rp3beta_dense(d, alpha, beta, k, normalize)
    m = make_model("rp3beta", {"alpha": alpha, "beta": beta, "k": k, "normalize": normalize}).fit(FitData(train=x))
    np.testing.assert_allclose(m.W_.toarray(), ref, rtol=1e-4, atol=1e-6)
    users = np.arange(10)
    np.testing.assert_allclose(m.score(users), d[users] @ ref, rtol=1e-4, atol=1e-6)


def test_rp3beta_blocks_do_not_change_the_result():
    from baselines.rp3beta import rp3beta_similarity

    x = random_matrix(n_items=45, weighted=True)
    a = rp3beta_similarity(x, 0.8, 0.4, 7, True, block=4).toarray()
    b = rp3beta_similarity(x, 0.8, 0.4, 7, True, block=1000).toarray()
    np.testing.assert_allclose(a, b, atol=1e-7)


# --- iALS -----------------------------------------------------------------------------------
def test_ials_cg_solves_one_users_normal_equations():
    # float32 like the model (one compiled specialisation of the kernel), so tolerances are float32's
    rng = np.random.default_rng(0)
    n_items, f, alpha, reg = 25, 6, 3.0, 0.5
    x = random_matrix(n_users=3, n_items=n_items, density=0.3)
    cui = x.copy()
    cui.data = (1.0 + alpha * cui.data).astype(np.float32)
    Y = rng.normal(size=(n_items, f)).astype(np.float32)
    X = rng.normal(size=(3, f)).astype(np.float32)
    gram = (Y.T @ Y + reg * np.eye(f)).astype(np.float32)
    u = 1
    c = np.ones(n_items)
    pref = np.zeros(n_items)
    row = cui[u].toarray().ravel()
    c[row > 0], pref[row > 0] = row[row > 0], 1.0
    y64 = Y.astype(np.float64)
    a = y64.T @ (c[:, None] * y64) + reg * np.eye(f)  # Y^T C_u Y + reg I
    expected = np.linalg.solve(a, y64.T @ (c * pref))
    # f CG steps are exact in exact arithmetic; a few more absorb rounding
    X_cg = X.copy()
    cg_sweep(cui.indptr, cui.indices, cui.data, X_cg, Y, gram, 3 * f)
    np.testing.assert_allclose(X_cg[u], expected, rtol=1e-3, atol=1e-4)
    # three steps (the default) from the same start already move most of the way
    X_3 = X.copy()
    cg_sweep(cui.indptr, cui.indices, cui.data, X_3, Y, gram, 3)
    assert np.linalg.norm(X_3[u] - expected) < 0.5 * np.linalg.norm(X[u] - expected)


def test_ials_loss_matches_dense_formula():
    rng = np.random.default_rng(1)
    x = random_matrix(n_users=20, n_items=15)
    cui = x.copy()
    cui.data = (1.0 + 4.0 * cui.data).astype(np.float32)
    X = rng.normal(size=(20, 5)).astype(np.float32)
    Y = rng.normal(size=(15, 5)).astype(np.float32)
    c = np.where(x.toarray() > 0, cui.toarray(), 1.0)
    p = (x.toarray() > 0).astype(np.float64)
    err = (c * (p - X.astype(np.float64) @ Y.T.astype(np.float64)) ** 2).sum()
    expected = (err + 0.3 * ((X.astype(np.float64) ** 2).sum() + (Y.astype(np.float64) ** 2).sum())) / c.sum()
    assert ials_loss(cui, X, Y, 0.3) == pytest.approx(expected, rel=1e-5)


def test_ials_loss_decreases_and_is_deterministic():
    x = random_matrix(n_users=80, n_items=40)
    runs = []
    for _ in range(2):
        m = make_model("ials", {"factors": 8, "regularization": 1.0, "alpha": 10.0})
        m.init(FitData(train=x, seed=5))
        losses = [m.train_epoch() for _ in range(6)]
        runs.append((losses, m.score(np.arange(10))))
    losses = runs[0][0]
    assert all(b <= a + 1e-9 for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.7 * losses[0]
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    # best-state keeping works on the factors
    state = m.get_state()
    before = m.score(np.arange(5))
    m.train_epoch()
    m.set_state(state)
    np.testing.assert_array_equal(m.score(np.arange(5)), before)


# --- Mult-VAE -------------------------------------------------------------------------------
def test_multvae_is_deterministic_and_learns():
    x = random_matrix(n_users=120, n_items=60, density=0.2)
    runs = []
    for _ in range(2):
        m = make_model("multvae", {"hidden_size": 32, "latent_size": 8, "batch_size": 32, "learning_rate": 1e-2})
        m.init(FitData(train=x, seed=3))
        losses = [m.train_epoch() for _ in range(8)]
        runs.append((losses, m.score(np.arange(10))))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    losses = runs[0][0]
    assert losses[-1] < losses[0]
    assert runs[0][1].shape == (10, 60) and runs[0][1].dtype == np.float32
    # one update per batch of users: 120 users / 32 -> 4 updates an epoch
    assert m._updates == 8 * 4
    assert m.beta() == pytest.approx(min(0.2, 32 / 200000))


def test_multvae_sparse_input_path_equals_dense_and_scores_the_mean():
    x = random_matrix(n_users=30, n_items=40, density=0.3)
    m = make_model("multvae", {"hidden_size": 16, "latent_size": 4})
    m.init(FitData(train=x, seed=0))
    m.module_.eval()
    users = torch.arange(7)
    xs = m._rows(users)
    with torch.no_grad():
        sparse_out = m.module_(xs)[0]
        dense_out = m.module_(xs.to_dense())[0]
        # the mean of q(z|x) decoded, by hand: no sampling at scoring time
        h = torch.nn.functional.normalize(torch.from_numpy(x[:7].toarray()), dim=1)
        mu = m.module_.encoder(h)[:, :4]
        by_hand = m.module_.decoder(mu)
    np.testing.assert_allclose(sparse_out.numpy(), dense_out.numpy(), atol=1e-5)
    np.testing.assert_allclose(m.score(np.arange(7)), by_hand.numpy(), atol=1e-5)
    np.testing.assert_array_equal(m.score(np.arange(7)), m.score(np.arange(7)))  # no sampling


# --- LightGCN -------------------------------------------------------------------------------
def test_lightgcn_propagation_equals_dense_computation(tiny_dataset):
    df = tiny_dataset.interactions
    x = sp.csr_matrix((np.ones(len(df), np.float32), (df.user, df.item)), shape=(5, 6))
    m = make_model("lightgcn", {"embedding_size": 4, "n_layers": 3})
    m.init(FitData(train=x, seed=0))
    a = np.zeros((11, 11))
    a[:5, 5:] = x.toarray()
    a[5:, :5] = x.toarray().T
    deg = a.sum(axis=1) + 1e-7
    norm = a / np.sqrt(np.outer(deg, deg))
    np.testing.assert_allclose(normalized_adjacency(x).toarray(), norm, rtol=1e-6)
    e0 = torch.cat([m.module_.user.weight, m.module_.item.weight]).detach().double().numpy()
    layers = [e0]
    for _ in range(3):
        layers.append(norm @ layers[-1])
    final = np.mean(layers, axis=0)
    with torch.no_grad():
        users, items = m.final_embeddings()
    np.testing.assert_allclose(users.numpy(), final[:5], atol=1e-6)
    np.testing.assert_allclose(items.numpy(), final[5:], atol=1e-6)
    np.testing.assert_allclose(m.score(np.arange(5)), final[:5] @ final[5:].T, atol=1e-5)


def test_lightgcn_gradient_through_symmetric_spmm_matches_dense():
    x = random_matrix(n_users=12, n_items=9, density=0.3)
    m = make_model("lightgcn", {"embedding_size": 3})
    m.init(FitData(train=x, seed=0))
    norm = torch.from_numpy(normalized_adjacency(x).toarray()).double()
    users, pos, neg = (torch.as_tensor(b) for b in next(iter(m.epoch_batches())))
    loss = m.batch_loss(users, pos, neg)
    loss.backward()
    got = torch.cat([m.module_.user.weight.grad, m.module_.item.weight.grad]).double()
    e0 = torch.cat([m.module_.user.weight, m.module_.item.weight]).detach().double().requires_grad_()
    e1 = norm @ e0
    final = (e0 + e1 + norm @ e1) / 3
    u, i = final[:12], final[12:]
    pos_s, neg_s = (u[users] * i[pos]).sum(-1), (u[users] * i[neg]).sum(-1)
    mf = -torch.log(1e-10 + torch.sigmoid(pos_s - neg_s)).mean()
    reg = (e0[:12][users].norm() + e0[12:][pos].norm() + e0[12:][neg].norm()) / len(users)
    ref = mf + 1e-4 * reg
    ref.backward()
    assert float(loss.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    np.testing.assert_allclose(got.numpy(), e0.grad.numpy(), atol=1e-6)


def test_lightgcn_loss_follows_recbole():
    loss_mod = pytest.importorskip("recbole.model.loss")
    x = random_matrix(n_users=40, n_items=25)
    for require_pow in (False, True):
        m = make_model("lightgcn", {"embedding_size": 8, "reg_weight": 1e-2, "require_pow": require_pow})
        m.init(FitData(train=x, seed=1))
        users, pos, neg = (torch.as_tensor(b) for b in next(iter(m.epoch_batches())))
        ours = m.batch_loss(users, pos, neg)
        ua, ia = m.final_embeddings()
        mf = loss_mod.BPRLoss()((ua[users] * ia[pos]).sum(1), (ua[users] * ia[neg]).sum(1))
        reg = loss_mod.EmbLoss()(
            m.module_.user(users), m.module_.item(pos), m.module_.item(neg), require_pow=require_pow
        )
        assert float(ours.detach()) == pytest.approx(float((mf + 1e-2 * reg).detach()), rel=1e-6)


def test_lightgcn_is_deterministic_learns_and_invalidates_its_cache():
    x = random_matrix(n_users=100, n_items=50, density=0.2)
    runs = []
    for _ in range(2):
        m = make_model("lightgcn", {"embedding_size": 16, "batch_size": 64, "learning_rate": 1e-2})
        m.init(FitData(train=x, seed=7))
        losses = [m.train_epoch() for _ in range(5)]
        runs.append((losses, m.score(np.arange(10))))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert runs[0][0][-1] < runs[0][0][0] < 0.7  # BPR starts near log 2
    state = m.get_state()
    before = m.score(np.arange(10))
    m.train_epoch()  # must drop the cached propagation
    after = m.score(np.arange(10))
    assert not np.allclose(before, after)
    m.set_state(state)  # must drop it again
    np.testing.assert_array_equal(m.score(np.arange(10)), before)


# --- real data ------------------------------------------------------------------------------
QUICK = {
    "userknn": {},
    "rp3beta": {},
    "ials": {"iterations": 4},
    "multvae": {"epochs": 12, "batch_size": 100},
    "lightgcn": {"epochs": 4, "learning_rate": 1e-2},
}


@pytest.fixture(scope="module")
def ml100k_split(ml100k):
    split = datasets.split(ml100k, "random", seed=0)
    pop = make_model("pop").fit(FitData(train=split.train))
    base = evaluate(pop.score, split.test, split.train + split.valid, metrics=("recall",), ks=(20,))
    return split, base.summary["recall@20"]


@pytest.mark.parametrize("name", NEW)
def test_beats_popularity_on_ml100k(name, ml100k_split):
    split, pop_recall = ml100k_split
    model = make_model(name, QUICK[name])
    # Numba's OpenMP threading layer (the metric core) resets the OpenMP thread count torch
    # shares with it after every validation; pin torch back to one thread each time.
    train(
        model,
        FitData(train=split.train, seed=0),
        split.valid,
        patience=3,
        on_eval=lambda epoch, value: torch.set_num_threads(1),
    )
    res = evaluate(model.score, split.test, split.train + split.valid, metrics=("recall",), ks=(20,))
    assert res.summary["recall@20"] > pop_recall + 0.04, (name, res.summary["recall@20"], pop_recall)
