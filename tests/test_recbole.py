"""RecBole interoperability: the recbole:NAME adapter, RecBole atomic folders, exports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import datasets
from baselines import FitData, get_model_class, make_model
from datasets import FusebenchError
from datasets.export import export

REPO = Path(__file__).resolve().parents[1]


def _same_content(a, b, *, ids=True, text=True):
    """Same interactions (as a multiset of rows), features, and optionally ids and text."""
    cols = ["user", "item", "rating", "timestamp"]
    ka = a.interactions[cols].sort_values(cols).reset_index(drop=True)
    kb = b.interactions[cols].sort_values(cols).reset_index(drop=True)
    assert (a.n_users, a.n_items) == (b.n_users, b.n_items)
    assert ka.equals(kb)
    assert sorted(a.features) == sorted(b.features)
    for m in a.features:
        assert np.array_equal(a.features[m], b.features[m]), m
    if ids:
        assert list(map(str, a.user_ids)) == list(map(str, b.user_ids))
        assert list(map(str, a.item_ids)) == list(map(str, b.item_ids))
    if text:
        assert a.item_text == b.item_text


# ------------------------------------------------------------------ adapter
def test_adapter_imports_without_recbole():
    code = (
        "import sys; sys.modules['recbole'] = None\n"
        "import baselines\n"
        "from baselines import get_model_class\n"
        "from datasets import FusebenchError\n"
        "try:\n"
        "    get_model_class('recbole:BPR')\n"
        "except FusebenchError as e:\n"
        "    assert 'recbole is not installed' in str(e), e\n"
        "    print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_unknown_and_non_general_names():
    pytest.importorskip("recbole")
    with pytest.raises(FusebenchError, match="unknown RecBole model"):
        get_model_class("recbole:Nope")
    with pytest.raises(FusebenchError, match="sequential"):
        get_model_class("recbole:SASRec")
    with pytest.raises(FusebenchError, match="context-aware"):
        get_model_class("recbole:FM")


def test_generated_classes():
    pytest.importorskip("recbole")
    bpr = get_model_class("recbole:BPR")
    assert bpr is get_model_class("recbole:bpr")  # cached, case-insensitive
    assert bpr.name == "recbole:BPR" and bpr.family == "baseline/cf" and bpr.iterative
    assert bpr.defaults() == {
        "embedding_size": 64,
        "learning_rate": 0.001,
        "train_batch_size": 2048,
        "epochs": 300,
        "config": "",
    }
    for name in ("Pop", "ItemKNN", "EASE", "NCEPLRec"):
        cls = get_model_class(f"recbole:{name}")
        assert not cls.iterative and cls.param_names() == ["config"], name
    with pytest.raises(FusebenchError, match="model parameters"):
        make_model("recbole:BPR", {"config": '{"embedding_size": 8}'}).init(
            FitData(train=sp.csr_matrix(np.eye(3, dtype=np.float32)))
        )
    with pytest.raises(FusebenchError, match="set by the adapter"):
        make_model("recbole:BPR", {"config": '{"seed": 3}'}).init(
            FitData(train=sp.csr_matrix(np.eye(3, dtype=np.float32)))
        )


def test_pop_scores_align_with_our_item_counts(tiny_dataset, tmp_path, monkeypatch):
    """RecBole re-indexes ids; the adapter maps them back: Pop's scores are our counts."""
    pytest.importorskip("recbole")
    monkeypatch.chdir(tmp_path)
    # item 3 and user 4 have no training interaction; the item order is not RecBole's
    train = tiny_dataset.matrix().tolil()
    train[:, 3] = 0
    train[4, :] = 0
    train = sp.csr_matrix(train, dtype=np.float32)
    train.eliminate_zeros()
    # no negative sampling (RecBole's Pop counts every row it is fed, sampled negatives
    # included) and batches of one row (Pop's `item_cnt[item] += 1` counts a repeated item
    # once per batch)
    model = make_model("recbole:Pop", {"config": '{"train_neg_sample_args": null, "train_batch_size": 1}'})
    model.fit(FitData(train=train, seed=0))
    counts = np.asarray(train.sum(axis=0)).ravel()
    scores = model.score(np.arange(5))
    assert scores.shape == (5, 6) and scores.dtype == np.float32
    np.testing.assert_allclose(scores * counts.max(), np.tile(counts, (5, 1)), rtol=1e-6)
    assert list(tmp_path.iterdir()) == []  # nothing written to the working directory


