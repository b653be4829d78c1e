"""Train/valid/test protocols: ``split(dataset, protocol, seed, **params) -> Split``.

Common rules, for every protocol:

- Duplicated (user, item) pairs are collapsed before splitting, keeping the latest one
  (by timestamp; by row order when there are no timestamps), so no pair lands in two parts.
  ``Split.params["n_duplicates_dropped"]`` says how many rows went.
- Randomness comes from ``numpy.random.default_rng(seed)`` only: same seed, same matrices.
- Everything is vectorised (sorts and group ranks), no Python loop over users.

Protocols (``PROTOCOLS``):

``random`` (default ``ratios=(0.8, 0.1, 0.1)``)
    Per user, a random permutation of the user's interactions; the first share goes to
    train, the next to valid, the last to test.
``user-temporal`` (same ``ratios``)
    Per user, ordered by time (ties broken at random under the seed): the user's latest
    interactions go to test, the ones just before to valid, the rest to train.
``global-temporal`` (same ``ratios``)
    One global time order (ties broken at random); cut at the ratio quantiles: the earliest
    share is train, the next valid, the latest test. Users may end up with no training
    interaction (they are new users at test time); no minimum applies.
``leave-one-out``
    Per user: the last interaction (by time, or a random one without timestamps) is test,
    the second last valid, the rest train.
``given``
    The source's own labels (``dataset.given_split``), e.g. MMRec's ``x_label``.
``cold-start-items`` (``cold_ratio=0.1``)
    A random share of the items with interactions is made cold: all their interactions go
    to valid (half of the cold items) or test (the other half); every other interaction
    is train. Valid/test then hold cold items only.

Users with few interactions (per-user protocols ``random``, ``user-temporal``,
``leave-one-out``): a user with fewer than ``min_interactions`` (default 3) interactions
goes to train entirely. A user with ``n >= min_interactions`` gets
``n_test = round(n * ratios[2])`` and ``n_valid = round(n * ratios[1])`` (half up), each at
least 1 (when its ratio is > 0) and capped so that at least one interaction stays in train.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .core import MultimodalDataset, Split, interactions_to_csr
from .errors import FusebenchError

PROTOCOLS = ("random", "user-temporal", "global-temporal", "leave-one-out", "given", "cold-start-items")

DEFAULT_RATIOS = (0.8, 0.1, 0.1)

_PARAMS = {
    "random": {"ratios", "min_interactions"},
    "user-temporal": {"ratios", "min_interactions"},
    "global-temporal": {"ratios"},
    "leave-one-out": {"min_interactions"},
    "given": set(),
    "cold-start-items": {"cold_ratio"},
}


def default_protocol(dataset: MultimodalDataset) -> str:
    """The split a dataset is evaluated on unless one is asked for: the source's own split when
    it has one (MMRec folders, RecBole benchmark files), else per-user random 8:1:1."""
    return "given" if dataset.given_split is not None else "random"


def has_timestamps(dataset: MultimodalDataset) -> bool:
    """True when every interaction has a timestamp (none is the -1 sentinel)."""
    ts = dataset.interactions["timestamp"].to_numpy()
    return len(ts) > 0 and bool((ts != -1).all())


def dedup_rows(dataset: MultimodalDataset) -> np.ndarray:
    """Row indices (ascending) that remain after collapsing duplicate (user, item) pairs,
    keeping the latest (by timestamp, then by row order)."""
    df = dataset.interactions
    n = len(df)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    key = df["user"].to_numpy().astype(np.int64) * dataset.n_items + df["item"].to_numpy().astype(np.int64)
    order = np.argsort(df["timestamp"].to_numpy(), kind="stable")  # time order, ties by row order
    rev = key[order][::-1]
    _, first_in_rev = np.unique(rev, return_index=True)
    return np.sort(order[n - 1 - first_in_rev])


def _ratios(value: Any) -> tuple[float, float, float]:
    try:
        r = tuple(float(x) for x in value)
    except TypeError as exc:
        raise FusebenchError(f"ratios must be three numbers (train, valid, test), got {value!r}") from exc
    if len(r) != 3 or any(not np.isfinite(x) or x < 0 for x in r) or r[0] <= 0 or r[2] <= 0:
        raise FusebenchError(
            f"ratios must be three non-negative numbers (train, valid, test) with train and test > 0, got {value!r}"
        )
    s = sum(r)
    return (r[0] / s, r[1] / s, r[2] / s)


def _per_user_counts(counts: np.ndarray, r_valid: float, r_test: float, min_n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_valid, n_test) per user under the few-interaction rule of the module doc."""
    eligible = counts >= min_n
    lo_t = (eligible & (r_test > 0)).astype(np.int64)
    lo_v = (eligible & (r_valid > 0)).astype(np.int64)
    n_test = np.floor(counts * r_test + 0.5).astype(np.int64)
    n_valid = np.floor(counts * r_valid + 0.5).astype(np.int64)
    n_test = np.where(eligible, np.clip(n_test, lo_t, np.maximum(counts - 1 - lo_v, lo_t)), 0)
    n_valid = np.where(eligible, np.clip(n_valid, lo_v, np.maximum(counts - 1 - n_test, lo_v)), 0)
    return n_valid, n_test


def _assign_per_user(users, primary, tiebreak, n_users, n_valid, n_test) -> np.ndarray:
    """Part label (0/1/2) per row: per user ordered by (primary, tiebreak), the last n_test
    rows are test, the n_valid before them valid, the rest train."""
    idx = np.lexsort((tiebreak, primary, users))
    u_sorted = users[idx]
    counts = np.bincount(users, minlength=n_users)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(len(idx)) - starts[u_sorted]
    n_train = counts - n_valid - n_test
    part_sorted = np.where(rank < n_train[u_sorted], 0, np.where(rank < (n_train + n_valid)[u_sorted], 1, 2))
    part = np.empty(len(idx), dtype=np.int8)
    part[idx] = part_sorted
    return part


