"""Speed check of the metric core: ``python -m benchmark perf metrics``.

Times, on one synthetic input and in one process (best of ``--repeat``):

(a) ``benchmark.metrics.rank_metrics`` (after ``warmup()``; compile time measured separately in
    fresh subprocesses, once with an empty Numba cache = real compile, once with the cache warm),
(b) RecBole's path: the ``rec.topk`` hit matrix + ``pos_len`` column its collector builds
    (batched, as the collector does), then its metric classes' ``calculate_metric``,
(c) ranx, including the conversion of the arrays into ``Qrels``/``Run``,
(d) a plain vectorised numpy implementation (dense boolean lookup per batch + cumsums),
(e) the floor: reading the top-K matrix once.

RecBole and ranx are imported lazily and skipped with a note when absent.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import scipy.sparse as sp
from numba import njit, prange

from benchmark import metrics as M
from datasets.errors import FusebenchError

KS = (10, 20, 50, 100)


# --------------------------------------------------------------------------- synthetic input


@njit(cache=True)
def _synth_kernel(n_users, n_items, k, seed, overlap, max_rel):
    np.random.seed(seed)
    topk = np.empty((n_users, k), dtype=np.int64)
    sizes = np.empty(n_users, dtype=np.int64)
    rel = np.empty(n_users * max_rel, dtype=np.int32)
    mark = np.zeros(n_items, dtype=np.bool_)
    pos = 0
    for u in range(n_users):
        # k distinct items in random order (rejection sampling; k << n_items)
        for j in range(k):
            while True:
                it = np.random.randint(0, n_items)
                if not mark[it]:
                    break
            mark[it] = True
            topk[u, j] = it
        n_rel = np.random.randint(1, max_rel + 1)
        if n_rel > n_items:
            n_rel = n_items
        start = pos
        for _ in range(n_rel):
            if np.random.random() < overlap:
                # an item from the ranking (a hit), if one is left
                it = topk[u, np.random.randint(0, k)]
                if mark[it]:
                    mark[it] = False  # mark now means "in topk and not yet relevant"
                    rel[pos] = it
                    pos += 1
                    continue
            # an item outside the ranking and not yet relevant
            for _tries in range(64):
                it = np.random.randint(0, n_items)
                in_rel = False
                for t in range(start, pos):
                    if rel[t] == it:
                        in_rel = True
                        break
                if not in_rel and not mark[it]:
                    rel[pos] = it
                    pos += 1
                    break
        sizes[u] = pos - start
        for j in range(k):
            mark[topk[u, j]] = False
    return topk, sizes, rel[:pos]


def synthetic(
    n_users: int, n_items: int, k: int, seed: int = 0, overlap: float = 0.3, max_rel: int = 50
) -> tuple[np.ndarray, sp.csr_matrix]:
    """Random top-K lists (distinct items per row) and a truth CSR with 1..max_rel items per
    user, each drawn from the user's top-K with probability ``overlap``."""
    if k > n_items:
        raise ValueError("k must not exceed n_items")
    topk, sizes, rel = _synth_kernel(n_users, n_items, k, seed, overlap, max_rel)
    indptr = np.zeros(n_users + 1, dtype=np.int32)
    np.cumsum(sizes, out=indptr[1:])
    truth = sp.csr_matrix((np.ones(len(rel), dtype=np.float32), rel, indptr), shape=(n_users, n_items))
    truth.sort_indices()
    return topk, truth


# --------------------------------------------------------------------------- RecBole


class _NumpyCompat(types.ModuleType):
    """numpy with the aliases RecBole 1.2.1 still uses (``np.float``, removed in numpy 1.24)."""

    float = float
    int = int
    bool = bool

    def __getattr__(self, name):
        return getattr(np, name)


@contextlib.contextmanager
def recbole_numpy_compat() -> Iterator[types.ModuleType]:
    """Let RecBole's metric classes run on numpy >= 1.24 without touching numpy globally:
    swaps the ``np`` name inside ``recbole.evaluator.metrics`` for a shim while active.
    Yields the ``recbole.evaluator.metrics`` module."""
    import recbole.evaluator.metrics as rm

    old = rm.np
    rm.np = _NumpyCompat("numpy_compat")
    try:
        yield rm
    finally:
        rm.np = old


