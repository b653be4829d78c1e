"""Fusion models (vbpr and the six fusion strategies): registry, shared layers, validation,
determinism, modality selection, missing-feature masks, the strategies' own read-outs
(attention weights, adversarial alignment, cross-modal imputation), and accuracy above
popularity on lfm2k's own split."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import fusion_models  # noqa: F401  (registers the fusion models)
from baselines import FitData, get_model_class, make_model, model_names
from conftest import trained_and_pop_recall
from datasets import split
from datasets.errors import FusebenchError
from fusion_models.layers import ModalityEncoders

FUSION = (
    "vbpr",
    "fusion-concat",
    "fusion-late",
    "fusion-attention",
    "fusion-adversarial",
    "fusion-mapping",
    "fusion-transformer",
)
# a few quick epochs: a higher learning rate than the defaults so that they suffice
FAST = {"epochs": 8, "learning_rate": 5e-3}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny_data(seed=0, features=None) -> FitData:
    rng = np.random.default_rng(0)
    train = sp.random(30, 40, density=0.2, format="csr", random_state=1, dtype=np.float32)
    train.data[:] = 1.0
    if features is None:
        features = {
            "text": rng.normal(size=(40, 16)).astype(np.float32),
            "audio/vggish": rng.normal(size=(40, 8)).astype(np.float32) * 1000,
        }
    return FitData(train=train, features=features, seed=seed)


@pytest.fixture(scope="module")
def lfm2k_given(lfm2k):
    return split(lfm2k, "given")


def test_registered_as_fusion_with_valid_search_spaces():
    optuna = pytest.importorskip("optuna")
    assert set(FUSION) <= set(model_names())
    for name in FUSION:
        cls = get_model_class(name)
        assert cls.family == "fusion"
        assert cls.defaults()["modalities"] == "all"
        assert cls.defaults()["embedding_size"] == 64
        assert cls.defaults()["batch_size"] == 2048
        assert cls.defaults()["learning_rate"] == 1e-3
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
        for _ in range(3):
            trial = study.ask()
            space = cls.search_space(trial)
            assert space and set(space) <= set(cls.param_names())
            make_model(name, space)
            study.tell(trial, 0.0)
    assert get_model_class("vbpr").defaults()["reg_weight"] == 2.0


@pytest.mark.parametrize("dims", [[5], [5, 3], [7, 1, 4], [2, 9, 3, 6]])
def test_modality_encoders_any_number_and_dimension(dims):
    feats = {f"m{i}": np.ones((11, d), dtype=np.float32) * (i + 1) for i, d in enumerate(dims)}
    enc = ModalityEncoders(feats, 6, activation=True, dropout=0.1)
    assert enc(None).shape == (len(dims), 11, 6)
    assert enc(torch.tensor([0, 3, 3])).shape == (len(dims), 3, 6)
    # features are buffers (move with .to), not parameters nor state
    assert len(list(enc.buffers())) == len(dims)
    assert not any(k.startswith("feat") for k in enc.state_dict())
    assert sum(p.numel() for p in enc.parameters()) == sum(d * 6 + 6 for d in dims)


@pytest.mark.parametrize("name", FUSION)
def test_fit_score_shapes_and_determinism(name):
    data = _tiny_data()
    a = make_model(name, {"epochs": 3, "embedding_size": 8}).fit(data)
    b = make_model(name, {"epochs": 3, "embedding_size": 8}).fit(data)
    users = np.arange(30)
    sa = a.score(users)
    assert sa.shape == (30, 40) and sa.dtype == np.float32 and np.isfinite(sa).all()
    np.testing.assert_array_equal(sa, b.score(users))
    c = make_model(name, {"epochs": 3, "embedding_size": 8}).fit(_tiny_data(seed=1))
    assert not np.array_equal(sa, c.score(users))
    assert a.used_modalities() == ["text", "audio/vggish"]
    assert a.n_parameters() > 0


@pytest.mark.parametrize("name", FUSION)
def test_modalities_selection(name):
    m = make_model(name, {"epochs": 1, "embedding_size": 8, "modalities": "text"}).fit(_tiny_data())
    assert m.used_modalities() == ["text"]
    m = make_model(name, {"epochs": 1, "embedding_size": 8, "modalities": "audio"}).fit(_tiny_data())
    assert m.used_modalities() == ["audio/vggish"]


@pytest.mark.parametrize("name", FUSION)
@pytest.mark.parametrize(
    "params",
    [{"modalities": "image"}, {"modalities": ""}, {"embedding_size": 0}, {"learning_rate": -1.0}, {"epochs": 0}],
)
def test_bad_parameters_raise(name, params):
    with pytest.raises(FusebenchError):
        make_model(name, params).fit(_tiny_data())


@pytest.mark.parametrize("name", FUSION)
def test_needs_features(name):
    with pytest.raises(FusebenchError, match="no modality"):
        make_model(name).fit(FitData(train=_tiny_data().train))


@pytest.mark.parametrize(
    "name, params",
    [
        ("vbpr", {"reg_weight": -1.0}),
        ("fusion-concat", {"dropout": 1.0}),
        ("fusion-adversarial", {"adv_weight": -1.0}),
        ("fusion-adversarial", {"hidden_size": 0}),
        ("fusion-mapping", {"align_loss": "cosine"}),
        ("fusion-mapping", {"temperature": 0.0}),
        ("fusion-transformer", {"n_heads": 3}),
        ("fusion-transformer", {"dropout": -0.1}),
        ("fusion-transformer", {"n_layers": 0}),
    ],
)
def test_model_specific_validation(name, params):
    with pytest.raises(FusebenchError):
        make_model(name, params).fit(_tiny_data())


def _masked_data(garbage_seed: int) -> FitData:
    """Text missing for items 0-7 (their rows hold arbitrary values), audio for items 5-11."""
    data = _tiny_data()
    rng = np.random.default_rng(garbage_seed)
    feats = {k: v.copy() for k, v in data.features.items()}
    feats["text"][:8] = rng.normal(size=(8, feats["text"].shape[1])) * 50
    feats["audio/vggish"][5:12] = rng.normal(size=(7, feats["audio/vggish"].shape[1])) * 50
    masks = {"text": np.arange(40) >= 8, "audio/vggish": (np.arange(40) < 5) | (np.arange(40) >= 12)}
    return FitData(train=data.train, features=feats, seed=0, feature_masks=masks)


@pytest.mark.parametrize("name", FUSION)
def test_missing_features_are_masked_not_read(name):
    """What a masked row holds cannot change anything: the model never reads it."""
    params = {"epochs": 3, "embedding_size": 8}
    a = make_model(name, params).fit(_masked_data(1)).score(np.arange(30))
    b = make_model(name, params).fit(_masked_data(2)).score(np.arange(30))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # and the mask matters: without it the same rows do change the scores
    unmasked = [
        make_model(name, params).fit(FitData(train=d.train, features=d.features, seed=0)).score(np.arange(30))
        for d in (_masked_data(1), _masked_data(2))
    ]
    assert not np.allclose(*unmasked, rtol=1e-5, atol=1e-6)


STRATEGIES = [n for n in FUSION if n != "vbpr"]


@pytest.mark.parametrize("name", STRATEGIES)
def test_softmax_loss_option(name):
    """loss="softmax": full cross-entropy of each positive over all items; it trains."""
    data = _tiny_data()
    m = make_model(name, {"embedding_size": 8, "learning_rate": 1e-2, "loss": "softmax"})
    m.init(data)
    losses = [m.train_epoch() for _ in range(15)]
    assert losses[-1] < losses[0]
    users, pos = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    m.module_.eval()  # no dropout: the two computations must agree
    with torch.no_grad():
        manual = torch.nn.functional.cross_entropy(m.score_tensor(users), pos)
        extra = m.extra_loss(users, pos, None, None, None, None) if hasattr(m, "extra_loss") else None
        expected = float(manual) + (0.0 if extra is None else float(extra))
        assert float(m.softmax_loss(users, pos)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(FusebenchError):
        make_model(name, {"loss": "hinge"}).fit(data)


@pytest.mark.parametrize("name", STRATEGIES)
def test_sampled_softmax_loss_option(name):
    """loss="sampled": cross-entropy over the batch's distinct positives and negatives, logQ
    corrected; it trains, and it is the model's scores against those candidates."""
    from fusion_models.layers import log_inclusion

    data = _tiny_data()
    m = make_model(name, {"embedding_size": 8, "learning_rate": 1e-2, "loss": "sampled"})
    m.init(data)
    losses = [m.train_epoch() for _ in range(15)]
    assert losses[-1] < losses[0]
    users, pos, neg = torch.tensor([0, 1, 2, 3]), torch.tensor([3, 4, 5, 4]), torch.tensor([7, 3, 9, 11])
    m.module_.eval()
    with torch.no_grad():
        cands = torch.tensor([3, 4, 5, 7, 9, 11])
        logits = m.score_tensor(users)[:, cands] - log_inclusion(m._pop, cands, 4)
        manual = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 1]))
        extra = (
            m.extra_loss(users, pos, neg, m.module_.user(users), m.module_.items(pos), m.module_.items(neg))
            if hasattr(m, "extra_loss")
            else None
        )
        expected = float(manual) + (0.0 if extra is None else float(extra))
        assert float(m.sampled_softmax_loss(users, pos, neg)) == pytest.approx(expected, rel=1e-5)


