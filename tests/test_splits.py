"""Split protocols: partition, ratios, determinism, time order, few-interaction users, errors."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from conftest import make_tiny_dataset
from datasets import PROTOCOLS, FusebenchError, MultimodalDataset, Split, split
from datasets.splits import dedup_rows

ALL = ("random", "user-temporal", "global-temporal", "leave-one-out", "given", "cold-start-items")


def test_protocol_names():
    assert PROTOCOLS[:5] == ("random", "user-temporal", "global-temporal", "leave-one-out", "given")
    assert set(PROTOCOLS) == set(ALL)


def _parts(ds: MultimodalDataset, s: Split) -> np.ndarray:
    """Part (0/1/2) of each deduplicated interaction row, asserting it is in exactly one."""
    rows = dedup_rows(ds)
    u = ds.interactions["user"].to_numpy()[rows]
    i = ds.interactions["item"].to_numpy()[rows]
    member = np.stack([np.asarray(m[u, i]).ravel() for m in (s.train, s.valid, s.test)])
    assert (member.sum(axis=0) == 1).all(), "every interaction lies in exactly one part"
    return member.argmax(axis=0)


def _check_partition(ds: MultimodalDataset, s: Split) -> None:
    for m in (s.train, s.valid, s.test):
        assert isinstance(m, sp.csr_matrix) and m.shape == (ds.n_users, ds.n_items)
        assert m.dtype == np.float32 and (m.data == 1).all()
    assert s.train.multiply(s.valid).nnz == 0
    assert s.train.multiply(s.test).nnz == 0
    assert s.valid.multiply(s.test).nnz == 0
    union = s.train + s.valid + s.test
    full = ds.matrix()
    assert union.nnz == full.nnz == len(dedup_rows(ds))
    assert (union != full).nnz == 0
    _parts(ds, s)


def _same(a: Split, b: Split) -> bool:
    return all((x != y).nnz == 0 for x, y in ((a.train, b.train), (a.valid, b.valid), (a.test, b.test)))


@pytest.mark.parametrize("protocol", ALL)
def test_partition_real(protocol, mls, lfm2k):
    for ds in (mls, lfm2k):
        timed = ds is mls
        if protocol in ("user-temporal", "global-temporal") and not timed:
            continue
        if protocol == "given" and ds.given_split is None:
            continue
        s = split(ds, protocol, seed=3)
        assert s.protocol == protocol and s.seed == 3
        _check_partition(ds, s)
        assert s.valid.nnz > 0 and s.test.nnz > 0


@pytest.mark.parametrize("protocol", ["random", "user-temporal", "leave-one-out", "cold-start-items"])
def test_partition_tiny(protocol, tiny_dataset):
    _check_partition(tiny_dataset, split(tiny_dataset, protocol, seed=0))


@pytest.mark.parametrize("protocol", ["random", "user-temporal", "global-temporal"])
def test_ratios_roughly_right(protocol, ml100k):
    s = split(ml100k, protocol, seed=0)
    n = ml100k.n_interactions
    assert abs(s.test.nnz / n - 0.1) < 0.01 and abs(s.valid.nnz / n - 0.1) < 0.01
    assert s.params["ratios"] == [0.8, 0.1, 0.1]
    s2 = split(ml100k, protocol, seed=0, ratios=(0.7, 0.1, 0.2))
    assert abs(s2.test.nnz / n - 0.2) < 0.01 and abs(s2.train.nnz / n - 0.7) < 0.01


def test_per_user_ratios(mls):
    s = split(mls, "random", seed=0)
    n = np.diff(mls.matrix().indptr)
    t = np.diff(s.test.indptr)
    v = np.diff(s.valid.indptr)
    assert (t == np.maximum(1, np.floor(n * 0.1 + 0.5))).all()
    assert (v == t).all()  # equal ratios -> equal counts per user


@pytest.mark.parametrize(
    "protocol", ["random", "leave-one-out", "cold-start-items", "user-temporal", "global-temporal"]
)
def test_deterministic_and_seed_sensitive(protocol, ml100k):
    a = split(ml100k, protocol, seed=7)
    b = split(ml100k, protocol, seed=7)
    assert _same(a, b) and a.params == b.params
    c = split(ml100k, protocol, seed=8)
    if protocol in ("random", "leave-one-out", "cold-start-items"):
        assert not _same(a, c)
    # temporal protocols only use the seed to break timestamp ties


def test_seed_sensitive_without_timestamps(lfm2k):
    assert not _same(split(lfm2k, "leave-one-out", seed=0), split(lfm2k, "leave-one-out", seed=1))
    assert split(lfm2k, "leave-one-out", seed=0).params["order"] == "random"


def _ts_frame(ds, s):
    rows = dedup_rows(ds)
    df = ds.interactions.iloc[rows][["user", "timestamp"]].copy()
    df["part"] = _parts(ds, s)
    return df


@pytest.mark.parametrize("protocol", ["user-temporal", "leave-one-out"])
def test_user_temporal_order(protocol, ml100k):
    df = _ts_frame(ml100k, split(ml100k, protocol, seed=0))
    g = df.groupby(["user", "part"])["timestamp"]
    lo, hi = g.min().unstack(), g.max().unstack()
    has = lo[2].notna() & lo[0].notna()
    assert has.sum() == 943
    assert (lo[2][has] >= hi[0][has]).all()  # test never earlier than the user's train
    assert (lo[1][has] >= hi[0][has]).all() and (lo[2][has] >= hi[1][has]).all()


def test_global_temporal_order(mls):
    s = split(mls, "global-temporal", seed=0)
    df = _ts_frame(mls, s)
    tmax = df.groupby("part")["timestamp"].max()
    tmin = df.groupby("part")["timestamp"].min()
    assert tmax[0] <= tmin[1] and tmax[1] <= tmin[2]
    assert s.params["valid_from"] == tmin[1] and s.params["test_from"] == tmin[2]


def test_given_reproduces_x_label(lfm2k):
    s = split(lfm2k, "given")
    assert (s.train.nnz, s.valid.nnz, s.test.nnz) == (44_327, 4_799, 7_219)
    rows = np.flatnonzero(lfm2k.given_split == 2)
    u = lfm2k.interactions["user"].to_numpy()[rows]
    i = lfm2k.interactions["item"].to_numpy()[rows]
    assert np.asarray(s.test[u, i]).all()


def test_leave_one_out_counts(ml100k, tiny_dataset):
    s = split(ml100k, "leave-one-out", seed=0)
    assert (np.diff(s.test.indptr) == 1).all() and (np.diff(s.valid.indptr) == 1).all()
    t = split(tiny_dataset, "leave-one-out", seed=0)
    # users 3 (2 interactions) and 4 (1) stay in train; user 2 (3) gets 1/1/1
    assert np.diff(t.test.indptr).tolist() == [1, 1, 1, 0, 0]
    assert np.diff(t.train.indptr).tolist() == [4, 3, 1, 2, 1]
    # the latest interaction is the test one: user 0's last is item 5 at t=15
    assert t.test[0].indices.tolist() == [5] and t.valid[0].indices.tolist() == [4]


def test_few_interaction_users(tiny_dataset):
    s = split(tiny_dataset, "random", seed=0)
    # n=6 -> 1 test, 1 valid; n=5 -> 1/1 (round(0.5) = 1 half up); n=3 -> 1/1/1; n<3 -> all train
    assert np.diff(s.test.indptr).tolist() == [1, 1, 1, 0, 0]
    assert np.diff(s.valid.indptr).tolist() == [1, 1, 1, 0, 0]
    assert np.diff(s.train.indptr).tolist() == [4, 3, 1, 2, 1]
    big = split(tiny_dataset, "random", seed=0, ratios=(0.2, 0.4, 0.4))
    assert (np.diff(big.train.indptr) >= 1).all()  # at least one train interaction stays
    s5 = split(tiny_dataset, "random", seed=0, min_interactions=5)
    assert np.diff(s5.test.indptr).tolist() == [1, 1, 0, 0, 0]
    no_valid = split(tiny_dataset, "random", seed=0, ratios=(0.8, 0, 0.2), min_interactions=2)
    assert no_valid.valid.nnz == 0 and np.diff(no_valid.test.indptr).tolist() == [1, 1, 1, 1, 0]


def test_dedup_keeps_latest(tiny_dataset):
    df = tiny_dataset.interactions
    dup = pd.DataFrame(
        {
            "user": np.int32([0, 0]),
            "item": np.int32([0, 5]),
            "rating": np.float32([1, 2]),
            "timestamp": np.int64([99, 1]),
        }
    )
    ds = dataclasses.replace(tiny_dataset, interactions=pd.concat([df, dup], ignore_index=True))
    rows = dedup_rows(ds)
    assert len(rows) == len(df)
    assert 17 in rows and 0 not in rows  # (0,0) at t=99 replaces t=10
    assert 5 in rows and 18 not in rows  # (0,5) at t=15 beats t=1
    for protocol in ("random", "user-temporal", "global-temporal", "leave-one-out"):
        s = split(ds, protocol, seed=1)
        _check_partition(ds, s)
        assert s.params["n_duplicates_dropped"] == 2
    # user-temporal: (0,0) is now user 0's latest interaction -> test
    assert 0 in split(ds, "user-temporal", seed=0).test[0].indices


def test_cold_start_items(mls):
    s = split(mls, "cold-start-items", seed=0)
    _check_partition(mls, s)
    train_items = set(s.train.indices)
    valid_items, test_items = set(s.valid.indices), set(s.test.indices)
    assert not train_items & valid_items and not train_items & test_items and not valid_items & test_items
    assert s.params["n_cold_valid_items"] + s.params["n_cold_test_items"] == round(0.1 * mls.n_items)
    with pytest.raises(FusebenchError, match="cold_ratio"):
        split(mls, "cold-start-items", cold_ratio=1.5)


def test_errors(lfm2k, tiny_dataset, mls):
    for protocol in ("user-temporal", "global-temporal"):
        with pytest.raises(FusebenchError, match="timestamps"):
            split(lfm2k, protocol)
        with pytest.raises(FusebenchError, match="timestamps"):
            split(make_tiny_dataset(with_timestamps=False), protocol)
    with pytest.raises(FusebenchError, match="no given split"):
        split(mls, "given")
    with pytest.raises(FusebenchError, match="unknown split protocol.*random"):
        split(tiny_dataset, "chronological")
    with pytest.raises(FusebenchError, match="ratios"):
        split(tiny_dataset, "random", ratios=(0.5, 0.5))
    with pytest.raises(FusebenchError, match="ratios"):
        split(tiny_dataset, "random", ratios=(0.9, 0.1, 0.0))
    with pytest.raises(FusebenchError, match="does not take"):
        split(tiny_dataset, "leave-one-out", ratios=(0.8, 0.1, 0.1))
    with pytest.raises(FusebenchError, match="min_interactions"):
        split(tiny_dataset, "random", min_interactions=2)
    with pytest.raises(FusebenchError, match="seed"):
        split(tiny_dataset, "random", seed=-1)


def test_leave_one_out_without_timestamps_is_random(tiny_dataset):
    ds = make_tiny_dataset(with_timestamps=False)
    s = split(ds, "leave-one-out", seed=0)
    _check_partition(ds, s)
    assert s.params["order"] == "random"


def test_describe_record(tiny_dataset):
    d = split(tiny_dataset, "random", seed=4).describe()
    assert d["protocol"] == "random" and d["seed"] == 4
    assert d["n_train"] + d["n_valid"] + d["n_test"] == 17


def test_vectorised_on_many_users():
    rng = np.random.default_rng(0)
    n_users, n_items, n = 150_000, 5_000, 600_000
    u = rng.integers(0, n_users, n).astype(np.int32)
    i = rng.integers(0, n_items, n).astype(np.int32)
    df = pd.DataFrame(
        {
            "user": u,
            "item": i,
            "rating": np.ones(n, np.float32),
            "timestamp": rng.integers(0, 10**9, n).astype(np.int64),
        }
    )
    ds = MultimodalDataset(
        name="big",
        interactions=df,
        n_users=n_users,
        n_items=n_items,
        user_ids=np.arange(n_users),
        item_ids=np.arange(n_items),
    )
    t0 = time.perf_counter()
    for protocol in ("random", "user-temporal", "leave-one-out"):
        s = split(ds, protocol, seed=0)
    assert time.perf_counter() - t0 < 10
    assert s.train.nnz + s.valid.nnz + s.test.nnz == len(dedup_rows(ds))