def recbole_topk_tensor(topk: np.ndarray, truth: sp.csr_matrix, batch_size: int = 4096):
    """The ``rec.topk`` tensor RecBole's collector builds: per batch a dense int ``pos_matrix``
    (users x items), the hit matrix gathered at the top-K ids, and ``pos_len`` as last column;
    batches concatenated. ``-1`` padding becomes a non-hit."""
    import torch

    n, k = topk.shape
    parts = []
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        t = truth[lo:hi]
        pos_u = torch.from_numpy(np.repeat(np.arange(hi - lo), np.diff(t.indptr)))
        pos_i = torch.from_numpy(t.indices.astype(np.int64))
        idx = torch.from_numpy(topk[lo:hi])
        pos_matrix = torch.zeros((hi - lo, t.shape[1]), dtype=torch.int)
        pos_matrix[pos_u, pos_i] = 1
        pos_len = pos_matrix.sum(dim=1, keepdim=True)
        pos_idx = torch.gather(pos_matrix, dim=1, index=idx.clamp(min=0))
        pos_idx = pos_idx * (idx >= 0)
        parts.append(torch.cat((pos_idx, pos_len), dim=1))
    return torch.cat(parts, dim=0)


RECBOLE_CLASSES = {
    "recall": "Recall",
    "precision": "Precision",
    "hit": "Hit",
    "ndcg": "NDCG",
    "mrr": "MRR",
    "map": "MAP",
}


def recbole_means(rec_topk, ks: Sequence[int]) -> dict[str, float]:
    """Call RecBole's metric classes on a ``rec.topk`` tensor; returns ``{"ndcg@10": mean}``."""
    from recbole.evaluator.collector import DataStruct

    ds = DataStruct()
    ds.set("rec.topk", rec_topk)
    config = {"topk": list(ks), "metric_decimal_place": 20}
    out = {}
    with recbole_numpy_compat() as rm:
        for name, cls in RECBOLE_CLASSES.items():
            res = getattr(rm, cls)(config).calculate_metric(ds)
            for k in ks:
                out[f"{name}@{k}"] = float(res[f"{name}@{k}"])
    return out