def test_log_inclusion_is_the_candidate_sets_inclusion_probability():
    from fusion_models.layers import log_inclusion

    rng = np.random.default_rng(0)
    pop = rng.dirichlet(np.full(50, 0.3))
    batch, draws = 20, 20_000
    hit = np.zeros(50)
    for _ in range(draws):
        cands = np.union1d(rng.choice(50, batch, p=pop), rng.integers(0, 50, batch))
        hit[cands] += 1
    expected = np.exp(log_inclusion(torch.tensor(pop, dtype=torch.float32), torch.arange(50), batch).numpy())
    np.testing.assert_allclose(hit / draws, expected, atol=0.015)


def test_tuning_chooses_bpr_or_sampled_softmax_never_the_full_softmax():
    import optuna

    from fusion_models.layers import TUNED_LOSSES

    assert TUNED_LOSSES == ("bpr", "sampled")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for name in STRATEGIES:
        for _ in range(5):
            trial = study.ask()
            assert get_model_class(name).search_space(trial)["loss"] in TUNED_LOSSES
            study.tell(trial, 0.0)


def test_id_dropout_zeroes_rows_in_training_only():
    from fusion_models.layers import id_embeddings

    _, item = id_embeddings(3, 200, 4)
    item.id_dropout = 0.5
    torch.manual_seed(0)
    rows = item.rows()
    dropped = (rows == 0).all(1)
    assert 60 < int(dropped.sum()) < 140
    torch.testing.assert_close(rows[~dropped], item.weight[~dropped])
    item.eval()
    torch.testing.assert_close(item.rows(torch.tensor([1, 2])), item.weight[[1, 2]])
    m = make_model("fusion-concat", {"epochs": 2, "embedding_size": 8, "id_dropout": 0.3}).fit(_tiny_data())
    assert m.module_.item.id_dropout == 0.3
    with pytest.raises(FusebenchError):
        make_model("fusion-concat", {"id_dropout": 1.0}).fit(_tiny_data())


