"""Per-user paired significance tests, Holm-Bonferroni correction and bootstrap intervals.

What the leaderboard reports, and how (the rules, in one place):

- **Reference.** In each table (one dataset under one split protocol) the *best baseline* is
  the model of a ``baseline/*`` family with the highest mean test Recall@20 over its seeds
  (ties: the label first in alphabetical order). Every other model is tested against it, and
  the *best fusion model* (same rule among family ``fusion``) is also tested against every
  other baseline.
- **Pairing.** Users are aligned by dense user id (same dataset, same split seed, same
  users). A comparison of A with B uses the seeds both were run on; each user's value is the
  mean over those seeds where the user has test items (per-user arrays hold NaN for users
  without test items), and users that are NaN in either model after averaging are dropped.
  No common seed, or per-user arrays of different lengths: no test (p-values NaN).
- **The test behind the markers: seed-aware.** Users are not the only source of chance: a
  model's training seed moves every user's value at once, which a per-user test cannot see
  (the A/A check, `benchmark.aa`, measures how often a model "beats" itself). The markers
  come from `seed_test`: the mean per-user difference of seed-averaged values (the Δ shown),
  with as its variance the variance over seeds of the per-seed differences of the two models'
  means (over the number of seeds: both models ran on the same seeds, so on a random split
  what the split does to both cancels) plus the user-to-user variance of the paired per-user
  differences (over the number of users), as a t statistic with Welch-Satterthwaite degrees
  of freedom, two-sided. Groups of different seeds (the A/A check) use each group's own
  seed-to-seed variance instead (Welch). With zero seed variance (deterministic models on a
  fixed split) it is the paired t-test over users; with one seed it is not run (NaN):
  training variance cannot be estimated from one run.
- **Per-user tests (details).** Paired t-test (``scipy.stats.ttest_rel``) and Wilcoxon signed-rank
  (``scipy.stats.wilcoxon``, ``zero_method="wilcox"``: users with a zero difference are
  dropped, scipy's default; two-sided). Edge cases: fewer than two pairs -> NaN (no test);
  all differences zero (identical arrays; scipy's Wilcoxon raises) -> p = 1 for both tests;
  a constant non-zero difference (t undefined, scipy returns p = 0) is kept as scipy gives it.
- **Multiplicity.** Holm-Bonferroni over every test of one table (all comparisons x all
  tested metrics), separately for the seed-aware, the t-test and the Wilcoxon p-values. NaN p-values (tests
  not run) do not count towards the number of hypotheses.
- **Content lift.** A model that reads item content against its placebo controls (the same
  configuration and seeds on placebo content, `datasets.placebo`), on LIFT_METRICS, tested
  like the other comparisons and Holm-corrected together with them.
- **Intervals.** 95% percentile bootstrap of the mean over users (1000 resamples of users
  with replacement, ``numpy.random.default_rng(seed)``), on the seed-averaged per-user values.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

from .metrics import PRIMARY_METRIC

__all__ = [
    "PairedTest",
    "paired_test",
    "SeedTest",
    "seed_test",
    "holm",
    "bootstrap_ci",
    "seed_average",
    "ModelRuns",
    "Comparison",
    "GroupStats",
    "compare_models",
    "placebo_kind",
    "TESTED_METRICS",
    "LIFT_METRICS",
    "PRIMARY_METRIC",
    "ALPHA",
]

# per-user metrics the leaderboard shows (coverage is list-level: it has no per-user values)
TESTED_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "mrr@20")
# a model against its placebo controls (content lift): the leaderboard's column and its detail
LIFT_METRICS = (PRIMARY_METRIC, "ndcg@20")
ALPHA = 0.05
BASELINE_PREFIX = "baseline/"
FUSION_FAMILY = "fusion"


@dataclass(frozen=True)
class PairedTest:
    """Paired comparison of A with B on the same users (``diff`` = mean(A - B))."""

    n: int
    mean_a: float
    mean_b: float
    diff: float
    t_stat: float
    p_t: float
    w_stat: float
    p_wilcoxon: float


def _pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in length: {a.shape[0]} vs {b.shape[0]}")
    ok = ~(np.isnan(a) | np.isnan(b))
    return a[ok], b[ok]


def paired_test(a: np.ndarray, b: np.ndarray) -> PairedTest:
    """Paired t-test and Wilcoxon signed-rank of per-user arrays ``a`` vs ``b`` (NaN dropped)."""
    a, b = _pairs(a, b)
    n = int(a.size)
    nan = float("nan")
    if n == 0:
        return PairedTest(0, nan, nan, nan, nan, nan, nan, nan)
    mean_a, mean_b = float(a.mean()), float(b.mean())
    d = a - b
    diff = float(d.mean())
    if n < 2:
        return PairedTest(n, mean_a, mean_b, diff, nan, nan, nan, nan)
    if not np.any(d != 0):
        # identical: no evidence of a difference (scipy: t is 0/0, Wilcoxon raises)
        return PairedTest(n, mean_a, mean_b, 0.0, 0.0, 1.0, 0.0, 1.0)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        t = sps.ttest_rel(a, b)
        w = sps.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided")
    return PairedTest(n, mean_a, mean_b, diff, float(t.statistic), float(t.pvalue), float(w.statistic), float(w.pvalue))


@dataclass(frozen=True)
class SeedTest:
    """Seed-aware comparison of A with B (see the module doc); ``diff`` = mean over users of the
    seed-averaged differences (as `PairedTest.diff`), ``se`` its standard error, ``df``
    Welch-Satterthwaite's."""

    seeds_a: int
    seeds_b: int
    n_users: int
    diff: float
    se: float
    df: float
    p: float


