"""End-to-end models (`e2e-attention`) on a generated catalogue driven by its raw content.

The catalogue folder holds interactions, item text, images, audio and video and no extracted
feature. Every item has a latent class (one of four), and each modality encodes it in its raw
form: a keyword among random words (text), the colour of a small patch on a noisy background
(image), the pitch of a tone in noise (audio), the direction a square moves in (video). Each
user likes one class. A third of the items never occur in training (cold): their id
embeddings stay zero, so the model can rank them by content only, and the test interactions
are exactly the users' cold items of their class. For each modality alone, the model whose
encoder trains with the ranking loss must beat the same model with its encoder frozen at
random initialisation, by a paired test over users.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import wilcoxon

import fusion_models  # noqa: F401  (registers the models)
from baselines.base import FitData, make_model
from datasets.catalogue import load_catalogue
from datasets.content_inputs import ItemContent
from datasets.errors import FusebenchError

N_CLASSES, N_ITEMS, N_USERS, N_TRAIN = 4, 160, 240, 8
KEYWORDS = ("violin", "tractor", "lemon", "glacier")
COLOURS = ((230, 30, 30), (30, 200, 40), (40, 60, 230), (230, 210, 30))
PITCHES = (220.0, 520.0, 1230.0, 2900.0)
MOVES = ((0, 3), (0, -3), (3, 0), (-3, 0))  # (down, right) per frame: right, left, down, up
WORDS = [
    a + b for a in ("ka", "mo", "ri", "tu", "se", "la", "po", "ne", "vi", "du") for b in ("ber", "sol", "mint", "dax")
]


def _image(path, c, rng):
    from PIL import Image

    img = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    y, x = rng.integers(0, 24, size=2)
    img[y : y + 8, x : x + 8] = COLOURS[c]
    Image.fromarray(img).save(path)


def _audio(path, c, rng, sr=22050):
    import soundfile as sf

    # every class plays the same two tones for the same time, in its own order (AB, BA, ABAB,
    # BABA): only the frame sequence tells them apart, not the spectrum's average
    order = ("AB", "BA", "ABAB", "BABA")[c]
    seg = int(sr * 1.2) // len(order)
    t = np.arange(seg) / sr
    shift = rng.uniform(0.97, 1.03)
    y = np.concatenate([0.3 * np.sin(2 * np.pi * PITCHES[0 if k == "A" else 2] * shift * t) for k in order])
    y += 0.05 * rng.standard_normal(len(y))
    sf.write(path, y.astype(np.float32), sr, subtype="PCM_16")


def _video(path, c, rng, n=8, size=32):
    import av

    with av.open(str(path), "w") as out:
        st = out.add_stream("mpeg4", rate=8)
        st.width = st.height = size
        st.pix_fmt = "yuv420p"
        y, x = rng.integers(8, 16, size=2)
        dy, dx = MOVES[c]
        for f in range(n):
            img = np.zeros((size, size, 3), dtype=np.uint8)
            yy, xx = (y + dy * (f - n // 2)) % (size - 6), (x + dx * (f - n // 2)) % (size - 6)
            img[yy : yy + 6, xx : xx + 6] = 255
            for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)


def write_catalogue(folder, seed=0):
    """The generated catalogue (see the module notes); returns (item classes, cold items)."""
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.arange(N_ITEMS) % N_CLASSES)
    cold = np.arange(N_ITEMS) >= 2 * N_ITEMS // 3
    for sub in ("images", "audio", "video"):
        (folder / sub).mkdir(parents=True)
    texts = []
    for i, c in enumerate(classes):
        words = list(rng.choice(WORDS, size=12)) + [KEYWORDS[c]]
        texts.append(" ".join(rng.permutation(words)))
        _image(folder / "images" / f"i{i}.png", c, rng)
        _audio(folder / "audio" / f"i{i}.wav", c, rng)
        _video(folder / "video" / f"i{i}.mp4", c, rng)
    with open(folder / "items.csv", "w") as f:
        f.write("item,text\n" + "".join(f"i{i},{t}\n" for i, t in enumerate(texts)))
    rows = []
    for u in range(N_USERS):
        c = u % N_CLASSES
        warm = np.flatnonzero((classes == c) & ~cold)
        rows += [(u, i) for i in rng.choice(warm, size=N_TRAIN, replace=False)]
        rows += [(u, i) for i in np.flatnonzero((classes == c) & cold)]
    with open(folder / "interactions.csv", "w") as f:
        f.write("user,item\n" + "".join(f"u{u},i{i}\n" for u, i in rows))
    (folder / "catalogue.json").write_text(json.dumps({"name": "generated-content"}))
    return classes, cold


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    folder = tmp_path_factory.mktemp("catalogue")
    write_catalogue(folder)
    ds = load_catalogue(folder)
    ids = np.asarray(ds.item_ids)
    cold = np.array([int(str(i)[1:]) >= 2 * N_ITEMS // 3 for i in ids])
    x = sp.csr_matrix(
        (np.ones(len(ds.interactions)), (ds.interactions["user"], ds.interactions["item"])),
        shape=(ds.n_users, ds.n_items),
    )
    train = x.multiply(~cold[None, :]).tocsr()
    test = x.multiply(cold[None, :]).tocsr()
    train.eliminate_zeros()
    test.eliminate_zeros()
    return ds, train, test, cold


def cold_recall(model, test, cold, k=5) -> np.ndarray:
    """Per user: the share of the user's cold test items among its top-k cold items."""
    scores = model.score(np.arange(test.shape[0]))[:, cold]
    rel = test[:, cold].toarray() > 0
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(rel, top, axis=1).sum(1) / np.minimum(rel.sum(1), k)


