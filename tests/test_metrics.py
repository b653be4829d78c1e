"""Tests of the Numba metric core against hand-computed numbers, RecBole, trec_eval and ranx."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from benchmark import metrics as M
from datasets.errors import FusebenchError

ALL = M.RANK_METRICS


def csr(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.array([i for r in rows for i in r], dtype=np.int32)
    return sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(len(rows), n_items))


def random_cases(rng: np.random.Generator, n_users: int, n_items: int, kmax: int):
    """Top-K lists (distinct items, -1 padding on some rows) and truth covering the edge cases:
    |R| = 1, |R| > k, all items relevant, relevant items only outside the ranking."""
    topk = np.full((n_users, kmax), -1, dtype=np.int64)
    rows = []
    for u in range(n_users):
        length = kmax if rng.random() < 0.7 else int(rng.integers(0, kmax + 1))
        length = min(length, n_items)
        ranked = rng.permutation(n_items)[:length]
        topk[u, :length] = ranked
        kind = rng.integers(0, 6)
        if kind == 0:
            rel = [int(rng.integers(n_items))]  # |R| = 1
        elif kind == 1:
            rel = list(range(n_items))  # all items relevant
        elif kind == 2:
            outside = np.setdiff1d(np.arange(n_items), ranked)
            if len(outside) == 0:
                outside = np.arange(n_items)
            size = int(rng.integers(1, len(outside) + 1))
            rel = list(rng.choice(outside, size=size, replace=False))  # no hit possible
        elif kind == 3:
            size = int(rng.integers(min(kmax, n_items), n_items + 1))  # |R| >= k
            rel = list(rng.choice(n_items, size=size, replace=False))
        else:
            size = int(rng.integers(1, min(n_items, 12) + 1))
            rel = list(rng.choice(n_items, size=size, replace=False))
        rows.append(sorted(int(i) for i in rel))
    return topk, csr(rows, n_items)


def hit_matrix(topk: np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    dense = truth.toarray() > 0
    valid = topk >= 0
    return np.take_along_axis(dense, np.where(valid, topk, 0), axis=1) & valid


# --------------------------------------------------------------------------- hand-computed


def test_hand_computed_single_user():
    # ranking 5, 1, 7, 2, 9 ; relevant {1, 2, 3}: hits at ranks 2 and 4
    topk = np.array([[5, 1, 7, 2, 9]])
    truth = csr([[1, 2, 3]], 10)
    r = M.rank_metrics(topk, truth, ALL, (1, 2, 3, 5))
    assert r["hit@1"][0] == 0 and r["hit@2"][0] == 1
    assert r["precision@5"][0] == pytest.approx(2 / 5)
    assert r["recall@3"][0] == pytest.approx(1 / 3)
    assert r["recall@5"][0] == pytest.approx(2 / 3)
    assert r["mrr@1"][0] == 0 and r["mrr@5"][0] == pytest.approx(0.5)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg3 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert r["ndcg@5"][0] == pytest.approx(dcg / idcg3)
    # ideal over min(|R|, k) = 2 positions at k = 2
    assert r["ndcg@2"][0] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    # MAP@5 = (P@2 + P@4) / min(3, 5) = (1/2 + 2/4) / 3
    assert r["map@5"][0] == pytest.approx((0.5 + 0.5) / 3)
    # MAP@2 = P@2 / min(3, 2)
    assert r["map@2"][0] == pytest.approx(0.5 / 2)


def test_hand_computed_padding_and_no_truth():
    topk = np.array([[3, -1, -1], [0, 1, 2]])
    truth = csr([[3, 4], []], 6)
    r = M.rank_metrics(topk, truth, ALL, (3,))
    assert r["precision@3"][0] == pytest.approx(1 / 3)  # still divides by k
    assert r["recall@3"][0] == pytest.approx(0.5)
    assert r["ndcg@3"][0] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert r["map@3"][0] == pytest.approx(1 / 2)
    assert r["mrr@3"][0] == 1.0 and r["hit@3"][0] == 1.0
    for key in r:
        assert np.isnan(r[key][1])


def test_repeated_item_counts_once():
    r = M.rank_metrics(np.array([[2, 2, 5]]), csr([[2, 5]], 6), ["recall", "precision"], (3,))
    assert r["recall@3"][0] == 1.0 and r["precision@3"][0] == pytest.approx(2 / 3)


def test_errors():
    topk = np.array([[0, 1]])
    truth = csr([[0]], 3)
    with pytest.raises(ValueError, match="exceeds"):
        M.rank_metrics(topk, truth, ["ndcg"], (3,))
    with pytest.raises(FusebenchError, match="unknown metric"):
        M.rank_metrics(topk, truth, ["ndgc"], (1,))
    with pytest.raises(ValueError, match="outside"):
        M.rank_metrics(np.array([[0, 7]]), truth, ["ndcg"], (2,))
    with pytest.raises(ValueError, match="outside"):
        M.rank_metrics(np.array([[0, -3]]), truth, ["ndcg"], (2,))
    with pytest.raises(ValueError, match="rows"):
        M.rank_metrics(np.array([[0, 1], [1, 2]]), truth, ["ndcg"], (2,))


def test_keys_order_and_subset():
    topk = np.array([[0, 1, 2]])
    r = M.rank_metrics(topk, csr([[1]], 3), ["map", "hit"], [3, 1])
    assert list(r) == ["map@3", "map@1", "hit@3", "hit@1"]
    assert r["hit@1"][0] == 0 and r["map@3"][0] == pytest.approx(0.5)


# --------------------------------------------------------------------------- RecBole


def _cases(n_batches=40, users=30, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n_batches):
        n_items = int(rng.integers(2, 200))
        kmax = int(rng.integers(1, 60))
        topk, truth = random_cases(rng, users, n_items, kmax)
        ks = sorted(set(int(k) for k in rng.integers(1, kmax + 1, size=3)) | {kmax})
        yield topk, truth, ks


def test_against_recbole_metric_classes():
    pytest.importorskip("recbole")
    from benchmark.perf import recbole_per_user

    n_cases = 0
    for topk, truth, ks in _cases():
        ours = M.rank_metrics(topk, truth, ALL, ks)
        hit = hit_matrix(topk, truth)
        pos_len = np.diff(truth.indptr)
        ref = recbole_per_user(hit, pos_len, ks)
        for key, v in ref.items():
            np.testing.assert_allclose(ours[key], v, rtol=0, atol=1e-9, err_msg=key)
        n_cases += topk.shape[0]
    assert n_cases >= 1000


def test_recbole_means_via_calculate_metric():
    pytest.importorskip("recbole")
    from benchmark.perf import recbole_means, recbole_topk_tensor

    rng = np.random.default_rng(5)
    topk, truth = random_cases(rng, 200, 80, 20)
    ks = [1, 5, 20]
    ours = M.rank_metrics(topk, truth, ALL, ks)
    ref = recbole_means(recbole_topk_tensor(topk, truth, batch_size=64), ks)
    for key, v in ref.items():
        assert abs(np.nanmean(ours[key]) - v) < 1e-9, key


def test_list_metrics_against_recbole():
    pytest.importorskip("recbole")
    from recbole.evaluator.metrics import GiniIndex, ItemCoverage

    rng = np.random.default_rng(1)
    config = {"topk": [1], "metric_decimal_place": 20}
    for _ in range(30):
        n_items = int(rng.integers(5, 300))
        kmax = int(rng.integers(1, min(n_items, 40) + 1))
        n_users = int(rng.integers(1, 60))
        # skewed popularity so gini is far from 0
        p = rng.random(n_items) ** 4
        p /= p.sum()
        topk = np.stack([rng.choice(n_items, kmax, replace=False, p=p) for _ in range(n_users)])
        ks = sorted({int(rng.integers(1, kmax + 1)), kmax})
        res = M.list_metrics(topk, ks, n_items)
        for k in ks:
            cov = ItemCoverage(config).get_coverage(topk[:, :k], n_items)
            gini = GiniIndex(config).get_gini(topk[:, :k], n_items)
            assert res[f"item_coverage@{k}"] == pytest.approx(cov, abs=1e-12)
            assert res[f"gini@{k}"] == pytest.approx(gini, abs=1e-9)


# --------------------------------------------------------------------------- trec_eval / ranx


def _run_and_qrels(topk, truth, k):
    run, qrels = {}, {}
    for u in range(topk.shape[0]):
        q = f"q{u:05d}"
        items = [int(i) for i in topk[u, :k] if i >= 0]
        run[q] = {f"d{i}": float(len(items) - r) for r, i in enumerate(items)}
        rel = truth.indices[truth.indptr[u] : truth.indptr[u + 1]]
        qrels[q] = {f"d{int(i)}": 1 for i in rel}
    return run, qrels


def test_against_trec_eval():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = np.random.default_rng(2)
    for _ in range(12):
        n_items = int(rng.integers(5, 150))
        kmax = int(rng.integers(2, 40))
        topk, truth = random_cases(rng, 40, n_items, kmax)
        ks = sorted({int(rng.integers(1, kmax + 1)), kmax})
        ours = M.rank_metrics(topk, truth, ALL, ks)
        for k in ks:
            run, qrels = _run_and_qrels(topk, truth, k)
            ev = pytrec_eval.RelevanceEvaluator(
                qrels, {f"P.{k}", f"recall.{k}", f"success.{k}", "recip_rank", f"ndcg_cut.{k}", f"map_cut.{k}"}
            )
            res = ev.evaluate(run)
            for u in range(topk.shape[0]):
                r = res[f"q{u:05d}"]
                n_rel = len(qrels[f"q{u:05d}"])
                assert r[f"P_{k}"] == pytest.approx(ours[f"precision@{k}"][u], abs=1e-9)
                assert r[f"recall_{k}"] == pytest.approx(ours[f"recall@{k}"][u], abs=1e-9)
                assert r[f"success_{k}"] == pytest.approx(ours[f"hit@{k}"][u], abs=1e-9)
                assert r["recip_rank"] == pytest.approx(ours[f"mrr@{k}"][u], abs=1e-9)
                # trec_eval's ndcg_cut also uses the ideal ranking cut at k: same convention
                assert r[f"ndcg_cut_{k}"] == pytest.approx(ours[f"ndcg@{k}"][u], abs=1e-9)
                # trec_eval's map_cut divides by |R|, ours (RecBole) by min(|R|, k)
                assert r[f"map_cut_{k}"] == pytest.approx(ours[f"map@{k}"][u] * min(n_rel, k) / n_rel, abs=1e-9)


def test_against_ranx():
    ranx = pytest.importorskip("ranx")
    rng = np.random.default_rng(3)
    for _ in range(8):
        n_items = int(rng.integers(5, 150))
        kmax = int(rng.integers(2, 40))
        topk, truth = random_cases(rng, 40, n_items, kmax)
        ks = sorted({int(rng.integers(1, kmax + 1)), kmax})
        ours = M.rank_metrics(topk, truth, ALL, ks)
        run, qrels = _run_and_qrels(topk, truth, kmax)
        empty = [q for q, d in run.items() if not d]
        for q in empty:  # ranx cannot hold an empty ranking: give it a non-relevant dummy
            run[q] = {"dummy": 0.0}
        names = {
            "recall": "recall",
            "precision": "precision",
            "hit": "hit_rate",
            "ndcg": "ndcg",
            "mrr": "mrr",
            "map": "map",
        }
        rx_metrics = [f"{names[m]}@{k}" for m in ALL for k in ks]
        res = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), rx_metrics, return_mean=False)
        n_rel = np.diff(truth.indptr)
        for m in ALL:
            for k in ks:
                got = np.asarray(res[f"{names[m]}@{k}"])
                want = ours[f"{m}@{k}"]
                if m == "map":  # ranx's AP divides by |R|
                    want = want * np.minimum(n_rel, k) / n_rel
                np.testing.assert_allclose(got, want, atol=1e-9, err_msg=f"{m}@{k}")


# --------------------------------------------------------------------------- list metrics


def test_list_metrics_hand_computed():
    topk = np.array([[0, 1], [0, 2], [0, -1]])
    res = M.list_metrics(topk, [1, 2], 4, item_popularity=np.array([4, 2, 0, 1]), n_users=4)
    assert res["item_coverage@1"] == 0.25
    assert res["item_coverage@2"] == 0.75
    # counts@2 = [3, 1, 1, 0] sorted [0, 1, 1, 3]; sum (2i - 5) c = -1 + 1 + 9 = 9; / (4 * 5)
    assert res["gini@2"] == pytest.approx(9 / 20)
    assert res["gini@1"] == pytest.approx((2 * 4 - 5) * 3 / (4 * 3))
    # novelty: -log2(4/4) = 0, -log2(2/4) = 1, item 2 unseen -> p = 1/4 -> 2
    np.testing.assert_allclose(res["novelty@1"], [0, 0, 0])
    np.testing.assert_allclose(res["novelty@2"], [0.5, 1.0, 0.0])


def test_novelty_bad_popularity():
    with pytest.raises(ValueError):
        M.novelty(np.array([[0]]), [1], np.array([5, 1]), n_users=2)
    with pytest.raises(ValueError):
        M.novelty(np.array([[3]]), [1], np.array([1, 1, 1]), n_users=2)
    with pytest.raises(ValueError):
        M.list_metrics(np.array([[0]]), [1], 4, np.array([1, 1, 1]), n_users=2)


# --------------------------------------------------------------------------- top-K


def reference_topk(scores, k, exclude=None):
    s = np.where(np.isnan(scores), -np.inf, scores.astype(np.float64))
    out = np.full((s.shape[0], k), -1, dtype=np.int64)
    for r in range(s.shape[0]):
        order = np.argsort(-s[r], kind="stable")
        if exclude is not None:
            banned = set(exclude.indices[exclude.indptr[r] : exclude.indptr[r + 1]].tolist())
            order = np.array([i for i in order if i not in banned], dtype=np.int64)
        order = order[:k]
        out[r, : len(order)] = order
    return out


def test_topk_ties_break_by_lower_index():
    s = np.array([[1.0, 3.0, 3.0, 2.0, 3.0]], dtype=np.float32)
    np.testing.assert_array_equal(M.topk_items(s, 4), [[1, 2, 4, 3]])
    np.testing.assert_array_equal(M.topk_items(np.zeros((1, 5)), 3), [[0, 1, 2]])


def test_topk_masking_padding_and_nan():
    s = np.array([[5.0, 4.0, np.nan, 1.0], [1.0, 2.0, 3.0, 4.0]])
    before = s.copy()
    ex = csr([[0, 3], [0, 1, 2, 3]], 4)
    out = M.topk_items(s, 3, ex)
    np.testing.assert_array_equal(out, [[1, 2, -1], [-1, -1, -1]])
    np.testing.assert_array_equal(s, before)  # not modified
    np.testing.assert_array_equal(M.topk_items(s, 6), [[0, 1, 3, 2, -1, -1], [3, 2, 1, 0, -1, -1]])
    assert M.topk_items(s, 0).shape == (2, 0)
    with pytest.raises(ValueError):
        M.topk_items(s, 2, csr([[0]], 4))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_topk_matches_stable_argsort(dtype):
    rng = np.random.default_rng(4)
    for _ in range(25):
        n, m = int(rng.integers(1, 30)), int(rng.integers(1, 80))
        k = int(rng.integers(1, m + 5))
        s = rng.integers(0, 6, size=(n, m)).astype(dtype)  # many ties
        s[rng.random((n, m)) < 0.05] = np.nan
        s[rng.random((n, m)) < 0.05] = -np.inf
        ex = sp.random(n, m, density=rng.random() * 0.8, format="csr", random_state=rng)
        np.testing.assert_array_equal(M.topk_items(s, k), reference_topk(s, k))
        np.testing.assert_array_equal(M.topk_items(s, k, ex), reference_topk(s, k, ex))


def test_warmup_runs():
    M.warmup()


def test_perf_script_smoke(capsys):
    from benchmark.cli import main

    assert (
        main(
            ["perf", "metrics", "--users", "300", "--items", "200", "--k", "20", "--repeat", "1", "--no-compile-timing"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "ours / floor" in out and "numpy numbers equal ours to 1e-9: yes" in out
    if "RecBole numbers" in out:
        assert "RecBole numbers equal ours to 1e-9: yes" in out