@pytest.mark.parametrize("name", STRATEGIES)
def test_cold_items_keep_a_zero_id_embedding(name):
    """Items without training interactions get no id signal: content alone scores them."""
    data = _tiny_data()
    train = data.train.tolil()
    train[:, [3, 17]] = 0
    train = train.tocsr()
    train.eliminate_zeros()
    m = make_model(name, {"epochs": 3, "embedding_size": 8}).fit(FitData(train=train, features=data.features, seed=0))
    ids = m.module_.item.weight.detach().numpy()
    cold = train.getnnz(axis=0) == 0
    assert cold[[3, 17]].all()
    assert not ids[cold].any() and (np.abs(ids[~cold]).sum(1) > 0).all()
    assert np.ptp(m.score(np.arange(30))[:, [3, 17]]) > 0  # still scored, by their content


def test_attention_weights_are_per_user():
    m = make_model("fusion-attention", {"epochs": 5, "embedding_size": 8, "learning_rate": 1e-2}).fit(_tiny_data())
    w = m.attention_weights(np.arange(30))
    assert list(w) == ["id", "text", "audio/vggish"]
    total = sum(w.values())
    np.testing.assert_allclose(total, 1.0, rtol=1e-6)
    assert all((v > 0).all() and (v < 1).all() for v in w.values())
    assert np.ptp(w["text"]) > 1e-3  # users weigh the modalities differently
    # the scores are the attention-weighted token scores
    mod = m.module_
    with torch.no_grad():
        u = torch.arange(3)
        p = mod.user(u)
        tokens = mod.tokens()
        a = mod.weights(p)
        manual = torch.einsum("bk,kbn->bn", a, torch.einsum("bd,knd->kbn", p, tokens)).numpy()
    np.testing.assert_allclose(m.score(np.arange(3)), manual, rtol=1e-5, atol=1e-6)