def recbole_per_user(hit: np.ndarray, pos_len: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-user values from RecBole's ``metric_info`` (columns k-1) for a boolean hit matrix."""
    config = {"topk": list(ks), "metric_decimal_place": 20}
    out = {}
    with recbole_numpy_compat() as rm:
        for name, cls in RECBOLE_CLASSES.items():
            obj = getattr(rm, cls)(config)
            if name in ("recall", "ndcg", "map"):
                mat = obj.metric_info(hit, pos_len)
            else:
                mat = obj.metric_info(hit)
            for k in ks:
                out[f"{name}@{k}"] = np.asarray(mat[:, k - 1], dtype=np.float64)
    return out


# --------------------------------------------------------------------------- numpy reference


def numpy_rank_metrics(
    topk: np.ndarray, truth: sp.csr_matrix, ks: Sequence[int], batch_size: int = 4096
) -> dict[str, np.ndarray]:
    """The six metrics in plain vectorised numpy (dense boolean lookup per batch + cumsums)."""
    n, kmax = topk.shape
    n_items = truth.shape[1]
    ranks = np.arange(1, kmax + 1, dtype=np.float64)
    disc = 1.0 / np.log2(ranks + 1.0)
    idcg = np.cumsum(disc)
    out = {f"{m}@{k}": np.empty(n) for m in M.RANK_METRICS for k in ks}
    n_rel_all = np.diff(truth.indptr).astype(np.float64)
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        t = truth[lo:hi]
        lookup = np.zeros((hi - lo, n_items), dtype=np.bool_)
        lookup[np.repeat(np.arange(hi - lo), np.diff(t.indptr)), t.indices] = True
        tk = topk[lo:hi]
        valid = tk >= 0
        hits = np.take_along_axis(lookup, np.where(valid, tk, 0), axis=1) & valid
        cs = np.cumsum(hits, axis=1)
        dcg = np.cumsum(hits * disc, axis=1)
        ap = np.cumsum(hits * (cs / ranks), axis=1)
        any_hit = hits.any(axis=1)
        first = np.where(any_hit, 1.0 / (hits.argmax(axis=1) + 1.0), 0.0)
        n_rel = n_rel_all[lo:hi]
        with np.errstate(divide="ignore", invalid="ignore"):
            for k in ks:
                h = cs[:, k - 1]
                m = np.minimum(n_rel, k).astype(np.int64)
                none = n_rel == 0
                out[f"recall@{k}"][lo:hi] = np.where(none, np.nan, h / n_rel)
                out[f"precision@{k}"][lo:hi] = np.where(none, np.nan, h / k)
                out[f"hit@{k}"][lo:hi] = np.where(none, np.nan, h > 0)
                out[f"ndcg@{k}"][lo:hi] = np.where(none, np.nan, dcg[:, k - 1] / idcg[np.maximum(m, 1) - 1])
                first_k = np.where(hits[:, :k].any(axis=1), first, 0.0)
                out[f"mrr@{k}"][lo:hi] = np.where(none, np.nan, first_k)
                out[f"map@{k}"][lo:hi] = np.where(none, np.nan, ap[:, k - 1] / m)
    return out


# --------------------------------------------------------------------------- floor


@njit(cache=True, parallel=True)
def _read_once(topk):
    n, k = topk.shape
    acc = 0
    for u in prange(n):
        s = 0
        for j in range(k):
            s += topk[u, j]
        acc += s
    return acc


# --------------------------------------------------------------------------- timing


def _best(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best = float("inf")
    res = None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        res = fn()
        best = min(best, time.perf_counter() - t0)
    return best, res


_WARMUP_SNIPPET = (
    "import time; t=time.perf_counter(); import benchmark.metrics as m; t1=time.perf_counter();"
    "m.warmup(); print(time.perf_counter()-t1)"
)


def _warmup_subprocess(cache_dir: str | None) -> float | None:
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    try:
        r = subprocess.run(
            [sys.executable, "-c", _WARMUP_SNIPPET],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        return float(r.stdout.strip().splitlines()[-1])
    except Exception:  # pragma: no cover - reporting only
        return None


def _max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray], keys) -> float:
    d = 0.0
    for key in keys:
        x, y = np.asarray(a[key], dtype=np.float64), np.asarray(b[key], dtype=np.float64)
        if not np.array_equal(np.isnan(x), np.isnan(y)):
            return float("inf")
        m = ~np.isnan(x)
        if m.any():
            d = max(d, float(np.max(np.abs(x[m] - y[m]))))
    return d


def run_metrics(args) -> int:
    """`perf metrics` (options in `benchmark.cli`)."""
    if args.users < 1 or args.items < 1 or args.k < 1 or args.k > args.items:
        raise FusebenchError("need users >= 1, items >= 1 and 1 <= k <= items")
    ks = tuple(k for k in KS if k <= args.k) or (args.k,)
    if ks[-1] != args.k:
        ks = ks + (args.k,)
    import numba

    print(
        f"fusebench metric core perf: {args.users:,} users x {args.items:,} items, "
        f"top-{args.k}, metrics {','.join(M.RANK_METRICS)} at {ks}, best of {args.repeat}, "
        f"numba threads {numba.get_num_threads()}"
    )

    # compile time: fresh processes (honest: empty cache = real compile; then a warm cache)
    if not args.no_compile_timing:
        with tempfile.TemporaryDirectory() as d:
            cold = _warmup_subprocess(d)
            warm = _warmup_subprocess(d)
        fmt = lambda x: "n/a" if x is None else f"{x:.2f} s"  # noqa: E731
        print(
            f"numba warmup() in a fresh process: {fmt(cold)} with an empty cache (compile), "
            f"{fmt(warm)} with a warm cache (load)"
        )
    t0 = time.perf_counter()
    M.warmup()
    _read_once(np.zeros((2, 2), dtype=np.int64))
    print(f"warmup() in this process: {time.perf_counter() - t0:.2f} s (project cache)")

    t0 = time.perf_counter()
    topk, truth = synthetic(args.users, args.items, args.k, args.seed)
    print(
        f"synthetic input: {time.perf_counter() - t0:.2f} s; {truth.nnz:,} relevant pairs "
        f"(mean {truth.nnz / args.users:.1f} per user), topk {topk.nbytes / 2**20:.0f} MiB"
    )

    rows: list[tuple[str, float | None, str]] = []
    t_ours, ours = _best(lambda: M.rank_metrics(topk, truth, M.RANK_METRICS, ks), args.repeat)
    rows.append(("ours: benchmark.metrics.rank_metrics", t_ours, ""))

    # (e) floor
    t_floor_nb, _ = _best(lambda: _read_once(topk), args.repeat)
    t_floor_np, _ = _best(lambda: topk.sum(), args.repeat)
    t_floor = min(t_floor_nb, t_floor_np)
    rows.append(("floor: read top-K once (numba prange sum)", t_floor_nb, ""))
    rows.append(("floor: read top-K once (np.sum)", t_floor_np, ""))

    # (d) numpy
    t_np, res_np = _best(lambda: numpy_rank_metrics(topk, truth, ks), args.repeat)
    d_np = _max_diff(ours, res_np, ours.keys())
    rows.append(("numpy vectorised", t_np, f"max |diff| vs ours {d_np:.1e}"))

    # (b) RecBole
    t_rb = None
    rb_ok = None
    try:
        import recbole  # noqa: F401
        import torch  # noqa: F401
    except Exception as e:  # pragma: no cover - depends on the environment
        rows.append(("RecBole metric classes", None, f"skipped: recbole not importable ({e})"))
    else:

        def run_recbole():
            rec = recbole_topk_tensor(topk, truth)
            return rec, recbole_means(rec, ks)

        t_rb, (rec, rb_means) = _best(run_recbole, args.repeat)
        t_build, _ = _best(lambda: recbole_topk_tensor(topk, truth), 1)
        t_cls, _ = _best(lambda: recbole_means(rec, ks), 1)
        ours_means = {key: float(np.nanmean(v)) for key, v in ours.items()}
        d_mean = max(abs(rb_means[key] - ours_means[key]) for key in ours_means)
        hit = rec[:, :-1].numpy().astype(bool)
        pos_len = rec[:, -1].numpy()
        d_user = _max_diff(ours, recbole_per_user(hit, pos_len, ks), ours.keys())
        rb_ok = d_mean <= 1e-9 and d_user <= 1e-9
        rows.append(
            (
                "RecBole: rec.topk build + metric classes",
                t_rb,
                f"(build {t_build:.3f} s + classes {t_cls:.3f} s) means |diff| "
                f"{d_mean:.1e}, per-user |diff| {d_user:.1e} -> "
                f"{'equal' if rb_ok else 'DIFFERENT'} to 1e-9",
            )
        )

    # (c) ranx
    t_rx = None
    try:
        import ranx
    except Exception as e:  # pragma: no cover - depends on the environment
        rows.append(("ranx", None, f"skipped: ranx not importable ({e})"))
    else:
        names = {
            "recall": "recall",
            "precision": "precision",
            "hit": "hit_rate",
            "ndcg": "ndcg",
            "mrr": "mrr",
            "map": "map",
        }
        rx_metrics = [f"{names[m]}@{k}" for m in M.RANK_METRICS for k in ks]

        def run_ranx():
            q_ids = [str(u) for u in range(args.users)]
            tr_idx = np.split(truth.indices.astype(str), truth.indptr[1:-1])
            qrels = ranx.Qrels()
            qrels.add_multi(q_ids, [list(x) for x in tr_idx], [[1] * len(x) for x in tr_idx])
            scores = list(np.arange(args.k, 0, -1, dtype=np.float64))
            run = ranx.Run()
            run.add_multi(q_ids, [list(x) for x in topk.astype(str)], [scores] * args.users)
            return ranx.evaluate(qrels, run, rx_metrics, return_mean=True, make_comparable=False)

        t_rx, rx = _best(run_ranx, args.repeat)
        ours_means = {key: float(np.nanmean(v)) for key, v in ours.items()}
        diffs = {m: max(abs(rx[f"{names[m]}@{k}"] - ours_means[f"{m}@{k}"]) for k in ks) for m in M.RANK_METRICS}
        same = [m for m, d in diffs.items() if d <= 1e-9]
        other = [f"{m} ({diffs[m]:.1e})" for m, d in diffs.items() if d > 1e-9]
        rows.append(
            (
                "ranx: Qrels/Run from arrays + evaluate",
                t_rx,
                f"means equal for {','.join(same) or '-'}; differ: "
                f"{', '.join(other) or '-'} (map divides by |R| in ranx)",
            )
        )

    print(flush=True)
    width = max(len(r[0]) for r in rows)
    print(f"{'method':<{width}}  {'seconds':>9}  notes")
    for name, t, note in rows:
        ts = "skipped" if t is None else f"{t:9.4f}"
        print(f"{name:<{width}}  {ts:>9}  {note}")
    print(flush=True)

    def goal(label: str, ratio: float | None, target: str, ok: bool | None) -> None:
        if ratio is None:
            print(f"{label:<22} {'n/a':>8}   goal {target:<7} SKIPPED")
        else:
            print(f"{label:<22} {ratio:8.1f}x  goal {target:<7} {'MET' if ok else 'NOT MET'}")

    goal(
        "RecBole / ours",
        None if t_rb is None else t_rb / t_ours,
        ">= 20x",
        None if t_rb is None else t_rb / t_ours >= 20,
    )
    if t_rb is not None:
        print(
            f"{'RecBole classes / ours':<22} {t_cls / t_ours:8.1f}x  (metric classes alone, without building rec.topk)"
        )
    goal("ranx / ours", None if t_rx is None else t_rx / t_ours, ">= 5x", None if t_rx is None else t_rx / t_ours >= 5)
    goal("numpy / ours", t_np / t_ours, "> 1x", t_np / t_ours > 1)
    goal("ours / floor", t_ours / t_floor, "<= 3x", t_ours / t_floor <= 3)
    if rb_ok is not None:
        print(f"RecBole numbers equal ours to 1e-9: {'yes' if rb_ok else 'NO'}")
    print(f"numpy numbers equal ours to 1e-9: {'yes' if d_np <= 1e-9 else 'NO'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    import importlib  # the CLI by name: it imports this module, so no import cycle

    raise SystemExit(importlib.import_module("benchmark.cli").main(["perf", "metrics", *sys.argv[1:]]))
