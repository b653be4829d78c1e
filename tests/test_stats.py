"""benchmark.stats against scipy and hand computations, on synthetic per-user arrays."""

import warnings

import numpy as np
import pytest
from scipy import stats as sps

from benchmark.stats import (
    Comparison,
    ModelRuns,
    SeedTest,
    bootstrap_ci,
    compare_models,
    holm,
    paired_test,
    seed_average,
    seed_test,
)


def _users(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, n)


def test_paired_test_matches_scipy_and_detects_a_shift():
    base = _users()
    rng = np.random.default_rng(1)
    better = base + 0.05 + rng.normal(0, 0.1, base.size)
    res = paired_test(better, base)
    t = sps.ttest_rel(better, base)
    w = sps.wilcoxon(better, base)
    assert res.n == base.size
    assert res.p_t == pytest.approx(t.pvalue, rel=1e-12)
    assert res.t_stat == pytest.approx(t.statistic, rel=1e-12)
    assert res.p_wilcoxon == pytest.approx(w.pvalue, rel=1e-12)
    assert res.w_stat == pytest.approx(w.statistic)
    assert res.p_t < 0.05 and res.p_wilcoxon < 0.05
    assert res.diff == pytest.approx(np.mean(better - base))
    # no shift: not significant
    same = base + rng.normal(0, 0.1, base.size)
    assert paired_test(same, base).p_wilcoxon > 0.05


def test_paired_test_drops_nan_users_in_either_array():
    a, b = _users(300, 2), _users(300, 3)
    a[:10] = np.nan
    b[5:20] = np.nan
    res = paired_test(a.astype(np.float32), b.astype(np.float32))
    ok = ~np.isnan(a) & ~np.isnan(b)
    assert res.n == ok.sum() == 280
    a32, b32 = a.astype(np.float32).astype(np.float64)[ok], b.astype(np.float32).astype(np.float64)[ok]
    assert res.p_t == pytest.approx(sps.ttest_rel(a32, b32).pvalue, rel=1e-12)
    assert res.p_wilcoxon == pytest.approx(sps.wilcoxon(a32, b32).pvalue, rel=1e-12)


def test_identical_arrays_give_p_one_and_stay_one_after_holm():
    a = _users()
    a[::7] = np.nan
    with pytest.raises(ValueError):
        sps.wilcoxon(a[~np.isnan(a)], a[~np.isnan(a)])  # why the special case exists
    res = paired_test(a, a.copy())
    assert res.p_t == 1.0 and res.p_wilcoxon == 1.0 and res.diff == 0.0
    np.testing.assert_allclose(holm([res.p_wilcoxon, res.p_wilcoxon, 0.2]), [1.0, 1.0, 0.6])


def test_degenerate_sizes_give_nan_not_errors():
    assert np.isnan(paired_test(np.array([np.nan, 1.0]), np.array([1.0, np.nan])).p_t)
    one = paired_test(np.array([0.5]), np.array([0.1]))
    assert one.n == 1 and np.isnan(one.p_wilcoxon) and one.diff == pytest.approx(0.4)
    with pytest.raises(ValueError):
        paired_test(np.zeros(3), np.zeros(4))


def test_holm_matches_a_hand_computation():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> monotone 0.06
    got = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(got, [0.03, 0.06, 0.06, 0.02])
    # NaN (test not run) neither counts nor changes: m = 2
    got = holm([0.01, np.nan, 0.04])
    np.testing.assert_allclose(got, [0.02, np.nan, 0.04])
    np.testing.assert_allclose(holm([0.6, 0.9]), [1.0, 1.0])  # capped at 1
    assert holm([]).size == 0


def test_bootstrap_ci_covers_the_mean_is_seeded_and_shrinks_with_n():
    x = _users(500)
    x[::10] = np.nan
    lo, hi = bootstrap_ci(x, n_resamples=1000, seed=0)
    m = np.nanmean(x)
    assert lo < m < hi
    assert (lo, hi) == bootstrap_ci(x, n_resamples=1000, seed=0)
    assert (lo, hi) != bootstrap_ci(x, n_resamples=1000, seed=1)
    # close to the normal-theory interval mean +- 1.96 * sd / sqrt(n)
    v = x[~np.isnan(x)]
    half = 1.96 * v.std(ddof=1) / np.sqrt(v.size)
    assert hi - lo == pytest.approx(2 * half, rel=0.15)
    lo2, hi2 = bootstrap_ci(np.tile(v, 16), seed=0)
    assert hi2 - lo2 < (hi - lo) / 2
    assert all(np.isnan(bootstrap_ci(np.full(4, np.nan))))


def test_seed_average_ignores_missing_seeds_per_user():
    a = np.array([1.0, np.nan, 0.0, np.nan])
    b = np.array([0.0, 0.5, 1.0, np.nan])
    np.testing.assert_allclose(seed_average([a, b]), [0.5, 0.5, 0.5, np.nan])


def _runs(label, family, per_seed):
    mean = float(np.mean([np.nanmean(d["recall@20"]) for d in per_seed.values()]))
    return ModelRuns(label, family, mean, per_seed)


