"""Full-ranking evaluation of a scoring function with bounded memory.

``evaluate(model.score, split.test, exclude=split.train + split.valid, ...)`` scores the users
with at least one relevant item in batches, masks the excluded items, takes the top-max(ks)
items over *all* items (no sampling) and turns them into per-user metric arrays. Peak memory is
one ``batch_size x n_items`` score block plus per-user outputs, never ``users x items``.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from benchmark import metrics as M
from datasets.errors import FusebenchError

__all__ = ["EvalResult", "evaluate", "mean_metrics", "group_truths", "group_recall"]

DEFAULT_METRICS = M.RANK_METRICS  # every metric the kernels compute


@dataclass
class EvalResult:
    """What :func:`evaluate` returns.

    ``per_user``: metric name -> float64 array of length ``n_users`` (NaN where a user was not
    evaluated: no relevant item, or left out by ``users``). ``summary``: NaN-mean of every
    per-user metric plus the list-level ``item_coverage@k`` and ``gini@k``.
    """

    per_user: dict[str, np.ndarray]
    summary: dict[str, float]
    n_users_evaluated: int
    seconds: float
    evaluated_users: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def mean_metrics(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    """NaN-mean of each per-user array (NaN, without a warning, when all values are NaN)."""
    out = {}
    for name, values in per_user.items():
        v = np.asarray(values, dtype=np.float64)
        ok = ~np.isnan(v)
        out[name] = float(v[ok].mean()) if ok.any() else float("nan")
    return out


def _csr(x, name: str, shape: tuple[int, int] | None = None) -> sp.csr_matrix:
    if not sp.issparse(x):
        raise FusebenchError(f"{name} must be a scipy.sparse matrix, got {type(x).__name__}")
    x = x.tocsr() if x.format != "csr" else x
    if shape is not None and x.shape != shape:
        raise FusebenchError(f"{name} has shape {x.shape}, expected {shape}")
    return x


def keep_torch_threads(fn):
    """Numba's OpenMP layer, started by the first parallel metric kernel, resets torch's
    intra-op thread count; on a loaded machine a model then trains up to 25x slower. Put it
    back after every evaluation (torch matters only when a torch model has imported it)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        torch = sys.modules.get("torch")
        before = torch.get_num_threads() if torch is not None else None
        try:
            return fn(*args, **kwargs)
        finally:
            if torch is not None and torch.get_num_threads() != before:
                torch.set_num_threads(before)

    return wrapper