def fitted(catalogue, modality, freeze, epochs=40, **params):
    ds, train, _, _ = catalogue
    model = make_model(
        "e2e-attention",
        {
            "modalities": modality,
            "freeze": freeze,
            "text_init": "random",
            "epochs": epochs,
            "batch_size": 256,
            "learning_rate": 3e-3,
            "id_dropout": 0.5,
            **params,
        },
    )
    return model.fit(FitData(train=train, seed=1, content=ItemContent.of(ds)))


@pytest.mark.parametrize("modality", ["text", "image", "audio", "video"])
def test_trained_encoder_beats_the_frozen_random_one(catalogue, modality):
    _, _, test, cold = catalogue
    trained = cold_recall(fitted(catalogue, modality, freeze=False), test, cold)
    frozen = cold_recall(fitted(catalogue, modality, freeze=True), test, cold)
    p = wilcoxon(trained, frozen, alternative="greater").pvalue
    print(f"{modality}: trained {trained.mean():.3f}, frozen {frozen.mean():.3f}, p = {p:.2g}")
    assert trained.mean() > frozen.mean() and p < 1e-3, (modality, trained.mean(), frozen.mean(), p)


# ----------------------------------------------------------------------------- the inputs
def test_inputs_shapes_masks_cache_and_unreadable_files(catalogue, tmp_path, monkeypatch):
    import datasets.content_inputs as ci

    monkeypatch.setenv("FUSEBENCH_CACHE", str(tmp_path / "cache"))
    ds = catalogue[0]
    content = ItemContent.of(ds)
    assert content.available() == ["text", "image", "audio", "video"]
    text = content.inputs("text", max_tokens=20)
    assert text.array.dtype == np.int32 and text.array.shape == (ds.n_items, 20) and text.mask.all()
    assert content.inputs("image").array.shape == (ds.n_items, 3, 32, 32)
    assert content.inputs("audio", steps=16).array.shape == (ds.n_items, 16, 64)
    video = content.inputs("video", frames=4, size=16)
    assert video.array.dtype == np.uint8 and video.array.shape == (ds.n_items, 4, 3, 16, 16)
    # a second call reads the cache: decoding is not run again
    monkeypatch.setattr(ci, "decode_files", lambda *a: (_ for _ in ()).throw(AssertionError("decoded twice")))
    assert np.array_equal(content.inputs("video", frames=4, size=16).array, video.array)
    monkeypatch.undo()
    monkeypatch.setenv("FUSEBENCH_CACHE", str(tmp_path / "cache"))
    # a damaged cache entry is decoded again, not trusted
    for entry in (tmp_path / "cache" / "inputs" / "video").glob("*.npz"):
        entry.write_bytes(b"PK\x03\x04 truncated")
    assert np.array_equal(content.inputs("video", frames=4, size=16).array, video.array)
    # a missing file and a damaged one are masked, with the reason, not fatal
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    paths = list(content.files["image"])
    paths[0], paths[1] = None, bad
    broken = ItemContent(ds.n_items, None, {"image": paths}).inputs("image")
    assert broken.mask[:2].tolist() == [False, False] and broken.mask[2:].all()
    assert broken.problems[0] == "no file" and "unreadable image" in broken.problems[1]
    assert not broken.array[:2].any()


def test_placebos_act_on_the_decoded_inputs(catalogue, tmp_path, monkeypatch):
    from datasets.placebo import placebo_features

    monkeypatch.setenv("FUSEBENCH_CACHE", str(tmp_path / "cache"))
    content = ItemContent.of(catalogue[0])
    real = content.inputs("image")
    shuffled = content.with_placebo("shuffle", 3).inputs("image")
    # the same permutation as the frozen features' shuffle placebo, rows and mask together
    flat = {"image": real.array.reshape(len(real.array), -1).astype(np.float32)}
    expect, _ = placebo_features(flat, {"image": real.mask}, "shuffle", 3)
    assert np.array_equal(shuffled.array.reshape(len(real.array), -1), expect["image"].astype(np.uint8))
    assert sorted(map(bytes, shuffled.array)) == sorted(map(bytes, real.array))
    noise = content.with_placebo("noise", 3).inputs("image")
    assert noise.array.dtype == np.uint8 and noise.array.shape == real.array.shape
    assert not np.array_equal(noise.array, real.array)
    # text: the placebo of the words, then tokenised
    words = content.with_placebo("shuffle", 3).inputs("text").array
    assert sorted(map(bytes, words)) == sorted(map(bytes, content.inputs("text").array))
    data = FitData(train=catalogue[1], seed=5, content=content).placebo("noise")
    assert data.content.placebo == ("noise", 5)