def _arrays(x):
    return {m: x for m in ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "mrr@20")}


def test_compare_models_picks_references_and_corrects_the_whole_table():
    rng = np.random.default_rng(0)
    n = 300
    base = rng.uniform(0, 0.5, n)
    seeds = lambda f: {s: _arrays(f(s)) for s in (0, 1)}  # noqa: E731
    best = _runs("ease", "baseline/cf", seeds(lambda s: base + rng.normal(0, 0.02, n)))
    worse = _runs("pop", "baseline/cf", seeds(lambda s: base - 0.1 + rng.normal(0, 0.02, n)))
    content = _runs("content", "baseline/content", seeds(lambda s: base - 0.05 + rng.normal(0, 0.02, n)))
    fusion = _runs("fusion-late", "fusion", seeds(lambda s: base + 0.05 + rng.normal(0, 0.02, n)))
    twin = _runs("fusion-twin", "fusion", {s: best.per_seed[s] for s in (0, 1)})
    twin.mean_primary = best.mean_primary - 1e-9  # not the best fusion model
    st = compare_models([worse, best, fusion, content, twin])
    assert st.best_baseline == "ease" and st.best_fusion == "fusion-late"
    vs = {c.model for c in st.comparisons if c.kind == "vs best baseline"}
    assert vs == {"pop", "content", "fusion-late", "fusion-twin"}
    fb = {c.reference for c in st.comparisons if c.kind == "best fusion vs baseline"}
    assert fb == {"pop", "content"}
    assert len(st.comparisons) == (4 + 2) * 5
    np.testing.assert_allclose(
        [c.p_wilcoxon_holm for c in st.comparisons], holm([c.test.p_wilcoxon for c in st.comparisons])
    )
    np.testing.assert_allclose([c.p_t_holm for c in st.comparisons], holm([c.test.p_t for c in st.comparisons]))
    assert st.against_best("fusion-late", "recall@20").direction == 1
    assert st.against_best("pop", "ndcg@20").direction == -1
    tw = st.against_best("fusion-twin", "recall@20")
    assert tw.p_wilcoxon_holm == 1.0 and not tw.significant and tw.direction == 0
    # pairing on seed-averaged values: the test equals scipy on the averages
    c = st.against_best("content", "recall@20")
    a = (content.per_seed[0]["recall@20"] + content.per_seed[1]["recall@20"]) / 2
    b = (best.per_seed[0]["recall@20"] + best.per_seed[1]["recall@20"]) / 2
    assert c.test.p_wilcoxon == pytest.approx(sps.wilcoxon(a, b).pvalue, rel=1e-10)
    assert c.seeds == (0, 1)
    lo, hi = st.ci["fusion-late"]["recall@20"]
    assert lo < fusion.mean_primary < hi


def test_compare_models_edge_cases():
    x = _users(50)
    # one model: nothing to compare
    st = compare_models([_runs("pop", "baseline/cf", {0: _arrays(x)})])
    assert st.best_baseline == "pop" and st.comparisons == [] and "recall@20" in st.ci["pop"]
    # no baseline: no reference, no tests
    st = compare_models([_runs("f", "fusion", {0: _arrays(x)})])
    assert st.best_baseline is None and st.comparisons == []

    # different seeds: only the common ones are paired; a missing per-user file: no test
    def missing():
        raise FileNotFoundError("old record without its .npz")

    a = _runs("a", "baseline/cf", {0: _arrays(x), 1: _arrays(x)})
    b = ModelRuns("b", "fusion", 0.1, {0: _arrays(x + 0.1), 1: _arrays(x + 0.1), 2: _arrays(x + 5)})
    c = ModelRuns("c", "baseline/hybrid", 0.0, {0: missing})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        st = compare_models([a, b, c])
    cb = st.against_best("b", "recall@20")
    assert cb.seeds == (0, 1) and cb.test.diff == pytest.approx(0.1)
    cc = st.against_best("c", "recall@20")
    assert cc.seeds == (0,) and np.isnan(cc.test.p_wilcoxon) and not cc.significant
    assert "recall@20" not in st.ci["c"]


def test_markers_are_driven_by_the_holm_corrected_seed_aware_test_only():
    t = paired_test(np.array([0.5, 0.6, 0.7]), np.array([0.1, 0.2, 0.2]))
    st = SeedTest(3, 3, 3, 0.4, 0.1, 4.0, 0.01)
    kw = dict(p_t_holm=0.001, p_wilcoxon_holm=0.001)
    c = Comparison("a", "b", "vs best baseline", "recall@20", (0,), t, st, **kw, p_seed_holm=0.2)
    assert not c.significant and c.direction == 0  # per-user p's alone never make a marker
    c = Comparison("a", "b", "vs best baseline", "recall@20", (0,), t, st, p_t_holm=0.9, p_seed_holm=0.01)
    assert c.significant and c.direction == 1
    assert not Comparison("a", "b", "x", "m", (0,), t, st, p_seed_holm=0.05).significant  # strict <


# --- the seed-aware test (issue 13 part 3) ---------------------------------------------------