@keep_torch_threads
def evaluate(
    score_fn: Callable[[np.ndarray], np.ndarray],
    truth: sp.csr_matrix,
    exclude: sp.csr_matrix | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 1024,
    item_popularity: np.ndarray | None = None,
    users: np.ndarray | None = None,
    item_groups: dict[str, np.ndarray] | None = None,
) -> EvalResult:
    """Evaluate ``score_fn`` by full ranking against ``truth``.

    Args:
        score_fn: ``score_fn(users int64 array) -> (len(users), n_items)`` scores, higher is
            better (a model's ``score``). NaN scores rank last (like ``-inf``).
        truth: CSR ``(n_users, n_items)`` of relevant items (e.g. the test split).
        exclude: CSR of the same shape whose items are masked from each user's ranking (train
            items; train + valid at test time). ``None`` masks nothing.
        metrics: ranking metric names (see :data:`benchmark.metrics.RANK_METRICS`).
        ks: cutoffs; the top-``max(ks)`` list is computed once.
        batch_size: users scored per call of ``score_fn``.
        item_popularity: optional per-item count of training users; adds per-user
            ``novelty@k`` (with ``p(i) = pop[i] / n_users``, ``n_users = truth.shape[0]``).
        users: optional user ids to restrict the evaluation to (still only those with a
            relevant item are scored).
        item_groups: optional ``{name: bool array (n_items,)}``; adds per-user
            ``recall@k|name``: recall of the same lists against the user's relevant items in the
            group only (NaN for a user with none there), e.g. head and tail items.
    """
    t0 = time.perf_counter()
    truth = _csr(truth, "truth")
    n_users, n_items = truth.shape
    if exclude is not None:
        exclude = _csr(exclude, "exclude", (n_users, n_items))
    if isinstance(metrics, str):
        metrics = [metrics]
    metrics = list(metrics)
    unknown = [m for m in metrics if m not in M.RANK_METRICS]
    if unknown:
        raise FusebenchError(f"unknown metric(s) {', '.join(map(repr, unknown))}; known: {', '.join(M.RANK_METRICS)}")
    if isinstance(ks, (int, np.integer)):
        ks = [ks]
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise FusebenchError(f"ks must be positive cutoffs, got {ks}")
    kmax = max(ks)
    batch_size = int(batch_size)
    if batch_size < 1:
        raise FusebenchError(f"batch_size must be >= 1, got {batch_size}")
    info = None
    if item_popularity is not None:
        try:
            info = M._self_information(item_popularity, n_users, n_items)
        except ValueError as e:
            raise FusebenchError(str(e)) from None

    has_truth = np.diff(truth.indptr) > 0
    if truth.nnz and not np.all(truth.data != 0):
        # explicit zeros are not relevant items
        truth = truth.copy()
        truth.eliminate_zeros()
        has_truth = np.diff(truth.indptr) > 0
    if users is None:
        eval_users = np.flatnonzero(has_truth).astype(np.int64)
    else:
        users = np.unique(np.asarray(users, dtype=np.int64).ravel())
        if users.size and (users[0] < 0 or users[-1] >= n_users):
            raise FusebenchError(f"users must lie in [0, {n_users})")
        eval_users = users[has_truth[users]]

    per_user = {f"{m}@{k}": np.full(n_users, np.nan, dtype=np.float64) for m in metrics for k in ks}
    if info is not None:
        per_user.update({f"novelty@{k}": np.full(n_users, np.nan) for k in ks})
    groups = group_truths(truth, item_groups)
    per_user.update({f"recall@{k}|{name}": np.full(n_users, np.nan) for name in groups for k in ks})
    counts = np.zeros((len(ks), n_items), dtype=np.int64)

    for lo in range(0, len(eval_users), batch_size):
        batch = eval_users[lo : lo + batch_size]
        scores = score_fn(batch)
        scores = _check_scores(scores, len(batch), n_items)
        ex = exclude[batch] if exclude is not None else None
        topk = M.topk_items(scores, kmax, ex)
        del scores
        res = M.rank_metrics(topk, truth[batch], metrics, ks)
        for name, values in res.items():
            per_user[name][batch] = values
        for name, values in group_recall(topk, groups, batch, ks).items():
            per_user[name][batch] = values
        counts += M.item_counts(topk, ks, n_items)
        if info is not None:
            nov = M.novelty(topk, ks, item_popularity, n_users)
            for name, values in nov.items():
                per_user[name][batch] = values

    summary = mean_metrics(per_user)
    for ci, k in enumerate(ks):
        if len(eval_users):
            cov, gini = M.coverage_and_gini(counts[ci])
        else:
            cov, gini = float("nan"), float("nan")
        summary[f"item_coverage@{k}"] = cov
        summary[f"gini@{k}"] = gini
    return EvalResult(
        per_user=per_user,
        summary=summary,
        n_users_evaluated=int(len(eval_users)),
        seconds=time.perf_counter() - t0,
        evaluated_users=eval_users,
    )


def group_truths(truth: sp.csr_matrix, item_groups: dict[str, np.ndarray] | None) -> dict[str, sp.csr_matrix]:
    """Each group's relevant items: `truth` restricted to the group's items (`item_groups`)."""
    out = {}
    for name, mask in (item_groups or {}).items():
        mask = np.asarray(mask, dtype=bool).ravel()
        if mask.shape != (truth.shape[1],):
            raise FusebenchError(f"item group {name!r} has {mask.size} entries, expected {truth.shape[1]}")
        g = truth.multiply(mask[None, :].astype(np.float64)).tocsr()
        g.eliminate_zeros()
        out[name] = g
    return out


def group_recall(topk: np.ndarray, groups: dict[str, sp.csr_matrix], rows: np.ndarray, ks) -> dict[str, np.ndarray]:
    """Per-user `recall@k|group` of the lists `topk` (one per user in `rows`) against each group's
    relevant items (NaN for a user with none in the group)."""
    out = {}
    for group, g in groups.items():
        for name, values in M.rank_metrics(topk, g[rows], ("recall",), ks).items():
            out[f"{name}|{group}"] = values
    return out


def _check_scores(scores, n_rows: int, n_items: int) -> np.ndarray:
    scores = np.asarray(scores)
    if scores.shape != (n_rows, n_items):
        raise FusebenchError(
            f"score_fn returned shape {scores.shape} for {n_rows} users; "
            f"expected ({n_rows}, {n_items}) = (len(users), n_items)"
        )
    if scores.dtype not in (np.float32, np.float64):
        if not (
            np.issubdtype(scores.dtype, np.integer)
            or np.issubdtype(scores.dtype, np.floating)
            or scores.dtype == np.bool_
        ):
            raise FusebenchError(f"score_fn returned non-numeric dtype {scores.dtype}")
        scores = scores.astype(np.float32)
    return scores
