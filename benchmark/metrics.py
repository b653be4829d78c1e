"""The Numba metric core: top-K selection and per-user ranking metrics.

Style follows ranx: small ``@njit(cache=True)`` kernels with ``prange`` over users and a thin
Python layer that validates inputs. Unlike ranx (one kernel per metric), the accuracy metrics
share one fused kernel: every metric at every cutoff is a function of the hit positions within
the top-K list, so each user's list is read once and running sums serve every cutoff.

Conventions (RecBole 1.2.1 / MMRec, checked against ``recbole.evaluator.metrics``; see
``docs/metrics.md``): binary relevance, ``R`` = the user's relevant items, ranks start at 1.

- recall@k    = hits@k / |R|
- precision@k = hits@k / k   (also when the list has fewer than k real items)
- hit@k       = 1 if hits@k > 0 else 0
- ndcg@k      = sum over hit ranks r <= k of 1/log2(r+1), divided by the ideal DCG over
                min(|R|, k) positions
- mrr@k       = 1 / rank of the first hit within k, 0 without a hit
- map@k       = sum over hit ranks r <= k of precision@r, divided by min(|R|, k)

Users with no relevant item get NaN for every metric (they are left out of means).

Scratch memory: kernels split users into a few contiguous chunks (a small multiple of the
thread count) and give each chunk its own boolean array of ``n_items`` entries, so membership
tests are one byte load instead of a search.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
import scipy.sparse as sp
from numba import njit, prange

from datasets.errors import FusebenchError

__all__ = [
    "RANK_METRICS",
    "topk_items",
    "rank_metrics",
    "list_metrics",
    "item_counts",
    "coverage_and_gini",
    "novelty",
    "warmup",
]

#: Ranking metrics understood by :func:`rank_metrics`, in kernel order.
RANK_METRICS = ("recall", "precision", "hit", "ndcg", "mrr", "map")
#: The project's headline metric: validation selection, tuning, the leaderboard's ranking.
PRIMARY_METRIC = "recall@20"


# --------------------------------------------------------------------------- helpers


def _n_chunks(n: int) -> int:
    """How many contiguous user chunks the parallel kernels split work into."""
    return max(1, min(n, numba.get_num_threads() * 4))


@njit(cache=True)
def _worse(s_a, i_a, s_b, i_b):
    # a ranks below b: lower score, or the same score and a higher item index
    return s_a < s_b or (s_a == s_b and i_a > i_b)


@njit(cache=True)
def _sift_down(hs, hi, size, pos):
    # min-heap on "worse": the root is the worst of the kept candidates
    s = hs[pos]
    i = hi[pos]
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        right = child + 1
        if right < size and _worse(hs[right], hi[right], hs[child], hi[child]):
            child = right
        if _worse(hs[child], hi[child], s, i):
            hs[pos] = hs[child]
            hi[pos] = hi[child]
            pos = child
        else:
            break
    hs[pos] = s
    hi[pos] = i


@njit(cache=True)
def _sift_up(hs, hi, pos):
    s = hs[pos]
    i = hi[pos]
    while pos > 0:
        parent = (pos - 1) // 2
        if _worse(s, i, hs[parent], hi[parent]):
            hs[pos] = hs[parent]
            hi[pos] = hi[parent]
            pos = parent
        else:
            break
    hs[pos] = s
    hi[pos] = i


# --------------------------------------------------------------------------- top-K


@njit(cache=True, parallel=True)
def _topk_kernel(scores, k, ex_indptr, ex_indices, has_ex, out, n_chunks):
    n, m = scores.shape
    chunk = (n + n_chunks - 1) // n_chunks
    neg_inf = -np.inf
    for c in prange(n_chunks):
        lo = c * chunk
        hi_row = min(n, lo + chunk)
        mask = np.zeros(m, dtype=np.bool_)
        hs = np.empty(max(k, 1), dtype=np.float64)
        hi = np.empty(max(k, 1), dtype=np.int64)
        for r in range(lo, hi_row):
            if has_ex:
                for t in range(ex_indptr[r], ex_indptr[r + 1]):
                    mask[ex_indices[t]] = True
            size = 0
            for j in range(m):
                if mask[j]:
                    continue
                s = np.float64(scores[r, j])
                if s != s:  # NaN ranks like -inf
                    s = neg_inf
                if size < k:
                    hs[size] = s
                    hi[size] = j
                    _sift_up(hs, hi, size)
                    size += 1
                elif s > hs[0]:
                    # items arrive in increasing index order, so an equal score never wins
                    hs[0] = s
                    hi[0] = j
                    _sift_down(hs, hi, size, 0)
            # pop the worst repeatedly and fill the output from the back
            for pos in range(size - 1, -1, -1):
                out[r, pos] = hi[0]
                hs[0] = hs[pos]
                hi[0] = hi[pos]
                _sift_down(hs, hi, pos, 0)
            for pos in range(size, k):
                out[r, pos] = -1
            if has_ex:
                for t in range(ex_indptr[r], ex_indptr[r + 1]):
                    mask[ex_indices[t]] = False


def _as_csr(x: sp.spmatrix | sp.sparray, name: str) -> sp.csr_matrix:
    if not sp.issparse(x):
        raise TypeError(f"{name} must be a scipy.sparse CSR matrix, got {type(x).__name__}")
    csr = x.tocsr() if x.format != "csr" else x
    if not csr.has_canonical_format:
        csr = csr.copy()
        csr.sum_duplicates()  # also sorts indices
    if csr.nnz and not np.all(csr.data != 0):
        csr = csr.copy()
        csr.eliminate_zeros()
    return csr


def topk_items(scores: np.ndarray, k: int, exclude: sp.csr_matrix | None = None) -> np.ndarray:
    """Indices of the ``k`` highest scores of each row, best first.

    Args:
        scores: ``(n, n_items)`` float32/float64 scores, higher is better. Not modified.
        k: list length (>= 0). ``k`` may exceed ``n_items``.
        exclude: optional CSR with exactly ``n`` rows and ``n_items`` columns; the stored
            entries of row ``i`` are items masked out of row ``i`` (e.g. training items).
            Explicitly stored zeros count as masked too.

    Returns:
        int64 ``(n, k)``. Ties break by the lower item index. NaN scores rank like ``-inf``
        (last, but still candidates). Rows with fewer than ``k`` non-excluded items are
        padded with ``-1``.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (n, n_items), got shape {scores.shape}")
    if scores.dtype not in (np.float32, np.float64):
        if not (np.issubdtype(scores.dtype, np.number) or scores.dtype == np.bool_):
            raise TypeError(f"scores must be numeric, got dtype {scores.dtype}")
        scores = scores.astype(np.float64)
    k = int(k)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    n, m = scores.shape
    out = np.empty((n, k), dtype=np.int64)
    if n == 0 or k == 0:
        return out
    if exclude is not None:
        if not sp.issparse(exclude):
            raise TypeError("exclude must be a scipy.sparse CSR matrix or None")
        if exclude.shape != (n, m):
            raise ValueError(f"exclude has shape {exclude.shape}, expected {(n, m)} (one row per score row)")
        exclude = exclude.tocsr() if exclude.format != "csr" else exclude
        ex_indptr, ex_indices, has_ex = exclude.indptr, exclude.indices, True
    else:
        ex_indptr = np.zeros(n + 1, dtype=np.int32)
        ex_indices = np.zeros(0, dtype=np.int32)
        has_ex = False
    _topk_kernel(scores, k, ex_indptr, ex_indices, has_ex, out, _n_chunks(n))
    return out