def test_eval_cache_follows_the_weights_and_frozen_towers_have_no_weights(catalogue):
    ds, train, _, _ = catalogue
    model = make_model("e2e-attention", {"modalities": "image,text", "text_init": "random", "batch_size": 256})
    model.init(FitData(train=train, seed=2, content=ItemContent.of(ds)))
    users = np.arange(20)
    model.train_epoch()
    state, before = model.get_state(), model.score(users)
    cached = dict(model.module_.encoders._cache)
    assert np.array_equal(model.score(users), before) and len(cached) == 2
    assert all(model.module_.encoders._cache[m] is z for m, z in cached.items())  # reused, not recomputed
    model.train_epoch()
    assert not np.allclose(model.score(users), before)
    model.set_state(state)
    assert np.array_equal(model.score(users), before)  # a restored state is encoded again
    assert model.used_modalities() == ["image/raw", "text/raw"]
    frozen = make_model("e2e-attention", {"modalities": "image,text", "text_init": "random", "freeze": True})
    frozen.init(FitData(train=train, seed=2, content=ItemContent.of(ds)))
    towers = sum(p.numel() for p in model.module_.encoders.bodies.parameters())
    assert not list(frozen.module_.encoders.bodies.parameters()) and towers > 0
    assert frozen.n_parameters() == model.n_parameters() - towers


def test_same_seed_same_model(catalogue):
    a = fitted(catalogue, "audio,video", False, epochs=2).score(np.arange(30))
    b = fitted(catalogue, "audio,video", False, epochs=2).score(np.arange(30))
    assert np.array_equal(a, b)


@pytest.mark.parametrize(
    "modalities, message",
    [
        ("audio/vggish", "is not raw content"),
        ("text,text", "twice"),
    ],
)
def test_bad_modalities_are_one_line_errors(modalities, message):
    with pytest.raises(FusebenchError, match=message):
        make_model("e2e-attention", {"modalities": modalities})


def test_content_the_data_lacks_is_one_line_error():
    train = sp.csr_matrix(np.eye(4))
    content = ItemContent(4, ["a b", "c", "", "d"])
    model = make_model("e2e-attention", {"modalities": "image"})
    with pytest.raises(FusebenchError, match="no raw image content; it has: text"):
        model.init(FitData(train=train, content=content))
    with pytest.raises(FusebenchError, match="carries none"):
        make_model("e2e-attention").init(FitData(train=train))
    # data built by hand with item text carries it as raw content
    assert FitData(train=train, item_text=["a", "b", "c", "d"]).content.available() == ["text"]


@pytest.mark.parametrize("strategy", ["fusion-concat", "fusion-late"])
def test_the_mixin_makes_any_strategy_end_to_end(catalogue, strategy):
    """`EndToEnd` changes only the inputs and encoders, so other strategies train from raw
    content unchanged (not registered: `e2e-attention` is the family's leaderboard entry)."""
    from baselines.base import get_model_class
    from fusion_models.e2e import EndToEnd

    cls = type("E2E", (EndToEnd, get_model_class(strategy)), {"name": f"e2e-test-{strategy}"})
    ds, train, test, cold = catalogue
    model = cls(modalities="image", epochs=40, batch_size=256, learning_rate=3e-3, id_dropout=0.5)
    model.fit(FitData(train=train, seed=1, content=ItemContent.of(ds)))
    assert model.used_modalities() == ["image/raw"]
    assert cold_recall(model, test, cold).mean() > 0.5  # chance: 0.25


def test_bce_loss_trains_and_differs_from_bpr(catalogue):
    bce = fitted(catalogue, "text", False, epochs=3, loss="bce")
    bpr = fitted(catalogue, "text", False, epochs=3)
    assert not np.allclose(bce.score(np.arange(10)), bpr.score(np.arange(10)))
    ds, train, _, _ = catalogue
    m = make_model("e2e-attention", {"modalities": "text", "text_init": "random", "loss": "bce", "batch_size": 256})
    m.init(FitData(train=train, seed=1, content=ItemContent.of(ds)))
    first = m.train_epoch()
    assert first == pytest.approx(2 * np.log(2), abs=0.05)  # both logits start near 0
    assert [m.train_epoch() for _ in range(5)][-1] < first