def _min_n(params: dict[str, Any], with_valid: bool = True) -> int:
    """min_interactions: a split user keeps >= 1 train, 1 test (and 1 valid when used)."""
    v = params.get("min_interactions", 3)
    low = 3 if with_valid else 2
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < low:
        raise FusebenchError(f"min_interactions must be an integer >= {low}, got {v!r}")
    return int(v)


def split(dataset: MultimodalDataset, protocol: str = "random", seed: int = 0, **params: Any) -> Split:
    """Split ``dataset`` under ``protocol`` (one of ``PROTOCOLS``); see the module doc."""
    if protocol not in PROTOCOLS:
        raise FusebenchError(f"unknown split protocol {protocol!r}; available: {', '.join(PROTOCOLS)}")
    unknown = set(params) - _PARAMS[protocol]
    if unknown:
        allowed = ", ".join(sorted(_PARAMS[protocol])) or "none"
        raise FusebenchError(f"split protocol {protocol!r} does not take {sorted(unknown)} (parameters: {allowed})")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise FusebenchError(f"split seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    timed = has_timestamps(dataset)
    if protocol in ("user-temporal", "global-temporal") and not timed:
        raise FusebenchError(
            f"split protocol {protocol!r} needs timestamps but dataset {dataset.name!r} has none; "
            "use 'random' or 'leave-one-out'"
        )
    if protocol == "given" and dataset.given_split is None:
        raise FusebenchError(
            f"dataset {dataset.name!r} has no given split (no x_label in its source); use another protocol"
        )

    rows = dedup_rows(dataset)
    df = dataset.interactions
    users = df["user"].to_numpy()[rows].astype(np.int64)
    items = df["item"].to_numpy()[rows].astype(np.int64)
    ts = df["timestamp"].to_numpy()[rows]
    rng = np.random.default_rng(seed)
    rand = rng.random(len(rows))
    record: dict[str, Any] = {"n_duplicates_dropped": int(len(df) - len(rows)), "dedup": "keep latest"}

    if protocol in ("random", "user-temporal"):
        r = _ratios(params.get("ratios", DEFAULT_RATIOS))
        min_n = _min_n(params, with_valid=r[1] > 0)
        counts = np.bincount(users, minlength=dataset.n_users)
        n_valid, n_test = _per_user_counts(counts, r[1], r[2], min_n)
        if protocol == "random":
            part = _assign_per_user(users, rand, np.zeros(len(rows)), dataset.n_users, n_valid, n_test)
        else:
            part = _assign_per_user(users, ts, rand, dataset.n_users, n_valid, n_test)
        record.update(
            ratios=list(r), min_interactions=min_n, order="random" if protocol == "random" else "timestamp, ties random"
        )
    elif protocol == "leave-one-out":
        min_n = _min_n(params)
        counts = np.bincount(users, minlength=dataset.n_users)
        ones = (counts >= min_n).astype(np.int64)
        primary = ts if timed else rand
        tiebreak = rand if timed else np.zeros(len(rows))
        part = _assign_per_user(users, primary, tiebreak, dataset.n_users, ones, ones)
        record.update(min_interactions=min_n, order="timestamp, ties random" if timed else "random")
    elif protocol == "global-temporal":
        r = _ratios(params.get("ratios", DEFAULT_RATIOS))
        n = len(rows)
        idx = np.lexsort((rand, ts))
        n_train = int(np.floor(n * r[0] + 0.5))
        n_valid = int(np.floor(n * (r[0] + r[1]) + 0.5)) - n_train
        part = np.empty(n, dtype=np.int8)
        part[idx] = np.where(np.arange(n) < n_train, 0, np.where(np.arange(n) < n_train + n_valid, 1, 2))
        cut = {}
        if n:
            tsorted = ts[idx]
            cut = {
                "valid_from": int(tsorted[min(n_train, n - 1)]),
                "test_from": int(tsorted[min(n_train + n_valid, n - 1)]),
            }
        record.update(ratios=list(r), order="timestamp, ties random", **cut)
    elif protocol == "given":
        part = np.asarray(dataset.given_split, dtype=np.int8)[rows]
        record.update(source="x_label")
    else:  # cold-start-items
        cold_ratio = params.get("cold_ratio", 0.1)
        try:
            cold_ratio = float(cold_ratio)
        except (TypeError, ValueError) as exc:
            raise FusebenchError(f"cold_ratio must be a number in (0, 1), got {cold_ratio!r}") from exc
        if not 0 < cold_ratio < 1:
            raise FusebenchError(f"cold_ratio must be a number in (0, 1), got {cold_ratio!r}")
        active = np.unique(items)
        n_cold = max(2, int(np.floor(len(active) * cold_ratio + 0.5)))
        if n_cold >= len(active):
            raise FusebenchError(
                f"cold-start-items: dataset {dataset.name!r} has {len(active)} items with interactions, "
                f"too few for cold_ratio={cold_ratio}"
            )
        cold = rng.permutation(active)[:n_cold]
        half = n_cold // 2
        where = np.zeros(dataset.n_items, dtype=np.int8)
        where[cold[:half]] = 1
        where[cold[half:]] = 2
        part = where[items]
        record.update(cold_ratio=cold_ratio, n_cold_valid_items=int(half), n_cold_test_items=int(n_cold - half))

    mats = [
        interactions_to_csr(users[part == k], items[part == k], dataset.n_users, dataset.n_items) for k in (0, 1, 2)
    ]
    return Split(train=mats[0], valid=mats[1], test=mats[2], protocol=protocol, params=record, seed=seed)
