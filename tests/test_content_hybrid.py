"""Content-based and hybrid baselines: content-knn, text-profile, hybrid-blend, feature-mf,
and the shared modality selection. Exact references on small inputs, behaviour on real data
(random split and the cold-start-items protocol)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from baselines import FitData, get_model_class, make_model, model_names
from baselines.content_knn import topk_dense_cosine
from baselines.hybrid import normalize_scores
from baselines.modalities import parse_spec, select_features, stack_features
from benchmark.evaluate import evaluate
from benchmark.metrics import topk_items
from benchmark.training import train
from datasets import split
from datasets.errors import FusebenchError

NEW_MODELS = ("content-knn", "text-profile", "hybrid-blend", "feature-mf")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny torch batches: one thread is faster, and on a busy machine much faster
    (OpenMP spin-waiting); restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _csr(dense) -> sp.csr_matrix:
    return sp.csr_matrix(np.asarray(dense, dtype=np.float32))


def _fit_data(ds, s, seed=0) -> FitData:
    return FitData(train=s.train, features=ds.features, item_text=ds.item_text, seed=seed)


# --- registry ---------------------------------------------------------------------------------


def test_registered_with_families_and_search_spaces():
    optuna = pytest.importorskip("optuna")
    names = set(model_names())
    assert set(NEW_MODELS) <= names
    fams = {n: get_model_class(n).family for n in NEW_MODELS}
    assert fams == {
        "content-knn": "baseline/content",
        "text-profile": "baseline/content",
        "hybrid-blend": "baseline/hybrid",
        "feature-mf": "baseline/hybrid",
    }
    for n in NEW_MODELS:
        cls = get_model_class(n)
        space = cls.search_space(
            optuna.trial.FixedTrial(
                {
                    "k": 10,
                    "shrink": 1.0,
                    "center": True,
                    "min_df": 1,
                    "max_df": 0.5,
                    "ngram_max": 1,
                    "sublinear_tf": True,
                    "popularity_damping": 0.5,
                    "weight": 0.3,
                    "embedding_size": 32,
                    "learning_rate": 1e-3,
                    "weight_decay": 1e-6,
                    "loss": "warp",
                }
            )
        )
        assert space and set(space) <= set(cls.param_names())
        make_model(n, space)  # every suggested value is a valid constructor argument


# --- modality selection -------------------------------------------------------------------------


def _feats():
    rng = np.random.default_rng(0)
    return {
        "text": rng.normal(size=(6, 4)).astype(np.float32),
        "audio/vggish": rng.normal(size=(6, 3)).astype(np.float32),
        "audio/whisper": rng.normal(size=(6, 2)).astype(np.float32),
    }


def test_select_features_names_families_and_order():
    f = _feats()
    assert list(select_features(f, "all")) == ["text", "audio/vggish", "audio/whisper"]
    assert list(select_features(f, "audio/whisper, text")) == ["audio/whisper", "text"]
    assert list(select_features(f, "audio")) == ["audio/vggish", "audio/whisper"]
    assert select_features(f, "text")["text"] is f["text"] or np.array_equal(
        select_features(f, "text")["text"], f["text"]
    )
    assert parse_spec(" all ") is None


@pytest.mark.parametrize(
    "spec, match",
    [
        ("image", r"unknown modality 'image'; this dataset has: text, audio/vggish, audio/whisper"),
        ("text,text", "twice"),
        ("audio,audio/vggish", "twice"),
        ("all,text", "cannot be combined"),
        ("", "empty"),
        ("text,", "empty entry"),
        (3, "must be a string"),
    ],
)
def test_select_features_errors(spec, match):
    with pytest.raises(FusebenchError, match=match):
        select_features(_feats(), spec)


def test_select_features_without_features_and_bad_matrices():
    with pytest.raises(FusebenchError, match="has none"):
        select_features({}, "all")
    with pytest.raises(FusebenchError, match="6 rows but there are 7 items"):
        select_features(_feats(), "text", n_items=7)
    bad = _feats()
    bad["text"][0, 0] = np.nan
    with pytest.raises(FusebenchError, match="non-finite"):
        select_features(bad, "text")
    with pytest.raises(FusebenchError, match="2-D"):
        select_features({"text": np.zeros(6, dtype=np.float32)}, "all")


def test_stack_features_normalises_each_block():
    f = _feats()
    f["text"][2] = 0.0
    x = stack_features(select_features(f, "text,audio/vggish"))
    assert x.shape == (6, 7) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x[:, :4], axis=1), [1, 1, 0, 1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(x[:, 4:], axis=1), 1.0, atol=1e-6)
    xc = stack_features(select_features(f, "audio/vggish"), center=True)
    c = f["audio/vggish"] - f["audio/vggish"].mean(0)
    np.testing.assert_allclose(xc, c / np.linalg.norm(c, axis=1, keepdims=True), atol=1e-6)


def test_models_reject_unknown_modality_and_featureless_data(tiny_dataset):
    s = split(tiny_dataset, "random", seed=0)
    data = _fit_data(tiny_dataset, s)
    for name in ("content-knn", "feature-mf"):
        with pytest.raises(FusebenchError, match="unknown modality 'image'"):
            make_model(name, {"modalities": "image"}).fit(data)
        with pytest.raises(FusebenchError, match="has none"):
            make_model(name).fit(FitData(train=s.train, features={}, seed=0))
    m = make_model("content-knn").fit(data)
    assert m.used_modalities() == ["text"]


# --- content-knn ---------------------------------------------------------------------------------


def _dense_knn_reference(blocks, k, shrink, center):
    parts = []
    for b in blocks:
        b = b.astype(np.float64)
        if center:
            b = b - b.mean(0)
        n = np.linalg.norm(b, axis=1, keepdims=True)
        parts.append(np.divide(b, n, out=np.zeros_like(b), where=n > 0))
    x = np.concatenate(parts, axis=1)
    norms = np.linalg.norm(x, axis=1)
    sim = (x @ x.T) / (np.outer(norms, norms) + shrink + 1e-12)
    n = len(x)
    ref = np.zeros((n, n))
    for i in range(n):
        col = sim[:, i].copy()
        col[i] = -np.inf
        best = np.argsort(-col, kind="stable")[:k]  # ties: lower index first
        best = best[col[best] > 0]
        ref[best, i] = col[best]
    return ref


@pytest.mark.parametrize("k, shrink, center", [(3, 0.0, False), (5, 2.0, True), (39, 0.0, True)])
def test_content_knn_matches_dense_reference(k, shrink, center):
    rng = np.random.default_rng(1)
    a = rng.normal(size=(40, 6)).astype(np.float32)
    b = rng.normal(size=(40, 3)).astype(np.float32)
    a[7] = a[3]  # exact ties in the similarity
    b[7] = b[3]
    a[11] = 0.0  # an all-zero block row
    train = _csr((rng.random((15, 40)) < 0.2).astype(np.float32))
    data = FitData(train=train, features={"a": a, "b": b, "c": rng.normal(size=(40, 2)).astype(np.float32)}, seed=0)
    m = make_model("content-knn", {"k": k, "shrink": shrink, "center": center, "modalities": "a,b"}).fit(data)
    ref = _dense_knn_reference([a, b], k, shrink, center)
    np.testing.assert_allclose(m.S_.toarray(), ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m.score(np.arange(15)), train.toarray() @ ref, rtol=1e-4, atol=1e-5)
    assert m.used_modalities() == ["a", "b"]
    assert m.n_parameters() == np.count_nonzero(ref)
    # the block size does not change the result
    f = stack_features({"a": a, "b": b}, center=center)
    np.testing.assert_allclose(topk_dense_cosine(f, k, shrink, block=7).toarray(), m.S_.toarray(), atol=1e-6)


def test_content_knn_scores_items_without_interactions():
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(20, 5)).astype(np.float32)
    dense = (rng.random((8, 20)) < 0.4).astype(np.float32)
    dense[:, 15:] = 0.0  # items 15..19 never interacted with
    m = make_model("content-knn", {"k": 5}).fit(FitData(train=_csr(dense), features={"text": feats}))
    scores = m.score(np.arange(8))
    assert scores.dtype == np.float32 and scores.shape == (8, 20)
    assert (scores[:, 15:] > 0).any(axis=0).all()


@pytest.mark.parametrize(
    "params, match",
    [
        ({"k": 0}, r"k must be an integer >= 1, got 0"),
        ({"shrink": -1.0}, r"shrink must be a real number >= 0, got -1.0"),
    ],
)
def test_content_knn_parameter_errors(tiny_dataset, params, match):
    s = split(tiny_dataset, "random", seed=0)
    with pytest.raises(FusebenchError, match=match):
        make_model("content-knn", params).fit(_fit_data(tiny_dataset, s))


# --- text-profile -----------------------------------------------------------------------------------


def test_text_profile_matches_sklearn_reference():
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = ["red apple", "green apple", "red car", "blue car", "blue sky", "", "apple pie and red wine"]
    train = _csr(
        [
            [1, 0, 1, 0, 0, 0, 0],  # red apple + red car
            [0, 0, 0, 0, 1, 0, 0],  # blue sky
            [0, 0, 0, 0, 0, 0, 0],  # no training item
            [1, 1, 0, 0, 0, 0, 0],
        ]
    )
    params = {"max_df": 1.0, "stop_words": False, "popularity_damping": 0.5}
    m = make_model("text-profile", params).fit(FitData(train=train, item_text=texts))
    x = TfidfVectorizer(sublinear_tf=True).fit_transform(texts).toarray()
    pop = np.asarray(train.sum(0)).ravel()
    w = np.where(pop > 0, np.maximum(pop, 1) ** -0.5, 0)
    prof = (train.toarray() * w) @ x / np.maximum(train.toarray().sum(1, keepdims=True), 1)  # weighted mean
    n = np.linalg.norm(prof, axis=1, keepdims=True)
    ref = np.divide(prof, n, out=np.zeros_like(prof), where=n > 0) @ x.T  # cosine (x rows are unit)
    got = m.score(np.arange(4))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert got.dtype == np.float32
    # by hand: user 1 (blue sky) likes "blue car" and nothing red; empty text scores 0
    assert got[1, 3] > 0 and got[1, 0] == 0 and got[1, 2] == 0 and got[:, 5].max() == 0
    assert (got[2] == 0).all()
    assert m.used_modalities() == ["item_text"]


def test_text_profile_errors(tiny_dataset):
    s = split(tiny_dataset, "random", seed=0)
    with pytest.raises(FusebenchError, match="no item text|has none"):
        make_model("text-profile").fit(FitData(train=s.train, features=tiny_dataset.features, item_text=None))
    with pytest.raises(FusebenchError, match="every item's text is empty"):
        make_model("text-profile").fit(FitData(train=s.train, item_text=[""] * 6))
    with pytest.raises(FusebenchError, match="entries but there are 6 items"):
        make_model("text-profile").fit(FitData(train=s.train, item_text=["a"] * 5))
    with pytest.raises(FusebenchError, match="max_df"):
        make_model("text-profile", {"max_df": 2.0}).fit(_fit_data(tiny_dataset, s))
    with pytest.raises(FusebenchError, match="TF-IDF"):  # only stop words left
        make_model("text-profile").fit(FitData(train=s.train, item_text=["the", "and", "of", "a", "the", "an"]))


# --- hybrid-blend --------------------------------------------------------------------------------------


def test_normalize_scores_ignores_seen_items():
    s = np.array([[1.0, 2.0, 3.0, 100.0], [5.0, 5.0, 5.0, 5.0]], dtype=np.float32)
    seen = _csr([[0, 0, 0, 1], [0, 0, 0, 0]])
    mm = normalize_scores(s, seen, "minmax")
    np.testing.assert_allclose(mm[0, :3], [0.0, 0.5, 1.0])
    assert (mm[1] == 0).all()  # constant row: 0, no division by zero
    z = normalize_scores(s, seen, "zscore")
    np.testing.assert_allclose(z[0, :3], (np.array([1, 2, 3]) - 2) / np.std([1, 2, 3]))
    with pytest.raises(FusebenchError, match="normalize"):
        normalize_scores(s, seen, "rank")


def test_hybrid_blend_extremes_and_formula(ml100k):
    s = split(ml100k, "random", seed=0)
    data = _fit_data(ml100k, s)
    users = np.arange(0, ml100k.n_users, 3)
    cf = make_model("ease").fit(data)
    content = make_model("content-knn").fit(data)
    excl = s.train[users]
    top = lambda scores: topk_items(scores, 20, excl)  # noqa: E731

    h0 = make_model("hybrid-blend", {"weight": 0.0}).fit(data)
    np.testing.assert_array_equal(top(h0.score(users)), top(cf.score(users)))
    assert h0.used_modalities() == [] and h0.n_parameters() == cf.n_parameters()
    h1 = make_model("hybrid-blend", {"weight": 1.0}).fit(data)
    np.testing.assert_array_equal(top(h1.score(users)), top(content.score(users)))
    assert h1.used_modalities() == ["text"]

    h = make_model("hybrid-blend", {"weight": 0.3, "normalize": "minmax"}).fit(data)
    ref = 0.7 * normalize_scores(cf.score(users), excl, "minmax") + 0.3 * normalize_scores(
        content.score(users), excl, "minmax"
    )
    np.testing.assert_allclose(h.score(users), ref, rtol=1e-5, atol=1e-5)
    assert h.n_parameters() == cf.n_parameters() + content.n_parameters()
    assert h.used_modalities() == ["text"]
    # the blend differs from both parts
    assert not np.array_equal(top(h.score(users)), top(cf.score(users)))


@pytest.mark.parametrize(
    "params, match",
    [
        ({"weight": 1.5}, r"weight must be a real number in \[0, 1\], got 1.5"),
        ({"weight": -0.1}, r"weight must be a real number in \[0, 1\], got -0.1"),
        ({"cf": "nope"}, "unknown model 'nope'"),
        ({"content": "hybrid-blend"}, "cannot nest itself"),
        ({"normalize": "rank"}, "normalize must be one of"),
    ],
)
def test_hybrid_blend_errors(tiny_dataset, params, match):
    s = split(tiny_dataset, "random", seed=0)
    with pytest.raises(FusebenchError, match=match):
        make_model("hybrid-blend", params).fit(_fit_data(tiny_dataset, s))


# --- feature-mf -------------------------------------------------------------------------------------------


def _synthetic(seed=0, n_users=120, n_items=80, d=8):
    """Users like items whose features are close to their taste vector."""
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n_items, d)).astype(np.float32)
    taste = rng.normal(size=(n_users, d))
    logits = taste @ feats.T
    dense = (logits > np.quantile(logits, 0.85, axis=1, keepdims=True)).astype(np.float32)
    return _csr(dense), {"text": feats}


def _losses(model, data, epochs):
    model.init(data)
    return [model.train_epoch() for _ in range(epochs)]


def test_feature_mf_deterministic_and_loss_decreases():
    train_m, feats = _synthetic()
    data = FitData(train=train_m, features=feats, seed=3)
    params = {"embedding_size": 16, "batch_size": 256, "learning_rate": 1e-2}
    a, b = make_model("feature-mf", params), make_model("feature-mf", params)
    la, lb = _losses(a, data, 8), _losses(b, data, 8)
    assert la == lb
    users = np.arange(train_m.shape[0])
    np.testing.assert_array_equal(a.score(users), b.score(users))
    assert la[-1] < 0.6 * la[0]
    c = make_model("feature-mf", params)
    _losses(c, FitData(train=train_m, features=feats, seed=4), 1)
    assert not np.array_equal(a.score(users), c.score(users))
    assert a.score(users).dtype == np.float32 and a.used_modalities() == ["text"]


def test_feature_mf_warp_runs_and_learns():
    train_m, feats = _synthetic(1)
    data = FitData(train=train_m, features=feats, seed=0)
    m = make_model(
        "feature-mf", {"loss": "warp", "embedding_size": 16, "batch_size": 256, "learning_rate": 1e-2, "max_trials": 5}
    )
    losses = _losses(m, data, 8)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    # learned something: held-out-free check, the training positives rank above chance
    scores = m.score(np.arange(train_m.shape[0]))
    res = evaluate(lambda u: scores[u], train_m, None, metrics=("recall",), ks=(10,))
    assert res.summary["recall@10"] > 0.3  # random would be 10/80


def test_feature_mf_cold_items_scored_by_features_only():
    train_m, feats = _synthetic(2)
    dense = train_m.toarray()
    dense[:, 70:] = 0.0  # items 70..79 have no interaction
    data = FitData(train=_csr(dense), features=feats, seed=0)
    m = make_model("feature-mf", {"embedding_size": 16, "batch_size": 256, "learning_rate": 1e-2})
    _losses(m, data, 3)
    ids = m.module_.item.weight.detach().numpy()
    warm = dense.sum(0) > 0
    assert warm[:70].sum() > 60
    # items without interactions are never sampled, not even as negatives: their ids stay 0
    assert (ids[~warm] == 0).all() and (np.abs(ids[warm]).sum(1) > 0).all()
    scores = m.score(np.arange(10))
    assert np.unique(scores[:, 70:]).size > 10
    ids_off = make_model("feature-mf", {"use_item_ids": False, "embedding_size": 16})
    _losses(ids_off, data, 1)
    assert ids_off.module_.item is None and ids_off.n_parameters() == train_m.shape[0] * 16 + 8 * 16


@pytest.mark.parametrize(
    "params, match",
    [
        ({"loss": "hinge"}, "loss must be one of"),
        ({"max_trials": 0}, "max_trials must be an integer >= 1, got 0"),
        ({"embedding_size": 0}, "embedding_size must be an integer >= 1, got 0"),
    ],
)
def test_feature_mf_parameter_errors(tiny_dataset, params, match):
    s = split(tiny_dataset, "random", seed=0)
    with pytest.raises(FusebenchError, match=match):
        make_model("feature-mf", params).fit(_fit_data(tiny_dataset, s))


# --- real data -----------------------------------------------------------------------------------------------


def _cold_recall(model, s, n_items):
    """Recall@20 over all items (train and valid masked) on the test interactions of cold items."""
    cold = np.asarray(s.train.sum(axis=0)).ravel() == 0
    truth = (s.test @ sp.diags(cold.astype(np.float32))).tocsr()
    truth.eliminate_zeros()
    assert truth.nnz == s.test.nnz  # cold-start-items: test holds cold items only
    return evaluate(model.score, truth, s.train + s.valid, metrics=("recall",), ks=(20,)).summary["recall@20"]


def test_cold_start_items_lfm2k(lfm2k):
    s = split(lfm2k, "cold-start-items", seed=0)
    data = _fit_data(lfm2k, s)
    got = {}
    for name, params in [
        ("ease", {}),
        ("content-knn", {}),
        ("text-profile", {}),
        ("feature-mf", {"epochs": 5, "learning_rate": 1e-2}),
    ]:
        m = make_model(name, params)
        m.fit(data)
        got[name] = _cold_recall(m, s, lfm2k.n_items)
    assert got["ease"] < 0.005, got
    for name in ("content-knn", "text-profile", "feature-mf"):
        assert got[name] > 0.03, got


def test_new_models_on_ml100k(ml100k):
    s = split(ml100k, "random", seed=0)
    data = _fit_data(ml100k, s)
    got = {}
    for name, params in [
        ("ease", {}),
        ("content-knn", {}),
        ("text-profile", {}),
        ("hybrid-blend", {}),
        ("feature-mf", {"epochs": 5, "learning_rate": 1e-2}),
    ]:
        m = make_model(name, params)
        train(m, data, s.valid, patience=3)
        got[name] = evaluate(m.score, s.test, s.train + s.valid, metrics=("recall",), ks=(20,)).summary["recall@20"]
    assert got["content-knn"] > 0.04 and got["text-profile"] > 0.04, got
    assert got["feature-mf"] > 0.2, got
    assert got["hybrid-blend"] > 0.95 * got["ease"], got