# --------------------------------------------------------------------------- rank metrics


@njit(cache=True, parallel=True)
def _rank_kernel(topk, indptr, indices, n_items, ks, slots, out, bad, n_chunks):
    """Fused recall/precision/hit/ndcg/mrr/map at every cutoff in ``ks`` (ascending).

    ``slots[m]`` is the row of ``out`` for metric m (RANK_METRICS order) or -1 if not wanted;
    ``out`` has shape (n_wanted, len(ks), n_users).

    Per user: stamp the relevant items in a per-chunk uint8 table (slot ``item + 1``; slot 0
    takes the -1 padding, slot ``n_items + 1`` out-of-range ids, neither is ever stamped), scan
    the top-K row once without branches collecting hit positions, then walk the few hits once
    across the ascending cutoffs with running sums.
    """
    n, kmax = topk.shape
    nk = ks.shape[0]
    disc = np.empty(kmax, dtype=np.float64)
    inv_idcg = np.empty(kmax, dtype=np.float64)
    inv_rank = np.empty(kmax, dtype=np.float64)
    acc = 0.0
    for j in range(kmax):
        disc[j] = 1.0 / np.log2(j + 2.0)
        acc += disc[j]
        inv_idcg[j] = 1.0 / acc
        inv_rank[j] = 1.0 / (j + 1.0)
    s_rec, s_pre, s_hit, s_ndcg, s_mrr, s_map = (slots[0], slots[1], slots[2], slots[3], slots[4], slots[5])
    n_slots = out.shape[0]
    lim = np.uint64(n_items + 1)
    chunk = (n + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        lo = c * chunk
        hi_u = min(n, lo + chunk)
        stamp = np.zeros(n_items + 2, dtype=np.uint8)
        hit_pos = np.empty(kmax + 1, dtype=np.int64)
        cur = 0
        for u in range(lo, hi_u):
            a = indptr[u]
            b = indptr[u + 1]
            n_rel = b - a
            if n_rel == 0:
                for ci in range(nk):
                    for s in range(n_slots):
                        out[s, ci, u] = np.nan
                continue
            if cur == 255:
                stamp[:] = 0
                cur = 0
            cur += 1
            cu8 = np.uint8(cur)
            for t in range(a, b):
                stamp[indices[t] + 1] = cu8
            row = topk[u]
            n_hit = 0
            any_bad = False
            for j in range(kmax):
                x = np.uint64(row[j] + 1)
                any_bad |= x >= lim
                x = min(x, lim)
                hit_pos[n_hit] = j
                n_hit += stamp[x] == cu8
                stamp[x] = 0  # a repeated item counts once (at its first position)
            if any_bad:
                bad[u] = True
            hit_pos[n_hit] = kmax  # sentinel
            h = 0
            dcg = 0.0
            sum_prec = 0.0
            rr = 0.0 if n_hit == 0 else inv_rank[hit_pos[0]]
            inv_rel = 1.0 / n_rel
            for ci in range(nk):
                kk = ks[ci]
                while hit_pos[h] < kk:
                    p = hit_pos[h]
                    h += 1
                    dcg += disc[p]
                    sum_prec += h * inv_rank[p]
                m = n_rel if n_rel < kk else kk
                if s_rec >= 0:
                    out[s_rec, ci, u] = h * inv_rel
                if s_pre >= 0:
                    out[s_pre, ci, u] = h * inv_rank[kk - 1]
                if s_hit >= 0:
                    out[s_hit, ci, u] = 1.0 if h > 0 else 0.0
                if s_ndcg >= 0:
                    out[s_ndcg, ci, u] = dcg * inv_idcg[m - 1]
                if s_mrr >= 0:
                    out[s_mrr, ci, u] = rr if h > 0 else 0.0
                if s_map >= 0:
                    out[s_map, ci, u] = sum_prec * inv_rank[m - 1]


def _check_topk(topk: np.ndarray) -> np.ndarray:
    topk = np.asarray(topk)
    if topk.ndim != 2:
        raise ValueError(f"topk must be 2-D (n_users, k), got shape {topk.shape}")
    if not np.issubdtype(topk.dtype, np.integer):
        raise TypeError(f"topk must hold integer item ids, got dtype {topk.dtype}")
    return np.ascontiguousarray(topk, dtype=np.int64)


def _check_ks(ks: Sequence[int] | int, kmax: int) -> list[int]:
    if isinstance(ks, (int, np.integer)):
        ks = [ks]
    ks = [int(k) for k in ks]
    if not ks:
        raise ValueError("ks must name at least one cutoff")
    for k in ks:
        if k < 1:
            raise ValueError(f"every cutoff must be >= 1, got {k}")
        if k > kmax:
            raise ValueError(f"cutoff {k} exceeds the top-K list length {kmax}; compute top-{k} or more first")
    return ks


def rank_metrics(
    topk: np.ndarray,
    truth: sp.csr_matrix,
    metrics: Sequence[str] = RANK_METRICS,
    ks: Sequence[int] = (10, 20),
) -> dict[str, np.ndarray]:
    """Per-user ranking metrics from top-K lists and a relevance CSR.

    Args:
        topk: int ``(n, K)`` item ids best first, ``-1`` for padding (never a hit).
        truth: CSR ``(n, n_items)``; the stored non-zero entries of row ``i`` are the items
            relevant to row ``i`` of ``topk`` (binary relevance).
        metrics: names from :data:`RANK_METRICS`.
        ks: cutoffs, each ``<= K``.

    Returns:
        ``{"<metric>@<k>": float64 array (n,)}``; NaN for rows without a relevant item. An item
        repeated within one list counts as a hit once.
    """
    if isinstance(metrics, str):
        metrics = [metrics]
    metrics = list(metrics)
    unknown = [m for m in metrics if m not in RANK_METRICS]
    if unknown:
        raise FusebenchError(f"unknown metric(s) {', '.join(map(repr, unknown))}; known: {', '.join(RANK_METRICS)}")
    topk = _check_topk(topk)
    ks = _check_ks(ks, topk.shape[1])
    truth = _as_csr(truth, "truth")
    n = topk.shape[0]
    if truth.shape[0] != n:
        raise ValueError(f"truth has {truth.shape[0]} rows but topk has {n}")
    wanted = [m for m in RANK_METRICS if m in metrics]
    slots = np.full(len(RANK_METRICS), -1, dtype=np.int64)
    for s, m in enumerate(wanted):
        slots[RANK_METRICS.index(m)] = s
    uks = np.array(sorted(set(ks)), dtype=np.int64)
    out = np.empty((len(wanted), len(uks), n), dtype=np.float64)
    bad = np.zeros(n, dtype=np.bool_)
    if n and wanted:
        _rank_kernel(topk, truth.indptr, truth.indices, truth.shape[1], uks, slots, out, bad, _n_chunks(n))
        if bad.any():
            raise ValueError(
                f"topk holds item ids outside [-1, {truth.shape[1]}) (first bad row: {int(np.argmax(bad))})"
            )
    res: dict[str, np.ndarray] = {}
    for m in metrics:
        for k in ks:
            res[f"{m}@{k}"] = out[slots[RANK_METRICS.index(m)], int(np.searchsorted(uks, k))]
    return res


# --------------------------------------------------------------------------- list metrics


@njit(cache=True, parallel=True)
def _count_kernel(topk, ks, n_items, counts, bad, n_chunks):
    """counts[ci, i] = how often item i appears within the first ks[ci] positions."""
    n, _ = topk.shape
    nk = ks.shape[0]
    chunk = (n + n_chunks - 1) // n_chunks
    part = np.zeros((n_chunks, nk, n_items), dtype=np.int64)
    for c in prange(n_chunks):
        lo = c * chunk
        hi_u = min(n, lo + chunk)
        for u in range(lo, hi_u):
            j = 0
            for ci in range(nk):
                while j < ks[ci]:
                    it = topk[u, j]
                    if it >= 0 and it < n_items:
                        part[c, ci, it] += 1
                    elif it != -1:
                        bad[u] = True
                    j += 1
    for ci in range(nk):
        for i in range(n_items):
            tot = 0
            for c in range(n_chunks):
                tot += part[c, ci, i]
            counts[ci, i] += tot
    # make them cumulative over cutoffs (position segments were counted separately)
    for ci in range(1, nk):
        for i in range(n_items):
            counts[ci, i] += counts[ci - 1, i]


@njit(cache=True, parallel=True)
def _novelty_kernel(topk, ks, info, out):
    n, _ = topk.shape
    nk = ks.shape[0]
    n_items = info.shape[0]
    for u in prange(n):
        tot = 0.0
        cnt = 0
        j = 0
        for ci in range(nk):
            while j < ks[ci]:
                it = topk[u, j]
                if it >= 0 and it < n_items:
                    tot += info[it]
                    cnt += 1
                j += 1
            out[ci, u] = tot / cnt if cnt > 0 else np.nan


def item_counts(topk: np.ndarray, ks: Sequence[int], n_items: int) -> np.ndarray:
    """int64 ``(len(ks), n_items)``: how often each item appears in the first k positions."""
    topk = _check_topk(topk)
    ks = _check_ks(ks, topk.shape[1])
    order = np.argsort(ks, kind="stable")
    sks = np.asarray(ks, dtype=np.int64)[order]
    counts = np.zeros((len(ks), int(n_items)), dtype=np.int64)
    bad = np.zeros(topk.shape[0], dtype=np.bool_)
    if topk.shape[0]:
        # segment counts: pass segment ends ascending; the kernel accumulates cumulatively
        _count_kernel(topk, sks, int(n_items), counts, bad, _n_chunks(topk.shape[0]))
        if bad.any():
            raise ValueError(f"topk holds item ids outside [-1, {n_items})")
    result = np.empty_like(counts)
    result[order] = counts
    return result


def coverage_and_gini(counts: np.ndarray) -> tuple[float, float]:
    """Item coverage and Gini index from per-item recommendation counts (one cutoff).

    coverage = #items recommended at least once / n_items (RecBole ``ItemCoverage``).
    gini = sum_i (2i - n - 1) c_(i) / (n * sum c), with c sorted ascending over *all* n items,
    never-recommended ones included as zeros (RecBole ``GiniIndex``). NaN when nothing was
    recommended.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = counts.shape[0]
    if n == 0:
        return float("nan"), float("nan")
    total = int(counts.sum())
    coverage = float(np.count_nonzero(counts)) / n
    if total == 0:
        return coverage, float("nan")
    c = np.sort(counts).astype(np.float64)
    idx = np.arange(1, n + 1, dtype=np.float64)
    gini = float(np.sum((2.0 * idx - n - 1.0) * c) / total / n)
    return coverage, gini


def _self_information(item_popularity: np.ndarray, n_users: int, n_items: int) -> np.ndarray:
    pop = np.asarray(item_popularity, dtype=np.float64)
    if pop.shape != (n_items,):
        raise ValueError(f"item_popularity must have shape ({n_items},), got {pop.shape}")
    if n_users < 1:
        raise ValueError(f"n_users must be >= 1, got {n_users}")
    if not np.all(np.isfinite(pop)) or (pop < 0).any():
        raise ValueError("item_popularity must hold finite non-negative counts")
    if (pop > n_users).any():
        raise ValueError("item_popularity counts exceed n_users; it must count distinct training users per item")
    p = np.where(pop > 0, pop, 1.0) / n_users
    return -np.log2(p)


def novelty(topk: np.ndarray, ks: Sequence[int], item_popularity: np.ndarray, n_users: int) -> dict[str, np.ndarray]:
    """Per-user ``novelty@k``: mean of ``-log2 p(i)`` over the (non-padding) items in the top-k.

    ``p(i) = item_popularity[i] / n_users``, where ``item_popularity`` counts the training users
    of each item; an item with count 0 uses ``p = 1/n_users`` (as if seen once), so novelty stays
    finite. A list with no real item gets NaN.
    """
    topk = _check_topk(topk)
    ks = _check_ks(ks, topk.shape[1])
    info = _self_information(item_popularity, int(n_users), len(np.asarray(item_popularity)))
    if topk.size and (topk.max() >= len(info) or topk.min() < -1):
        raise ValueError(f"topk holds item ids outside [-1, {len(info)})")
    uks = np.array(sorted(set(ks)), dtype=np.int64)
    out = np.empty((len(uks), topk.shape[0]), dtype=np.float64)
    if topk.shape[0]:
        _novelty_kernel(topk, uks, info, out)
    return {f"novelty@{k}": out[int(np.searchsorted(uks, k))] for k in ks}


def list_metrics(
    topk: np.ndarray,
    ks: Sequence[int],
    n_items: int,
    item_popularity: np.ndarray | None = None,
    n_users: int | None = None,
) -> dict[str, float | np.ndarray]:
    """Beyond-accuracy metrics of a set of top-K lists.

    Returns ``item_coverage@k`` and ``gini@k`` (floats over all lists, padding ignored) and, if
    ``item_popularity`` is given, per-user ``novelty@k`` arrays (see :func:`novelty`).
    ``n_users`` is the number of training users behind ``item_popularity``; it defaults to the
    number of lists, ``topk.shape[0]``.
    """
    topk = _check_topk(topk)
    ks = _check_ks(ks, topk.shape[1])
    counts = item_counts(topk, ks, n_items)
    res: dict[str, float | np.ndarray] = {}
    for ci, k in enumerate(ks):
        cov, gini = coverage_and_gini(counts[ci])
        res[f"item_coverage@{k}"] = cov
        res[f"gini@{k}"] = gini
    if item_popularity is not None:
        if np.shape(item_popularity) != (int(n_items),):
            raise ValueError(f"item_popularity must have shape ({n_items},), got {np.shape(item_popularity)}")
        res.update(novelty(topk, ks, item_popularity, topk.shape[0] if n_users is None else n_users))
    return res


# --------------------------------------------------------------------------- warmup


def warmup() -> None:
    """Compile (or load from the on-disk cache) every kernel on tiny inputs."""
    rng = np.random.default_rng(0)
    indices = np.array([0, 2, 1], dtype=np.int32)
    indptr = np.array([0, 2, 3, 3], dtype=np.int32)
    truth = sp.csr_matrix((np.ones(3, dtype=np.float32), indices, indptr), shape=(3, 5))
    for dtype in (np.float32, np.float64):
        s = rng.random((3, 5)).astype(dtype)
        topk_items(s, 2)
        top = topk_items(s, 3, exclude=truth)
    rank_metrics(top, truth, RANK_METRICS, (1, 3))
    list_metrics(top, (1, 3), 5, np.array([1, 0, 2, 3, 1]), n_users=3)