def _seed_means(runs: Sequence[np.ndarray], users: np.ndarray) -> np.ndarray:
    """Each seed's mean over `users` (a user without test items in that seed is left out)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array([np.nanmean(np.asarray(r, dtype=np.float64).ravel()[users]) for r in runs])


def seed_test(a_runs: Sequence[np.ndarray], b_runs: Sequence[np.ndarray], paired: bool = False) -> SeedTest:
    """Test A against B from their per-seed per-user arrays (users aligned), accounting for both
    the training seeds and the users as sources of chance (module doc). `paired`: the i-th run
    of A and of B share their seed (the same split, on a random split), so the seed term is the
    variance of the per-seed differences: what both models share through the split cancels."""
    nan = float("nan")
    if not a_runs or not b_runs:
        return SeedTest(len(a_runs), len(b_runs), 0, nan, nan, nan, nan)
    na, nb = len(a_runs), len(b_runs)
    if len({np.asarray(r).size for r in (*a_runs, *b_runs)}) != 1:
        return SeedTest(na, nb, 0, nan, nan, nan, nan)
    avg_a, avg_b = seed_average(a_runs), seed_average(b_runs)
    users = np.flatnonzero(~(np.isnan(avg_a) | np.isnan(avg_b)))
    nu = int(users.size)
    if nu < 2:
        return SeedTest(na, nb, nu, nan, nan, nan, nan)
    xa, xb = avg_a[users], avg_b[users]
    # the difference is the per-user tests' (mean of seed-averaged differences: one Δ on the
    # page); its spread over seeds comes from the per-seed means
    diff = float((xa - xb).mean())
    ma, mb = _seed_means(a_runs, users), _seed_means(b_runs, users)
    if na < 2 or nb < 2 or (paired and na != nb):
        return SeedTest(na, nb, nu, diff, nan, nan, nan)
    # (variance of the mean, its degrees of freedom) for each independent source of chance
    users_part = ((xa - xb).var(ddof=1) / nu, nu - 1)
    if paired:
        parts = [((ma - mb).var(ddof=1) / na, na - 1), users_part]
    else:
        parts = [(ma.var(ddof=1) / na, na - 1), (mb.var(ddof=1) / nb, nb - 1), users_part]
    var = sum(v for v, _ in parts)
    if not var > 0:
        # nothing varies: identical models and users, or a constant difference
        return SeedTest(na, nb, nu, diff, 0.0, nan, 1.0 if diff == 0 else 0.0)
    df = var**2 / sum(v**2 / k for v, k in parts if v > 0)
    se = float(np.sqrt(var))
    p = float(2.0 * sps.t.sf(abs(diff) / se, df))
    return SeedTest(na, nb, nu, diff, se, float(df), p)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1).

    With the m finite p-values sorted ascending, p_(1) <= ... <= p_(m):
    adj_(i) = max_{j <= i} min(1, (m - j + 1) * p_(j)). NaN stays NaN and does not count in m.
    The leaderboard calls a difference significant when the adjusted p-value is < 0.05.
    """
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = idx.size
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def bootstrap_ci(
    values: np.ndarray,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    chunk: int = 50,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaN dropped) over users.

    Deterministic for a given ``seed`` (and ``chunk``, the resamples drawn per block, which
    bounds memory to ``chunk x n_users`` indices). No finite value: (NaN, NaN).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    if n_resamples < 1:
        raise ValueError("n_resamples must be >= 1")
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for lo in range(0, n_resamples, chunk):
        hi = min(n_resamples, lo + chunk)
        idx = rng.integers(0, v.size, size=(hi - lo, v.size))
        means[lo:hi] = v[idx].mean(axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    lo_q, hi_q = np.percentile(means, [tail, 100.0 - tail])
    return float(lo_q), float(hi_q)


def seed_average(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Per-user mean over seeds, ignoring the seeds where a user is NaN (all NaN -> NaN)."""
    if not arrays:
        raise ValueError("seed_average needs at least one array")
    stack = np.vstack([np.asarray(a, dtype=np.float64).ravel() for a in arrays])
    ok = ~np.isnan(stack)
    count = ok.sum(axis=0)
    total = np.where(ok, stack, 0.0).sum(axis=0)
    out = np.full(stack.shape[1], np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


# --- one table's comparisons ---------------------------------------------------------------

PerUser = Mapping[str, np.ndarray]


@dataclass
class ModelRuns:
    """One leaderboard row: a model's runs over seeds.

    ``per_seed`` maps seed -> per-user arrays (metric -> array), or seed -> a callable that
    loads them (so records are read only when a test needs them).
    """

    label: str
    family: str
    mean_primary: float  # mean over seeds of the record's test PRIMARY_METRIC
    per_seed: dict[int, PerUser | Callable[[], PerUser]]
    _cache: dict[int, PerUser] = field(default_factory=dict, repr=False)

    @property
    def is_baseline(self) -> bool:
        return self.family.startswith(BASELINE_PREFIX)

    def arrays(self, seed: int) -> PerUser | None:
        if seed not in self._cache:
            src = self.per_seed[seed]
            try:
                self._cache[seed] = src() if callable(src) else src
            except (OSError, KeyError, ValueError):
                self._cache[seed] = None  # e.g. an old record without its per-user file
        return self._cache[seed]

    def runs(self, metric: str, seeds: Sequence[int] | None = None) -> list[np.ndarray] | None:
        """The per-user arrays of `metric`, one per seed (None when one is missing or the
        seeds' arrays differ in length)."""
        seeds = sorted(self.per_seed) if seeds is None else sorted(seeds)
        arrays = []
        for s in seeds:
            pu = self.arrays(s)
            if pu is None or metric not in pu:
                return None
            arrays.append(pu[metric])
        if not arrays or len({np.asarray(a).size for a in arrays}) != 1:
            return None
        return arrays

    def averaged(self, metric: str, seeds: Sequence[int] | None = None) -> np.ndarray | None:
        arrays = self.runs(metric, seeds)
        return None if arrays is None else seed_average(arrays)


@dataclass(frozen=True)
class Comparison:
    model: str  # A
    reference: str  # B
    kind: str  # "vs best baseline" | "best fusion vs baseline"
    metric: str
    seeds: tuple[int, ...]
    test: PairedTest  # per user, on seed-averaged values (the details)
    seed: SeedTest  # seeds and users (the markers)
    p_t_holm: float = float("nan")
    p_wilcoxon_holm: float = float("nan")
    p_seed_holm: float = float("nan")

    @property
    def significant(self) -> bool:
        """Holm-corrected seed-aware p < ALPHA (what drives the leaderboard's markers)."""
        return bool(np.isfinite(self.p_seed_holm) and self.p_seed_holm < ALPHA)

    @property
    def direction(self) -> int:
        """+1 when A is significantly better than B, -1 when worse, 0 otherwise."""
        if not self.significant or not np.isfinite(self.seed.diff) or self.seed.diff == 0:
            return 0
        return 1 if self.seed.diff > 0 else -1


@dataclass
class GroupStats:
    best_baseline: str | None
    best_fusion: str | None
    comparisons: list[Comparison]
    ci: dict[str, dict[str, tuple[float, float]]]  # label -> metric -> (lo, hi)
    n_users: dict[str, int]  # label -> users in the bootstrap (seed-averaged, finite)

    def against_best(self, label: str, metric: str) -> Comparison | None:
        return self._find("vs best baseline", label, metric)

    def lift(self, label: str, placebo: str, metric: str) -> Comparison | None:
        """The real run of `label` against its `placebo` control (None when not run)."""
        return self._find(placebo_kind(placebo), label, metric)

    def _find(self, kind: str, label: str, metric: str) -> Comparison | None:
        for c in self.comparisons:
            if c.kind == kind and c.model == label and c.metric == metric:
                return c
        return None


def placebo_kind(placebo: str) -> str:
    """The `Comparison.kind` of a model against its placebo control."""
    return f"vs {placebo} placebo"


def _best(models: Sequence[ModelRuns], keep: Callable[[ModelRuns], bool]) -> ModelRuns | None:
    cands = [m for m in models if keep(m) and np.isfinite(m.mean_primary)]
    if not cands:
        return None
    # highest mean; ties: alphabetical label first
    return sorted(cands, key=lambda m: (-m.mean_primary, m.label))[0]


def _compare(a: ModelRuns, b: ModelRuns, kind: str, metric: str) -> Comparison:
    seeds = tuple(sorted(set(a.per_seed) & set(b.per_seed)))
    nan = float("nan")
    test = PairedTest(0, nan, nan, nan, nan, nan, nan, nan)
    by_seed = SeedTest(0, 0, 0, nan, nan, nan, nan)
    if seeds:
        ra, rb = a.runs(metric, seeds), b.runs(metric, seeds)
        if ra is not None and rb is not None and ra[0].size == rb[0].size:
            test = paired_test(seed_average(ra), seed_average(rb))
            by_seed = seed_test(ra, rb, paired=True)  # the seeds both ran on, in the same order
    return Comparison(a.label, b.label, kind, metric, seeds, test, by_seed)


def compare_models(
    models: Sequence[ModelRuns],
    metrics: Sequence[str] = TESTED_METRICS,
    ci_metrics: Sequence[str] = (PRIMARY_METRIC, "ndcg@20"),
    n_resamples: int = 1000,
    seed: int = 0,
    placebos: Mapping[str, Mapping[str, ModelRuns]] | None = None,
    lift_metrics: Sequence[str] = LIFT_METRICS,
) -> GroupStats:
    """All comparisons of one table (see the module doc), Holm-corrected together. `placebos`
    (label -> placebo -> that model's placebo runs) adds each model's content lift: the real
    runs against the placebo's on the seeds both ran, for `lift_metrics`."""
    ref = _best(models, lambda m: m.is_baseline)
    fus = _best(models, lambda m: m.family == FUSION_FAMILY)
    pairs: list[tuple[ModelRuns, ModelRuns, str]] = []
    if ref is not None:
        pairs += [(m, ref, "vs best baseline") for m in models if m is not ref]
        if fus is not None:
            # fusion vs the best baseline is already in the list above
            pairs += [(fus, b, "best fusion vs baseline") for b in models if b.is_baseline and b is not ref]
    comps = [_compare(a, b, kind, metric) for a, b, kind in pairs for metric in metrics]
    by_label = {m.label: m for m in models}
    for label, controls in (placebos or {}).items():
        for placebo, runs in sorted(controls.items()):
            if label in by_label:
                comps += [_compare(by_label[label], runs, placebo_kind(placebo), m) for m in lift_metrics]
    pt = holm([c.test.p_t for c in comps])
    pw = holm([c.test.p_wilcoxon for c in comps])
    ps = holm([c.seed.p for c in comps])
    comps = [
        Comparison(c.model, c.reference, c.kind, c.metric, c.seeds, c.test, c.seed, float(x), float(y), float(z))
        for c, x, y, z in zip(comps, pt, pw, ps)
    ]
    ci: dict[str, dict[str, tuple[float, float]]] = {}
    n_users: dict[str, int] = {}
    for m in models:
        ci[m.label] = {}
        for metric in ci_metrics:
            x = m.averaged(metric)
            if x is None:
                continue
            ci[m.label][metric] = bootstrap_ci(x, n_resamples=n_resamples, seed=seed)
            n_users[m.label] = int(np.count_nonzero(~np.isnan(x)))
    return GroupStats(ref.label if ref else None, fus.label if fus else None, comps, ci, n_users)
