"""Dataset loaders, checksums, mirror/cache/download lookup, malformed input. No network."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest

import datasets
from conftest import SHARED_DATA
from datasets import DatasetUnavailable, FusebenchError, describe, download, load, movielens, registry
from datasets import lfm2k as lfm2k_mod
from datasets.atomic import read_atomic
from datasets.mmrec import default_feature_map, load_mmrec_folder
from datasets.text_features import tfidf_svd

LFM_DIR = SHARED_DATA / "lfm2k"
needs_lfm = pytest.mark.skipif(not LFM_DIR.is_dir(), reason="no offline lfm2k mirror")


# ------------------------------------------------------------------ registry
def test_public_api():
    for name in (
        "MultimodalDataset",
        "Split",
        "FusebenchError",
        "DatasetUnavailable",
        "interactions_to_csr",
        "load",
        "available",
        "split",
        "PROTOCOLS",
        "describe",
    ):
        assert hasattr(datasets, name), name
    assert issubclass(DatasetUnavailable, FusebenchError)
    assert datasets.available() == [
        "ml-100k",
        "ml-latest-small",
        "lfm2k",
        "ml-1m",
        "amazon-baby",
        "amazon-sports",
        "amazon-clothing",
    ]


def test_unknown_dataset_lists_available():
    with pytest.raises(FusebenchError, match="ml-latest-small.*lfm2k"):
        load("nope")


def test_recbole_is_never_imported(ml100k):
    import subprocess
    import sys

    code = (
        "import sys, datasets; ds = datasets.load('ml-100k'); "
        "assert ds.n_users == 943; assert 'recbole' not in sys.modules, 'recbole imported'"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1]
    )
    assert out.returncode == 0, out.stderr


# ------------------------------------------------------------------ real datasets
def _check_text(ds, dim=384):
    # default text modality: text/minilm (all-MiniLM-L6-v2) at float16 precision
    x = ds.features["text"]
    assert x.dtype == np.float32 and x.shape == (ds.n_items, dim)
    norms = np.linalg.norm(x, axis=1)
    assert np.all(np.abs(norms - 1) < 2e-3)
    assert np.array_equal(x, x.astype(np.float16).astype(np.float32))
    assert ds.meta["features"]["text"] == "text/minilm@1 (all-MiniLM-L6-v2)"
    assert ds.mask("text").all()


def test_ml100k_counts(ml100k):
    ds = ml100k
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (943, 1682, 100_000)
    df = ds.interactions
    assert df["user"].dtype == np.int32 and df["item"].dtype == np.int32
    assert df["rating"].dtype == np.float32 and df["timestamp"].dtype == np.int64
    assert (df["timestamp"] > 800_000_000).all()
    assert set(np.unique(df["rating"])) == {1, 2, 3, 4, 5}
    assert ds.item_ids[0] == 1 and ds.item_ids[-1] == 1682
    assert ds.item_text[0] == "Toy Story 1995 Animation Children's Comedy"
    _check_text(ds)
    assert ds.given_split is None
    assert "Harper" in ds.meta["citation"] and ds.meta["license"] and ds.meta["source"]
    # first row of u.data
    assert (ds.user_ids[df["user"][0]], ds.item_ids[df["item"][0]], df["rating"][0]) == (196, 242, 3)


def test_ml100k_unavailable_without_recbole(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "recbole" else real(n, *a))
    with pytest.raises(DatasetUnavailable, match="ml-100k.*recbole") as err:
        movielens.load_ml100k()
    assert "\n" not in str(err.value)


def test_ml_latest_small_counts(mls):
    ds = mls
    assert (ds.n_users, ds.n_interactions) == (610, 100_836)
    assert ds.n_items == 9_724  # rated movies only (movies.csv lists 9,742)
    assert ds.interactions["timestamp"].min() > 800_000_000
    assert set(np.unique(ds.interactions["rating"])) == {0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5}
    toy = ds.item_text[int(np.flatnonzero(ds.item_ids == 1)[0])]
    assert toy.startswith("Toy Story (1995) Adventure Animation") and "pixar" in toy  # tags included
    assert "|" not in "".join(ds.item_text)
    _check_text(ds)


@needs_lfm
def test_lfm2k_counts(lfm2k):
    ds = lfm2k
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (1858, 1425, 56_345)
    assert ds.modalities == ["audio/vggish", "audio/whisper", "text"]
    dims = {m: ds.features[m].shape[1] for m in ds.modalities}
    assert dims == {"text": 384, "audio/vggish": 128, "audio/whisper": 512}
    assert all(ds.features[m].dtype == np.float32 for m in ds.modalities)
    assert (ds.interactions["timestamp"] == -1).all()
    assert np.bincount(ds.given_split).tolist() == [44_327, 4_799, 7_219]
    # item 0 is HetRec artist 80 (first row of lfm2k_og_ids.inter); its text is that artist's tags
    assert ds.item_ids[0] == 80 and ds.user_ids[0] == 2
    text = {}
    for line in (LFM_DIR / "lfm2k_text.tsv").read_text().splitlines()[1:]:
        a, t = line.split("\t", 1)
        text[int(a)] = t
    assert ds.item_text[0] == text[80]
    assert sum(bool(t) for t in ds.item_text) == 1425
    vgg = np.load(LFM_DIR / "vggish.npy")
    assert np.allclose(ds.features["audio/vggish"], vgg.astype(np.float32))
    assert "Spillo" in ds.meta["citation"] and "HetRec" in ds.meta["citation"]


def test_loaded_datasets_are_cached_and_read_only(mls):
    assert load("ml-latest-small") is mls
    with pytest.raises(ValueError):
        mls.features["text"][0, 0] = 1.0


def test_describe(mls):
    info = describe(mls)
    assert info["name"] == "ml-latest-small"
    assert (info["users"], info["items"], info["interactions"]) == (610, 9724, 100_836)
    assert info["modalities"] == {"text": 384}
    assert info["has_timestamps"] and not info["has_given_split"]
    assert info["fingerprint"] == mls.fingerprint()
    assert 0 < info["density"] < 1 and info["license"] and info["citation"]


@needs_lfm
def test_describe_lfm2k(lfm2k):
    info = describe(lfm2k)
    assert info["modalities"] == {"audio/vggish": 128, "audio/whisper": 512, "text": 384}
    assert info["has_given_split"] and not info["has_timestamps"]
    assert info["given_split_counts"] == {"train": 44_327, "valid": 4_799, "test": 7_219}


# ------------------------------------------------------------------ fingerprints, threshold
def test_fingerprint_stable_across_loads_and_content_sensitive(mls):
    registry.clear_cache()
    again = load("ml-latest-small")
    assert again is not mls
    assert again.fingerprint() == mls.fingerprint()
    df = mls.interactions.copy()
    df.loc[0, "rating"] = np.float32(df.loc[0, "rating"] % 5 + 0.5)
    changed = dataclasses.replace(mls, interactions=df)
    assert changed.fingerprint() != mls.fingerprint()
    feats = {"text": mls.features["text"].copy()}
    feats["text"][3, 0] += 1e-3
    assert dataclasses.replace(mls, features=feats).fingerprint() != mls.fingerprint()


def test_rating_threshold(ml100k):
    pos = load("ml-100k", rating_threshold=4)
    r = ml100k.interactions["rating"].to_numpy()
    assert pos.n_interactions == int((r >= 4).sum()) == 55_375
    assert (pos.interactions["rating"] >= 4).all()
    assert (pos.n_users, pos.n_items) == (943, 1682)
    assert pos.meta["rating_threshold"] == 4.0 and ml100k.meta["rating_threshold"] is None
    assert describe(pos)["rating_threshold"] == 4.0
    assert load("ml-100k", rating_threshold=4) is pos
    with pytest.raises(FusebenchError, match="rating_threshold"):
        load("ml-100k", rating_threshold="high")


# ------------------------------------------------------------------ text features
def test_tfidf_svd_deterministic_and_normalised():
    texts = ["red apple pie", "green apple", "red sports car", "", "blue car sky", "sky blue ocean"] * 3
    a = tfidf_svd(texts, dim=4, seed=0)
    b = tfidf_svd(texts, dim=4, seed=0)
    assert a.dtype == np.float32 and a.shape == (18, 4)
    assert np.array_equal(a, b)
    assert not a[3].any()  # empty text -> zero row
    norms = np.linalg.norm(np.delete(a, [3, 9, 15], axis=0), axis=1)
    assert np.allclose(norms, 1, atol=1e-5)
    wide = tfidf_svd(["a word", "other words"], dim=64)
    assert wide.shape == (2, 64) and np.isfinite(wide).all()
    assert not tfidf_svd(["", " "], dim=8).any()


# ------------------------------------------------------------------ MMRec folders
def _write_inter(path: Path, rows, header="userID\titemID\trating\tx_label"):
    path.write_text(header + "\n" + "\n".join("\t".join(map(str, r)) for r in rows) + "\n")


@pytest.fixture
def mmrec_folder(tmp_path):
    d = tmp_path / "toy"
    d.mkdir()
    rows = [(0, 0, 1, 0), (0, 1, 1, 0), (0, 2, 1, 2), (1, 1, 1, 0), (1, 2, 1, 1), (2, 0, 1, 0), (2, 3, 1, 2)]
    _write_inter(d / "toy.inter", rows)
    np.save(d / "text_feat.npy", np.arange(8, dtype=np.float64).reshape(4, 2))
    np.save(d / "image_feat.npy", np.ones((4, 3), dtype=np.float32))
    np.save(d / "audio_vggish.npy", np.zeros((4, 5), dtype=np.float32))
    return d


def test_mmrec_folder_defaults(mmrec_folder):
    ds = load_mmrec_folder(mmrec_folder)
    assert ds.name == "toy" and (ds.n_users, ds.n_items, ds.n_interactions) == (3, 4, 7)
    assert ds.modalities == ["audio/vggish", "image", "text"]
    assert all(ds.features[m].dtype == np.float32 for m in ds.modalities)
    assert ds.given_split.tolist() == [0, 0, 2, 0, 1, 0, 2]
    via_load = load(f"mmrec:{mmrec_folder}")
    assert via_load.fingerprint() == ds.fingerprint()
    assert datasets.split(via_load, "given").test.nnz == 2


def test_mmrec_explicit_mapping_and_ambiguous_names(mmrec_folder):
    np.save(mmrec_folder / "vggish.npy", np.zeros((4, 2)))
    with pytest.raises(FusebenchError, match="vggish.npy.*features="):
        default_feature_map(mmrec_folder)
    ds = load_mmrec_folder(mmrec_folder, features={"audio/vggish": "vggish.npy", "text": "text_feat.npy"})
    assert ds.modalities == ["audio/vggish", "text"]
    assert ds.features["audio/vggish"].dtype == np.float32


def test_mmrec_optional_columns(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    _write_inter(d / "m.inter", [(0, 1, 100), (1, 0, 50)], header="userID\titemID\ttimestamp")
    ds = load_mmrec_folder(d)
    assert ds.given_split is None and ds.modalities == []
    assert ds.interactions["timestamp"].tolist() == [100, 50]
    assert ds.interactions["rating"].tolist() == [1.0, 1.0]


def test_mmrec_missing_user_column(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    _write_inter(d / "bad.inter", [(0, 1, 0)], header="user\titemID\tx_label")
    with pytest.raises(FusebenchError, match="userID") as err:
        load_mmrec_folder(d)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "rows, match",
    [
        ([(0, "x", 1, 0)], "itemID.*not a non-negative integer"),
        ([(0, -1, 1, 0)], "itemID"),
        ([(0, 1, 1, 3)], "x_label"),
        ([(0, 1, "high", 0)], "rating"),
    ],
)
def test_mmrec_malformed_values(tmp_path, rows, match):
    d = tmp_path / "bad"
    d.mkdir()
    _write_inter(d / "bad.inter", rows)
    with pytest.raises(FusebenchError, match=match):
        load_mmrec_folder(d)


def test_mmrec_feature_row_mismatch(mmrec_folder):
    np.save(mmrec_folder / "image_feat.npy", np.ones((5, 3), dtype=np.float32))
    with pytest.raises(FusebenchError, match="image_feat.npy.*5 rows.*4 items"):
        load_mmrec_folder(mmrec_folder)


def test_mmrec_nan_features(mmrec_folder):
    x = np.ones((4, 3))
    x[2, 1] = np.nan
    np.save(mmrec_folder / "image_feat.npy", x)
    with pytest.raises(FusebenchError, match="NaN"):
        load_mmrec_folder(mmrec_folder)


def test_mmrec_unreadable_feature_and_folder_errors(tmp_path, mmrec_folder):
    (mmrec_folder / "text_feat.npy").write_bytes(b"not numpy")
    with pytest.raises(FusebenchError, match="text_feat.npy"):
        load_mmrec_folder(mmrec_folder)
    with pytest.raises(FusebenchError, match="does not exist"):
        load_mmrec_folder(tmp_path / "nowhere")
    with pytest.raises(FusebenchError, match="exactly one .inter"):
        load_mmrec_folder(tmp_path)
    with pytest.raises(FusebenchError, match="mmrec"):
        load("mmrec:")


def test_atomic_reader(tmp_path):
    p = tmp_path / "x.inter"
    p.write_text("user_id:token\titem_id:token\trating:float\nu1\ti1\t3.5\nu2\ti1\t4\n")
    df = read_atomic(p)
    assert df["rating"].tolist() == [3.5, 4.0] and df["user_id"].tolist() == ["u1", "u2"]
    assert df.attrs["types"]["item_id"] == "token"
    p.write_text("user_id\titem_id\nu1\ti1\n")
    with pytest.raises(FusebenchError, match="name:type"):
        read_atomic(p)
    p.write_text("user_id:token\trating:float\nu1\tlots\n")
    with pytest.raises(FusebenchError, match="not a number"):
        read_atomic(p)


# ------------------------------------------------------------------ lfm2k: mirror, cache, download
def _no_network(monkeypatch):
    def refuse(*a, **k):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(download, "urlopen", refuse)


@pytest.fixture
def fresh_env(tmp_path, monkeypatch):
    """No mirror, an empty cache, downloads allowed (but the network refused)."""
    monkeypatch.delenv("FUSEBENCH_DATA_DIR", raising=False)
    monkeypatch.delenv("FUSEBENCH_OFFLINE", raising=False)
    monkeypatch.delenv("FUSEBENCH_LFM2K_URL", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("FUSEBENCH_CACHE", str(cache))
    _no_network(monkeypatch)
    return cache


@needs_lfm
def test_mirror_flat_layout(tmp_path, lfm2k):
    flat = tmp_path / "flat"
    shutil.copytree(LFM_DIR, flat)
    ds = load("lfm2k", data_dir=flat)
    assert ds.fingerprint() == lfm2k.fingerprint()


@needs_lfm
def test_mirror_checksum_mismatch(tmp_path):
    bad = tmp_path / "mirror"
    shutil.copytree(LFM_DIR, bad / "lfm2k")
    (bad / "lfm2k" / "whisper.npy").chmod(0o644)
    with open(bad / "lfm2k" / "whisper.npy", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(FusebenchError, match="whisper.npy.*expected sha256 2a2690ff.*got [0-9a-f]{64}"):
        load("lfm2k", data_dir=bad)


@needs_lfm
def test_download_into_cache_from_file_url(tmp_path, monkeypatch, fresh_env, lfm2k):
    # serve the files from a local tree with the source repository's layout
    src = tmp_path / "repo"
    for f, (folder, _) in lfm2k_mod.FILES.items():
        (src / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(LFM_DIR / f, src / folder / f)
    monkeypatch.setattr(download, "urlopen", __import__("urllib.request").request.urlopen)
    monkeypatch.setenv("FUSEBENCH_LFM2K_URL", src.as_uri())
    ds = load("lfm2k")
    assert ds.fingerprint() == lfm2k.fingerprint()
    cached = sorted(p.name for p in (fresh_env / "lfm2k").iterdir())
    assert cached == sorted(lfm2k_mod.FILES)  # no temporary leftovers
    # a second process-level load reads the cache, with the network gone
    _no_network(monkeypatch)
    registry.clear_cache()
    assert load("lfm2k").fingerprint() == lfm2k.fingerprint()
    # a corrupted cache file is reported, not silently used
    target = fresh_env / "lfm2k" / "lfm2k.inter"
    target.write_text(target.read_text().replace("\t1\t0\n", "\t1\t2\n", 1))
    registry.clear_cache()
    with pytest.raises(FusebenchError, match="lfm2k.inter.*delete"):
        load("lfm2k")


def test_download_checksum_mismatch_leaves_nothing(tmp_path, monkeypatch):
    src = tmp_path / "payload.bin"
    src.write_bytes(b"hello")
    monkeypatch.setattr(download, "urlopen", __import__("urllib.request").request.urlopen)
    dest = tmp_path / "cache" / "x" / "payload.bin"
    with pytest.raises(FusebenchError, match="checksum mismatch.*payload.bin"):
        download.download(src.as_uri(), dest, "0" * 64)
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    good = download.download(src.as_uri(), dest, download.sha256_file(src))
    assert good.read_bytes() == b"hello"


def test_offline_is_dataset_unavailable(fresh_env):
    with pytest.raises(DatasetUnavailable) as err:
        load("lfm2k")
    msg = str(err.value)
    assert "\n" not in msg
    assert "'lfm2k'" in msg and "lfm2k.inter" in msg and "network is unreachable" in msg
    assert "set FUSEBENCH_DATA_DIR or pass --data-dir to a folder holding lfm2k/" in msg
    assert not (fresh_env / "lfm2k" / "lfm2k.inter").exists()


def test_offline_flag_forbids_downloads(fresh_env, monkeypatch):
    monkeypatch.setenv("FUSEBENCH_OFFLINE", "1")
    with pytest.raises(DatasetUnavailable, match="FUSEBENCH_OFFLINE.*FUSEBENCH_DATA_DIR"):
        load("lfm2k")


def test_lfm2k_urls():
    assert lfm2k_mod.url("vggish.npy") == (
        "https://raw.githubusercontent.com/giuspillo/extending_sota_data_mm_feat/main/4_mmrec/data/lfm2k/vggish.npy"
    )
    assert lfm2k_mod.url("lfm2k_text.tsv").endswith("/3_data_processing/hetrec2011-lastfm-2k/lfm2k_text.tsv")
    sums = {}
    if (SHARED_DATA / "SHA256SUMS").is_file():
        for line in (SHARED_DATA / "SHA256SUMS").read_text().splitlines():
            h, p = line.split()
            sums[p] = h
        for f, (_, h) in lfm2k_mod.FILES.items():
            assert sums[f"lfm2k/{f}"] == h
        assert sums["ml-latest-small.zip"] == movielens.MLS_SHA256


def test_sha256_memo(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    h = download.sha256_file(p)
    assert h == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert download.verify(p, h) == p
    p.write_bytes(b"abcd")  # size changes -> rehash
    with pytest.raises(FusebenchError, match="checksum mismatch"):
        download.verify(p, h)