def test_gradient_reversal_flips_the_gradient():
    from fusion_models.adversarial import GradientReversal

    x = torch.randn(4, 3, requires_grad=True)
    GradientReversal.apply(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), -np.ones((4, 3), dtype=np.float32))


def _train_only(m, which: str, steps: int = 60) -> float:
    """`steps` epochs of the adversarial loss alone, training only the discriminator
    (`which="discriminator"`) or only the vectors; returns the discriminator accuracy."""
    for name, param in m.module_.named_parameters():
        param.requires_grad_(name.startswith("discriminator") == (which == "discriminator"))
    for _ in range(steps):
        m.train_epoch()
    return m.discriminator_accuracy()


@pytest.mark.parametrize("adversary", ["confusion", "reversal"])
def test_adversarial_game_directions(adversary):
    """The discriminator learns to tell the sources apart; then the vectors learn to fool it."""
    m = make_model(
        "fusion-adversarial", {"embedding_size": 8, "learning_rate": 1e-2, "adv_weight": 1.0, "adversary": adversary}
    )
    m.init(_tiny_data())
    m.batch_loss = lambda u, p, n: m.extra_loss(u, p, n, None, None, None)
    start = m.discriminator_accuracy()
    trained = _train_only(m, "discriminator")
    assert trained > start and trained > 0.8
    fooled = _train_only(m, "vectors")
    assert fooled < trained - 0.2, (trained, fooled)


def test_mapping_imputes_a_missing_modality_from_the_others():
    rng = np.random.default_rng(0)
    text = rng.normal(size=(40, 16)).astype(np.float32)
    audio = (text @ rng.normal(size=(16, 8))).astype(np.float32)  # audio is predictable from text
    data = _tiny_data(features={"text": text, "audio/vggish": audio})
    m = make_model(
        "fusion-mapping", {"epochs": 150, "embedding_size": 8, "learning_rate": 1e-2, "align_weight": 1.0}
    ).fit(data)
    items = np.arange(40)
    guess, truth = m.impute(items, "audio/vggish"), m.projected(items, "audio/vggish")
    cos = lambda a, b: (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)  # noqa: E731
    own = cos(guess, truth).mean()
    shuffled = cos(guess, truth[np.roll(items, 7)]).mean()
    assert own > 0.5 and own > shuffled + 0.3, (own, shuffled)
    with pytest.raises(FusebenchError):
        m.impute(items, "image")
    # a missing modality is imputed (not a zero vector) when the item vector is built
    masked = FitData(
        train=data.train, features=data.features, seed=0, feature_masks={"audio/vggish": np.arange(40) >= 4}
    )
    mm = make_model("fusion-mapping", {"epochs": 2, "embedding_size": 8}).fit(masked)
    with torch.no_grad():
        z = mm.module_.imputed(torch.arange(4))
        direct = mm.module_.encoders(torch.arange(4))
    assert torch.count_nonzero(direct[1]) == 0 and torch.count_nonzero(z[1]) > 0