def test_bpr_two_epochs_beats_random(ml100k, tmp_path, monkeypatch):
    pytest.importorskip("recbole")
    from benchmark.evaluate import evaluate
    from benchmark.training import train

    monkeypatch.chdir(tmp_path)
    split = datasets.split(ml100k, "random", seed=0)
    model = make_model("recbole:BPR", {"epochs": 2, "learning_rate": 0.01})
    out = train(model, FitData(train=split.train, seed=0), split.valid, patience=5)
    assert out.epochs_run == 2 and out.best_epoch in (1, 2)
    assert model.n_parameters() == (ml100k.n_users + 1 + ml100k.n_items + 1) * 64
    rng = np.random.default_rng(0)
    rand = evaluate(
        lambda u: rng.random((len(u), ml100k.n_items), dtype=np.float32),
        split.test,
        split.train + split.valid,
        metrics=("recall",),
        ks=(20,),
    )
    ours = evaluate(model.score, split.test, split.train + split.valid, metrics=("recall",), ks=(20,))
    assert ours.summary["recall@20"] > 2 * rand.summary["recall@20"]
    # state round trip
    state = model.get_state()
    before = model.score(np.arange(10))
    model.train_epoch()
    model.set_state(state)
    np.testing.assert_array_equal(model.score(np.arange(10)), before)
    assert list(tmp_path.iterdir()) == []
    assert not hasattr(np, "float")  # RecBole's numpy aliases do not leak


# ------------------------------------------------------------------ atomic folders / exports
def test_recbole_round_trip_tiny(tiny_dataset, tmp_path):
    folder = export(tiny_dataset, "recbole", tmp_path)
    assert folder == tmp_path / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == ["tiny.inter", "tiny.item", "tiny.user"]
    header = (folder / "tiny.inter").read_text().splitlines()[0]
    assert header == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    back = datasets.load(f"recbole:{folder}")
    assert back.fingerprint() == tiny_dataset.fingerprint()
    _same_content(tiny_dataset, back)
    with pytest.raises(FusebenchError, match="already exists"):
        export(tiny_dataset, "recbole", tmp_path)


