"""Published multimodal graph models (lattice, freedom, bm3) and their graph utilities:
MMRec defaults and grids, graph construction checked by hand and against dense references
of MMRec's formulas, feature masks, determinism, any number of modalities, and accuracy above
popularity on lfm2k's own split."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import fusion_models  # noqa: F401  (registers the models)
from baselines import FitData, get_model_class, make_model, model_names
from conftest import trained_and_pop_recall
from datasets import split
from datasets.errors import FusebenchError
from fusion_models import graphs
from fusion_models.freedom import mmrec_weights

MODELS = ("lattice", "freedom", "bm3")
SMALL = {"epochs": 2, "embedding_size": 8, "feat_embed_dim": 8}


def small(name, **extra):
    p = dict(SMALL, **extra)
    if name == "bm3":
        p.pop("feat_embed_dim")
    return p


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny_data(seed=0, n_modalities=2, masks=None) -> FitData:
    rng = np.random.default_rng(0)
    train = sp.random(30, 40, density=0.2, format="csr", random_state=1, dtype=np.float32)
    train.data[:] = 1.0
    feats = {
        "text": rng.normal(size=(40, 16)).astype(np.float32),
        "audio/vggish": rng.normal(size=(40, 8)).astype(np.float32) * 1000,
        "image": rng.normal(size=(40, 5)).astype(np.float32),
    }
    feats = dict(list(feats.items())[:n_modalities])
    return FitData(train=train, features=feats, seed=seed, feature_masks=masks or {})


# ----------------------------------------------------------------------------------------------
# registry, MMRec defaults, search spaces
# ----------------------------------------------------------------------------------------------
MMREC_DEFAULTS = {
    # overall.yaml + first value of each list in the model's yaml
    "lattice": {
        "embedding_size": 64,
        "feat_embed_dim": 64,
        "knn_k": 10,
        "lambda_coeff": 0.9,
        "n_layers": 1,
        "n_ui_layers": 2,
        "reg_weight": 0.0,
        "learning_rate": 1e-4,
        "lr_decay": 0.96,
        "lr_decay_epochs": 50,
        "batch_size": 2048,
    },
    "freedom": {
        "embedding_size": 64,
        "feat_embed_dim": 64,
        "knn_k": 10,
        "mm_image_weight": 0.1,
        "dropout": 0.8,
        "n_mm_layers": 1,
        "n_ui_layers": 2,
        "reg_weight": 0.0,
        "learning_rate": 1e-3,
        "batch_size": 2048,
    },
    "bm3": {
        "embedding_size": 64,
        "n_layers": 1,
        "reg_weight": 0.1,
        "dropout": 0.3,
        "cl_weight": 2.0,
        "learning_rate": 1e-3,
        "batch_size": 2048,
    },
}
MMREC_GRIDS = {
    "lattice": {"reg_weight": [0.0, 1e-5, 1e-4, 1e-3], "learning_rate": [1e-4, 5e-4, 1e-3, 5e-3]},
    "freedom": {"dropout": [0.8, 0.9], "reg_weight": [0.0, 1e-5, 1e-4, 1e-3]},
    "bm3": {"n_layers": [1, 2], "reg_weight": [0.1, 0.01], "dropout": [0.3, 0.5]},
}


@pytest.mark.parametrize("name", MODELS)
def test_registered_with_mmrec_defaults(name):
    assert name in model_names()
    cls = get_model_class(name)
    assert cls.family == "fusion"
    d = cls.defaults()
    for k, v in MMREC_DEFAULTS[name].items():
        assert d[k] == v, (k, d[k], v)
    assert d["modalities"] == "all"
    assert d["normalize_features"] is False and d["train_features"] is True  # raw, trainable, as MMRec


@pytest.mark.parametrize("name", MODELS)
def test_search_space_is_mmrec_grid(name):
    optuna = pytest.importorskip("optuna")
    cls = get_model_class(name)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    for _ in range(3):
        trial = study.ask()
        space = cls.search_space(trial)
        assert set(space) == set(MMREC_GRIDS[name])
        for k, choices in MMREC_GRIDS[name].items():
            assert list(trial.distributions[k].choices) == choices
            assert space[k] in choices
        make_model(name, space)
        study.tell(trial, 0.0)


# ----------------------------------------------------------------------------------------------
# graph utilities
# ----------------------------------------------------------------------------------------------
# four items in 2-D; cosines: (0,1) .995, (0,2) .196, (0,3) -.958, (1,2) .293, (1,3) -.925, (2,3) .094
X4 = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.2, 1.0], [-1.0, 0.3]])


def _edges(rows, cols):
    return sorted(zip(rows.tolist(), cols.tolist()))


def test_cosine_knn_by_hand():
    rows, cols = graphs.cosine_knn(X4, 2)
    assert _edges(rows, cols) == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 1), (2, 2), (3, 2), (3, 3)]
    # item 1 missing: no neighbours and nobody's neighbour
    valid = graphs.valid_rows(X4, np.array([True, False, True, True]))
    rows, cols = graphs.cosine_knn(X4, 2, valid, chunk_size=1)  # chunking changes nothing
    assert _edges(rows, cols) == [(0, 0), (0, 2), (2, 0), (2, 2), (3, 2), (3, 3)]
    # an all-zero row is treated as missing (its cosine is undefined), never NaN
    x = X4.clone()
    x[3] = 0
    rows, cols = graphs.cosine_knn(x, 2)
    assert 3 not in rows.tolist() and 3 not in cols.tolist()
    # fewer valid candidates than k: all of them
    rows, cols = graphs.cosine_knn(X4, 10)
    assert len(rows) == 16


def test_sym_normalize_by_hand():
    rows, cols = graphs.cosine_knn(X4, 2)
    ones = torch.ones(len(rows))
    # binary kNN graph: every row sums to 2, so every edge is 1/sqrt(2 * 2)
    np.testing.assert_allclose(graphs.sym_normalize(rows, cols, ones, 4).numpy(), 0.5)
    # FREEDOM's eps
    np.testing.assert_allclose(graphs.sym_normalize(rows, cols, ones, 4, eps=1e-7).numpy(), 1 / (2 + 1e-7), rtol=1e-6)
    # weighted: D = row sums of the cosines; edge (2, 1) = cos(2,1) / sqrt(r2 r1)
    vals = graphs.cosine_values(X4, rows, cols)
    norm = graphs.sym_normalize(rows, cols, vals, 4)
    c01 = 1.0 / np.hypot(1.0, 0.1)
    c12 = 0.3 / (np.hypot(1.0, 0.1) * np.hypot(0.2, 1.0))
    c23 = 0.1 / (np.hypot(0.2, 1.0) * np.hypot(-1.0, 0.3))
    r = {0: 1 + c01, 1: 1 + c01, 2: 1 + c12, 3: 1 + c23}
    got = {e: v for e, v in zip(zip(rows.tolist(), cols.tolist()), norm.tolist())}
    assert got[(2, 1)] == pytest.approx(c12 / np.sqrt(r[2] * r[1]), rel=1e-5)
    assert got[(3, 2)] == pytest.approx(c23 / np.sqrt(r[3] * r[2]), rel=1e-5)
    assert got[(0, 0)] == pytest.approx(1 / r[0], rel=1e-5)
    # a row without edges gives 0, not inf
    out = graphs.sym_normalize(torch.tensor([0]), torch.tensor([1]), torch.tensor([2.0]), 3)
    assert out.tolist() == [pytest.approx(0.0)]  # row 1 has no out-edge: its factor is 0


def test_union_sums_overlapping_patterns():
    e1 = (torch.tensor([0, 1, 2]), torch.tensor([1, 1, 0]))
    e2 = (torch.tensor([1, 2]), torch.tensor([1, 2]))
    rows, cols, pos = graphs.union([e1, e2], 3)
    vals = graphs.union_values([torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 20.0])], pos, len(rows))
    dense = torch.zeros(3, 3)
    dense[rows, cols] = vals
    expected = torch.tensor([[0, 1.0, 0], [0, 12.0, 0], [3.0, 0, 20.0]])
    assert torch.equal(dense, expected)


@pytest.mark.parametrize("symmetric", [False, True])
def test_sparse_graph_matches_dense_with_gradients(symmetric):
    g = torch.Generator().manual_seed(0)
    a = (torch.rand(7, 7, generator=g) < 0.4).float() * torch.rand(7, 7, generator=g)
    if symmetric:
        a = a + a.T
    rows, cols = torch.nonzero(a, as_tuple=True)
    values = a[rows, cols].clone().requires_grad_(True)
    x = torch.randn(7, 3, generator=g, requires_grad=True)
    w = torch.randn(7, 3, generator=g)
    graph = graphs.SparseGraph(rows, cols, (7, 7), symmetric=symmetric)
    (graph.mm(x, values) * w).sum().backward()
    dense_vals = a[rows, cols].clone().requires_grad_(True)
    xd = x.detach().clone().requires_grad_(True)
    dense = torch.zeros(7, 7).index_put((rows, cols), dense_vals)
    ((dense @ xd) * w).sum().backward()
    torch.testing.assert_close(values.grad, dense_vals.grad)
    torch.testing.assert_close(x.grad, xd.grad)
    # fixed values: only x gets a gradient
    fixed = graphs.SparseGraph(rows, cols, (7, 7), values=a[rows, cols], symmetric=symmetric)
    torch.testing.assert_close(fixed.to_dense(), a)
    x2 = x.detach().clone().requires_grad_(True)
    (fixed.mm(x2) * w).sum().backward()
    torch.testing.assert_close(x2.grad, xd.grad)


def test_ui_adjacency_normalisations():
    r = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 0]], dtype=np.float32))
    sym = graphs.ui_adjacency(r, "sym").toarray()
    # user 0 (degree 2) - item 1 (degree 2): 1/2; user 1 (degree 1) - item 1: 1/sqrt(2)
    assert sym[0, 2 + 1] == pytest.approx(0.5, rel=1e-5)
    assert sym[1, 2 + 1] == pytest.approx(1 / np.sqrt(2), rel=1e-5)
    np.testing.assert_allclose(sym, sym.T)
    rw = graphs.ui_adjacency(r, "rw_self_loop").toarray()
    # LATTICE: D^-1 (A + I): user 0 has 2 items + itself -> 1/3 each
    np.testing.assert_allclose(rw[0], [1 / 3, 0, 1 / 3, 1 / 3, 0], rtol=1e-6)
    np.testing.assert_allclose(rw.sum(1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError):
        graphs.ui_adjacency(r, "nope")


def test_degree_sensitive_sample():
    train = sp.random(20, 30, density=0.3, format="coo", random_state=3)
    u, i = train.row.astype(np.int64), train.col.astype(np.int64)

    def draw(seed):
        return graphs.degree_sensitive_sample(u, i, 20, 30, 0.2, torch.Generator().manual_seed(seed), "cpu")

    g = draw(0)
    dense = g.to_dense().numpy()
    assert g.nnz == 2 * int(len(u) * 0.2)
    np.testing.assert_allclose(dense, dense.T)
    assert not dense[:20, :20].any() and not dense[20:, 20:].any()
    # re-normalised on the kept graph: 1/sqrt(deg_u deg_i) with the kept degrees
    block = dense[:20, 20:] > 0
    du, di = block.sum(1), block.sum(0)
    uu, ii = np.nonzero(block)
    np.testing.assert_allclose(dense[uu, 20 + ii], 1 / np.sqrt(du[uu] * di[ii]), rtol=1e-5)
    assert np.array_equal(dense, draw(0).to_dense().numpy())
    assert not np.array_equal(dense, draw(1).to_dense().numpy())


# ----------------------------------------------------------------------------------------------
# model graphs against dense references of MMRec's formulas
# ----------------------------------------------------------------------------------------------
def _dense_knn(x, k, weighted=True):
    xn = x / x.norm(dim=1, keepdim=True)
    sim = xn @ xn.T
    val, ind = sim.topk(k, dim=-1)
    return torch.zeros_like(sim).scatter(-1, ind, val if weighted else torch.ones_like(val))


def _dense_norm(a, eps=0.0):
    d = (a.sum(-1) + eps).pow(-0.5)
    d[torch.isinf(d)] = 0
    return d[:, None] * a * d[None, :]


def test_lattice_item_graph_matches_dense_reference():
    data = _tiny_data()
    m = make_model("lattice", small("lattice", epochs=1, knn_k=4, lambda_coeff=0.7))
    m.init(data)
    mod = m.module_
    with torch.no_grad():
        mod.modal_weight.copy_(torch.tensor([0.3, -0.2]))  # unequal mixing weights
    graph, values = mod.item_graph(0.7)
    probe = torch.randn(40, 8, generator=torch.Generator().manual_seed(0))
    (graph.mm(probe, values) * probe).sum().backward()
    sparse_grads = [p.grad.clone() for p in (mod.modal_weight, mod.trs[0].weight, mod.trs[1].weight)]
    mod.zero_grad()
    w = torch.softmax(mod.modal_weight, 0)
    feats = list(mod.feats)
    learned = sum(w[k] * _dense_knn(trs(f), 4) for k, (f, trs) in enumerate(zip(feats, mod.trs)))
    original = sum(w[k] * _dense_norm(_dense_knn(f.detach(), 4)) for k, f in enumerate(feats))
    dense = 0.3 * _dense_norm(learned) + 0.7 * original
    got = torch.zeros(40, 40).index_put((graph.rows, graph.cols), values.detach())
    torch.testing.assert_close(got, dense.detach(), rtol=1e-5, atol=1e-6)
    ((dense @ probe) * probe).sum().backward()
    for got, p in zip(sparse_grads, (mod.modal_weight, mod.trs[0].weight, mod.trs[1].weight)):
        torch.testing.assert_close(got, p.grad, rtol=1e-4, atol=1e-6)


def test_freedom_graph_matches_dense_reference_and_roles():
    assert mmrec_weights(["text", "audio/vggish"], 0.1) == [0.9, 0.1]
    assert mmrec_weights(["audio/vggish", "text"], 0.1) == [0.1, 0.9]
    assert mmrec_weights(["text", "audio", "image"], 0.1) == pytest.approx([0.9, 0.05, 0.05])
    assert mmrec_weights(["audio", "image"], 0.1) == [0.5, 0.5]
    assert mmrec_weights(["text"], 0.1) == [1.0]
    data = _tiny_data()
    m = make_model("freedom", small("freedom", epochs=1, knn_k=3))
    m.init(data)
    feats = [torch.from_numpy(f) for f in m._features.values()]
    dense = 0.9 * _dense_norm(_dense_knn(feats[0], 3, False), 1e-7) + 0.1 * _dense_norm(
        _dense_knn(feats[1], 3, False), 1e-7
    )
    torch.testing.assert_close(m._mm.to_dense(), dense)
    # every row of each binary kNN graph sums to 1 after normalisation
    np.testing.assert_allclose(m._mm.to_dense().sum(1).numpy(), 1.0, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# feature masks
# ----------------------------------------------------------------------------------------------
def test_feature_masks_exclude_missing_items_from_knn_graphs():
    present = np.ones(40, dtype=bool)
    present[[3, 17]] = False
    data = _tiny_data(masks={"text": present})
    fr = make_model("freedom", small("freedom", epochs=1, modalities="text"))
    fr.init(data)
    mm = fr._mm.to_dense().numpy()
    assert not mm[[3, 17]].any() and not mm[:, [3, 17]].any()
    assert (mm[present] > 0).sum(1).min() == 10
    la = make_model("lattice", small("lattice", epochs=1, modalities="text"))
    la.init(data)
    graph, values = la.module_.item_graph(0.9)
    for r, c in zip(graph.rows.tolist(), graph.cols.tolist()):
        assert r not in (3, 17) and c not in (3, 17)
    # a missing modality in another feature set leaves that set's graph whole
    data2 = _tiny_data(masks={"audio/vggish": present})
    fr2 = make_model("freedom", small("freedom", epochs=1, modalities="text"))
    fr2.init(data2)
    assert (fr2._mm.to_dense().numpy() > 0).sum(1).min() == 10
    bad = _tiny_data(masks={"text": present[:5]})
    with pytest.raises(FusebenchError, match="mask"):
        make_model("freedom", small("freedom")).fit(bad)


# ----------------------------------------------------------------------------------------------
# fitting: determinism, modalities, schedules
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_determinism_under_seed(name):
    data = _tiny_data()
    a = make_model(name, small(name)).fit(data)
    b = make_model(name, small(name)).fit(data)
    users = np.arange(30)
    sa = a.score(users)
    assert sa.shape == (30, 40) and sa.dtype == np.float32 and np.isfinite(sa).all()
    np.testing.assert_array_equal(sa, b.score(users))
    c = make_model(name, small(name)).fit(_tiny_data(seed=1))
    assert not np.array_equal(sa, c.score(users))
    assert a.n_parameters() > 0


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("n_mod", [1, 2, 3])
def test_any_number_of_modalities(name, n_mod):
    data = _tiny_data(n_modalities=n_mod)
    m = make_model(name, small(name)).fit(data)
    assert m.used_modalities() == list(data.features)
    assert np.isfinite(m.score(np.arange(30))).all()
    assert len(m.module_.feats) == n_mod


@pytest.mark.parametrize("name", MODELS)
def test_features_are_trained_like_mmrec_unless_frozen(name):
    data = _tiny_data()
    extra = {"reg_weight": 1e-3} if name == "freedom" else {}  # FREEDOM's features learn via reg terms
    m = make_model(name, small(name, learning_rate=1e-2, **extra)).fit(data)
    assert not np.allclose(m.module_.feats[0].detach().numpy(), data.features["text"])
    frozen = make_model(name, small(name, learning_rate=1e-2, train_features=False, **extra)).fit(data)
    assert np.array_equal(frozen.module_.feats[0].detach().numpy(), data.features["text"])
    assert frozen.n_parameters() == m.n_parameters() - sum(f.size for f in data.features.values())


def test_freedom_redraws_the_pruned_graph_each_epoch_and_scores_on_the_full_graph():
    m = make_model("freedom", small("freedom", epochs=1))
    m.init(_tiny_data())
    m.train_epoch()
    first = m._masked.to_dense()
    m.train_epoch()
    assert not torch.equal(first, m._masked.to_dense())
    assert m._masked.nnz == 2 * int(m._ui.nnz // 2 * (1.0 - 0.8))  # MMRec: int(nnz * (1. - dropout))
    m.score(np.arange(3))
    u, i = m._cache
    u_full, i_full = m.module_.embeddings(m._ui, m._mm, 1, 2)
    torch.testing.assert_close(u, u_full.detach())
    none = make_model("freedom", small("freedom", epochs=1, dropout=0.0))
    none.init(_tiny_data())
    none.train_epoch()
    assert none._masked is none._ui


def test_lattice_learning_rate_schedule():
    m = make_model("lattice", small("lattice", epochs=3, learning_rate=1e-3, lr_decay_epochs=2))
    m.init(_tiny_data())
    rates = []
    for _ in range(3):
        m.train_epoch()
        rates.append(m._optimizer.param_groups[0]["lr"])
    np.testing.assert_allclose(rates, [1e-3, 1e-3 * 0.96**0.5, 1e-3 * 0.96])


def test_bm3_trains_on_observed_pairs_without_negatives():
    data = _tiny_data()
    m = make_model("bm3", small("bm3"))
    m.init(data)
    batches = list(m.epoch_batches())
    assert all(len(b) == 2 for b in batches)
    users = np.concatenate([b[0] for b in batches])
    items = np.concatenate([b[1] for b in batches])
    pairs = sorted(zip(users.tolist(), items.tolist()))
    coo = data.train.tocoo()
    assert pairs == sorted(zip(coo.row.tolist(), coo.col.tolist()))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(
    "params",
    [{"modalities": "video"}, {"embedding_size": 0}, {"learning_rate": -1.0}, {"epochs": 0}, {"reg_weight": -1.0}],
)
def test_bad_parameters_raise(name, params):
    with pytest.raises(FusebenchError):
        make_model(name, params).fit(_tiny_data())


@pytest.mark.parametrize(
    "name,params",
    [
        ("lattice", {"knn_k": 0}),
        ("lattice", {"lambda_coeff": 1.5}),
        ("freedom", {"dropout": 1.0}),
        ("freedom", {"mm_image_weight": -0.1}),
        ("freedom", {"n_ui_layers": 1.5}),
        ("bm3", {"dropout": -0.1}),
        ("bm3", {"cl_weight": -1.0}),
        ("bm3", {"train_features": "yes"}),
    ],
)
def test_model_specific_validation(name, params):
    with pytest.raises(FusebenchError):
        make_model(name, params).fit(_tiny_data())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", MODELS)
def test_cuda_deterministic_and_close_to_cpu(name):
    data = _tiny_data()
    cpu = make_model(name, small(name)).fit(data).score(np.arange(30))
    data.device = "cuda"
    a = make_model(name, small(name)).fit(data)
    assert a.device_.type == "cuda"
    sa = a.score(np.arange(30))
    np.testing.assert_array_equal(sa, make_model(name, small(name)).fit(data).score(np.arange(30)))
    if name != "bm3":  # BM3's dropout targets come from the device's RNG stream
        np.testing.assert_allclose(sa, cpu, rtol=1e-3, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# accuracy on real data
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lfm2k_given(lfm2k):
    return split(lfm2k, "given")


# short runs: a higher learning rate than LATTICE's MMRec default so that a few epochs suffice
FAST = {
    "lattice": {"epochs": 6, "learning_rate": 5e-3},
    "freedom": {"epochs": 6, "learning_rate": 5e-3},
    "bm3": {"epochs": 6, "learning_rate": 5e-3},
}


@pytest.mark.parametrize("name", MODELS)
def test_beats_popularity_on_lfm2k(name, lfm2k, lfm2k_given):
    data = FitData(train=lfm2k_given.train, features=lfm2k.features, seed=0)
    model = make_model(name, {**FAST[name], "modalities": "text,audio/vggish"})
    recall, pop_recall = trained_and_pop_recall(model, data, lfm2k_given, patience=3)
    assert recall > 1.5 * pop_recall, (recall, pop_recall)
    assert model.used_modalities() == ["text", "audio/vggish"]


def test_missing_features_carry_no_content_signal_in_modality_losses():
    present = np.ones(40, dtype=bool)
    present[:20] = False  # text missing for the first half of the items
    data = _tiny_data(masks={"text": present})
    fr = make_model("freedom", small("freedom", epochs=1, reg_weight=1e-3))
    fr.init(data)
    z = fr._projection(0, None)
    assert torch.all(z[:20] == 0) and torch.all(z[20:].abs().sum(1) > 0)
    assert fr._present[1] is None  # audio: all present
    # BM3: the text terms see only items with text; a batch without any has no text term
    bm = make_model("bm3", small("bm3", epochs=1, cl_weight=1.0, reg_weight=0.0))
    bm.init(data)
    users, items = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3])  # all without text
    torch.manual_seed(0)
    with_mask = bm.batch_loss(users, items).item()
    bm._present[0] = None  # as if the text were there
    torch.manual_seed(0)
    without = bm.batch_loss(users, items).item()
    assert without > with_mask  # the two text terms (each in [0, 2]) are gone
    fit = make_model("bm3", small("bm3")).fit(data)
    assert np.isfinite(fit.score(np.arange(30))).all()