def test_seed_test_without_seed_variance_is_the_paired_t_test_over_users():
    rng = np.random.default_rng(0)
    a, b = rng.random(200), rng.random(200)
    a[:5] = np.nan  # users without test items are left out, as in the per-user tests
    st = seed_test([a, a, a], [b, b, b])  # deterministic models on a fixed split
    ref = sps.ttest_rel(a[5:], b[5:])
    assert (st.seeds_a, st.seeds_b, st.n_users) == (3, 3, 195)
    assert st.diff == pytest.approx(np.mean(a[5:] - b[5:]))
    assert st.p == pytest.approx(ref.pvalue, rel=1e-9) and st.df == pytest.approx(194)


def test_seed_test_by_hand_and_its_edge_cases():
    rng = np.random.default_rng(1)
    x = rng.random(50)
    shifts_a, shifts_b = [0.02, -0.01, 0.0], [0.03, -0.02, 0.01, 0.05]
    a = [x + s + 0.01 * rng.standard_normal(50) for s in shifts_a]
    b = [x + s for s in shifts_b]
    st = seed_test(a, b)
    ma, mb = np.array([r.mean() for r in a]), np.array([r.mean() for r in b])
    d = np.mean(a, axis=0) - np.mean(b, axis=0)
    parts = [(ma.var(ddof=1) / 3, 2), (mb.var(ddof=1) / 4, 3), (d.var(ddof=1) / 50, 49)]
    var = sum(v for v, _ in parts)
    df = var**2 / sum(v**2 / k for v, k in parts)
    assert st.diff == pytest.approx(ma.mean() - mb.mean()) and st.df == pytest.approx(df)
    assert st.p == pytest.approx(2 * sps.t.sf(abs(st.diff) / np.sqrt(var), df))
    one = seed_test(a[:1], b)  # one seed: its training variance is unknown, no test
    assert np.isfinite(one.diff) and np.isnan(one.p)
    assert np.isnan(seed_test(a, [x[:10]] * 2).p)  # arrays of different lengths
    assert seed_test([x, x], [x, x]).p == 1.0  # identical: no evidence of a difference


def test_a_a_check_seed_test_holds_its_level_where_the_per_user_test_does_not():
    """Same model twice: every seed moves every user's value (training variance), users differ
    in how good they are. The per-user Wilcoxon treats the seed noise shared by all users as a
    difference between the models; the seed-aware test must stay at or below its level."""
    rng = np.random.default_rng(7)
    users = rng.random(300) * 0.5
    hits_user = hits_seed = 0
    n = 400
    for _ in range(n):
        runs = [users + 0.01 * rng.standard_normal() + 0.02 * rng.standard_normal(300) for _ in range(6)]
        a, b = runs[:3], runs[3:]
        hits_user += paired_test(np.mean(a, axis=0), np.mean(b, axis=0)).p_wilcoxon < 0.05
        hits_seed += seed_test(a, b).p < 0.05
    assert hits_user / n > 0.3  # the failure the A/A check measured on real data
    assert hits_seed / n <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / n)


def test_paired_seed_test_cancels_what_the_split_does_to_both_models():
    """On a random split each seed's split moves both models (shared); their training luck is
    their own. Paired by seed, the shared part cancels: the test keeps its level on equal
    models and finds a real difference the unpaired form drowns in split variance."""
    rng = np.random.default_rng(3)
    users = rng.random(300) * 0.5
    n, level_hits, paired_power, unpaired_power = 400, 0, 0, 0
    for _ in range(n):
        split = 0.03 * rng.standard_normal(3)  # per seed, shared by both models

        def runs(effect):
            return [users + effect + s + 0.004 * rng.standard_normal() + 0.02 * rng.standard_normal(300) for s in split]

        a, b = runs(0.0), runs(0.0)
        level_hits += seed_test(a, b, paired=True).p < 0.05
        c = runs(0.02)
        paired_power += seed_test(c, a, paired=True).p < 0.05
        unpaired_power += seed_test(c, a).p < 0.05
    assert level_hits / n <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / n)
    assert paired_power / n > 0.5 and unpaired_power / n < 0.2


def test_paired_seed_test_by_hand():
    rng = np.random.default_rng(4)
    a = [rng.random(40) for _ in range(3)]
    b = [x - 0.05 + 0.01 * rng.standard_normal(40) for x in a]
    st = seed_test(a, b, paired=True)
    d_seed = np.array([x.mean() - y.mean() for x, y in zip(a, b)])
    d_user = np.mean(a, axis=0) - np.mean(b, axis=0)
    parts = [(d_seed.var(ddof=1) / 3, 2), (d_user.var(ddof=1) / 40, 39)]
    var = sum(v for v, _ in parts)
    assert st.df == pytest.approx(var**2 / sum(v**2 / k for v, k in parts))
    assert st.p == pytest.approx(2 * sps.t.sf(abs(d_user.mean()) / np.sqrt(var), st.df))
    assert np.isnan(seed_test(a, b[:2], paired=True).p)  # pairs need the same seeds