def test_late_fusion_weights_sum_to_one():
    m = make_model("fusion-late", {"epochs": 3, "embedding_size": 8, "learning_rate": 1e-2}).fit(_tiny_data())
    w = m.modality_weights()
    assert list(w) == ["id", "text", "audio/vggish"]
    assert sum(w.values()) == pytest.approx(1.0)
    assert all(0 < v < 1 for v in w.values())
    assert len(set(w.values())) > 1  # learned, not left at their equal start


def test_vbpr_structure_matches_mmrec():
    m = make_model("vbpr", {"epochs": 1, "embedding_size": 8}).fit(_tiny_data())
    mod = m.module_
    assert mod.user.weight.shape == (30, 16)  # 2 * embedding_size
    assert mod.item.weight.shape == (40, 8)
    assert mod.proj.in_features == 16 + 8  # the concatenated selected modalities
    assert mod.items().shape == (40, 16)


@pytest.mark.parametrize("name", FUSION)
def test_beats_popularity_on_lfm2k(name, lfm2k, lfm2k_given):
    data = FitData(train=lfm2k_given.train, features=lfm2k.features, seed=0)
    model = make_model(name, FAST)
    recall, pop_recall = trained_and_pop_recall(model, data, lfm2k_given, patience=3)
    assert recall > 1.5 * pop_recall, (recall, pop_recall)
    assert model.used_modalities() == list(lfm2k.features)


@pytest.mark.parametrize("n_layers,n_heads,k", [(1, 2, 2), (2, 4, 4), (2, 1, 3)])
def test_lean_encoder_is_torchs_transformer_encoder(n_layers, n_heads, k):
    """fusion-transformer's encode_tokens computes nn.TransformerEncoder's function (pre-norm,
    ReLU, padding mask), forward and gradients, with its weights; only dropout's draws differ."""
    from torch import nn

    from fusion_models.transformer import encode_tokens

    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, n_heads, 32, dropout=0.0, batch_first=True, norm_first=True)
    enc = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
    x = torch.randn(50, k, 16, requires_grad=True)
    pad = torch.rand(50, k) < 0.3
    pad[:, 0] = False  # the id token is always there
    for mask in (None, pad):
        ours = encode_tokens(enc, x, mask)
        theirs = enc(x, src_key_padding_mask=mask)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
        g_ours = torch.autograd.grad(ours.square().sum(), [x, *enc.parameters()])
        g_theirs = torch.autograd.grad(theirs.square().sum(), [x, *enc.parameters()])
        for a, b in zip(g_ours, g_theirs):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_lean_encoder_dropout_rate_and_scale():
    from fusion_models.transformer import dropout

    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = dropout(x, 0.25, True)
    torch.testing.assert_close(torch.unique(y), torch.tensor([0.0, 4 / 3]))
    assert (y == 0).float().mean().item() == pytest.approx(0.25, abs=0.005)
    assert dropout(x, 0.25, False) is x


def test_item_rows_computes_each_distinct_item_once():
    from baselines.torch_base import item_rows

    w = torch.randn(40, 8)
    seen = []

    def fn(idx):
        seen.append(None if idx is None else idx.clone())
        return w if idx is None else w[idx]

    pos, neg = torch.tensor([3, 5, 3, 7]), torch.tensor([5, 9, 1, 3])
    q_pos, q_neg = item_rows(fn, 40, pos, neg)
    assert torch.equal(q_pos, w[pos]) and torch.equal(q_neg, w[neg])
    assert seen[-1].tolist() == [1, 3, 5, 7, 9]  # once each
    every = torch.arange(40)
    (q,) = item_rows(fn, 40, every.flip(0))
    assert seen[-1] is None and torch.equal(q, w.flip(0))  # the whole catalogue: fn(None)
    tokens = torch.randn(3, 40, 8)  # items along axis 1
    z_pos, z_neg = item_rows(lambda idx: tokens if idx is None else tokens[:, idx], 40, pos, neg, dim=1)
    assert torch.equal(z_pos, tokens[:, pos]) and torch.equal(z_neg, tokens[:, neg])