def test_recbole_round_trip_without_timestamps_and_given_split(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import make_tiny_dataset

    ds = make_tiny_dataset(with_timestamps=False)
    from dataclasses import replace

    labels = np.array([0, 1, 2] * 5 + [0, 0], dtype=np.int8)
    ds = replace(ds, given_split=labels)
    folder = export(ds, "recbole", tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == [
        "tiny.item",
        "tiny.test.inter",
        "tiny.train.inter",
        "tiny.user",
        "tiny.valid.inter",
    ]
    assert "timestamp" not in (folder / "tiny.train.inter").read_text().splitlines()[0]
    back = datasets.load(f"recbole:{folder}")
    _same_content(ds, back)
    order = np.argsort(labels, kind="stable")  # the format groups rows by split part
    assert np.array_equal(back.given_split, labels[order])
    assert back.interactions.equals(ds.interactions.iloc[order].reset_index(drop=True))


def test_mmrec_round_trip_tiny(tiny_dataset, tmp_path):
    folder = export(tiny_dataset, "mmrec", tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == [
        "i_id_mapping.csv",
        "text_feat.npy",
        "tiny.inter",
        "u_id_mapping.csv",
    ]
    back = datasets.load(f"mmrec:{folder}")
    _same_content(tiny_dataset, back, ids=False, text=False)  # MMRec carries neither
    default = datasets.split(tiny_dataset, "random", seed=0)
    assert (back.matrix(np.flatnonzero(back.given_split == 0)) != default.train).nnz == 0
    assert (back.matrix(np.flatnonzero(back.given_split == 2)) != default.test).nnz == 0


def test_mmrec_export_with_split_and_feature_names(tiny_dataset, tmp_path):
    from dataclasses import replace

    ds = replace(
        tiny_dataset,
        features={
            **tiny_dataset.features,
            "audio/vggish": np.ones((6, 3), np.float32),
            "image": np.zeros((6, 2), np.float32),
        },
    )
    sp_ = datasets.split(ds, "random", seed=3)
    folder = export(ds, "mmrec", tmp_path, split=sp_)
    assert {"text_feat.npy", "image_feat.npy", "audio_vggish.npy"} <= {p.name for p in folder.iterdir()}
    back = datasets.load(f"mmrec:{folder}")
    assert sorted(back.features) == ["audio/vggish", "image", "text"]
    assert (back.matrix(np.flatnonzero(back.given_split == 1)) != sp_.valid).nnz == 0
    with pytest.raises(FusebenchError, match="unknown export format"):
        export(ds, "cornac", tmp_path / "x")


def test_atomic_folder_rules(tmp_path):
    """Columns in any order/typing, .item float columns, text columns, extra ids."""
    d = tmp_path / "shop"
    d.mkdir()
    (d / "shop.inter").write_text(
        "timestamp:float\titem_id:token\tuser_id:token\trating:token\n5\tb\tu2\t4\n3\ta\tu1\t5\n7\ta\tu2\t1\n",
        encoding="utf-8",
    )
    (d / "shop.item").write_text(
        "item_id:token\tprice:float\ttitle:token_seq\timage_feat:float_seq\tweird:float_seq\tcat:token\n"
        "c\t3.0\tthird thing\t1 2\t9\tx\n"
        "a\t1.0\tfirst thing\t3 4\t8\ty\n"
        "b\t\tsecond\t\t\tz\n",
        encoding="utf-8",
    )
    ds = datasets.load(f"recbole:{d}")
    assert list(ds.item_ids) == ["c", "a", "b"] and list(ds.user_ids) == ["u1", "u2"]
    assert ds.interactions["item"].tolist() == [2, 1, 1]
    assert ds.interactions["rating"].tolist() == [4.0, 5.0, 1.0]
    assert ds.interactions["timestamp"].tolist() == [5, 3, 7]
    np.testing.assert_array_equal(ds.features["image"], [[1, 2], [3, 4], [0, 0]])
    # catch-all: price (missing -> mean 2.0), then weird (missing -> 0)
    np.testing.assert_array_equal(ds.features["text/atomic-float"], [[3, 9], [1, 8], [2, 0]])
    assert ds.item_text == ["third thing", "first thing", "second"]
    with pytest.raises(FusebenchError, match="does not exist"):
        datasets.load(f"recbole:{tmp_path / 'nope'}")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "bad.inter").write_text("user_id:token\titem_id:token\trating:float\nu\ti\tfive\n")
    with pytest.raises(FusebenchError, match="not a number"):
        datasets.load(f"recbole:{bad}")


def test_ml100k_round_trips(ml100k, tmp_path):
    back = datasets.load(f"recbole:{export(ml100k, 'recbole', tmp_path / 'r')}")
    assert back.fingerprint() == ml100k.fingerprint()
    m = datasets.load(f"mmrec:{export(ml100k, 'mmrec', tmp_path / 'm')}")
    _same_content(ml100k, m, ids=False, text=False)


def test_lfm2k_round_trips(lfm2k, tmp_path):
    back = datasets.load(f"recbole:{export(lfm2k, 'recbole', tmp_path / 'r')}")
    _same_content(lfm2k, back)
    order = np.argsort(lfm2k.given_split, kind="stable")
    assert np.array_equal(back.given_split, lfm2k.given_split[order])
    m = datasets.load(f"mmrec:{export(lfm2k, 'mmrec', tmp_path / 'm')}")
    _same_content(lfm2k, m, ids=False, text=False)
    assert np.array_equal(m.given_split, lfm2k.given_split)


def test_cli_export(tiny_dataset, tmp_path):
    folder = export(tiny_dataset, "recbole", tmp_path / "cli")
    out = subprocess.run(
        # (the options go last: argparse does not take the OUT positional after --format)
        [
            sys.executable,
            "-m",
            "benchmark",
            "datasets",
            "export",
            f"recbole:{folder}",
            str(tmp_path / "out"),
            "--format",
            "mmrec",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ},
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "out" / "tiny" / "tiny.inter").is_file()
