"""The A/A check: how often do the leaderboard's tests call a model different from itself?

`python -m benchmark aa` reads the run records (no training) and, for every row of every table
with at least four seeds, splits the row's seeds into two groups in every way that keeps the
first seed in the first group (six seeds: the 10 splits 3 against 3), and tests group against
group, once with the per-user paired Wilcoxon on seed-averaged values (what the leaderboard's
markers used before the seed-aware test) and once with the seed-aware test
(`benchmark.stats.seed_test`, what they use now). Both groups are the same model with the same
configuration, so every "significant" result is a false positive: a test that holds its level
calls at most ALPHA of the splits significant. Splits of one row share seeds and are not
independent; the pooled rate over rows is the number to read, the per-row counts say where.

Each split is one hypothesis, tested at ALPHA without correction (as a single comparison on the
leaderboard would be before Holm). Records with more seeds are made by the ordinary `run ...
--seeds N`; the rows' configuration is whatever the records hold (tuned or defaults).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
from tabulate import tabulate

from datasets.errors import FusebenchError

from .metrics import PRIMARY_METRIC
from .records import RecordStore
from .stats import ALPHA, paired_test, seed_average, seed_test
from .tables import _model_runs, build_tables

MIN_SEEDS = 4  # two groups of at least two seeds: the seed-aware test needs two per group


@dataclass(frozen=True)
class AARow:
    dataset: str
    model: str
    seeds: tuple[int, ...]
    splits: int
    wilcoxon: int  # splits called significant by the per-user Wilcoxon
    seed_aware: int  # ... by the seed-aware test
    seed_aware_p: tuple[float, ...]
    wilcoxon_p: tuple[float, ...]


def splits(seeds: list[int]) -> list[tuple[list[int], list[int]]]:
    """Every split of `seeds` into a first group of len // 2 holding seeds[0] and the rest."""
    first, rest = seeds[0], seeds[1:]
    k = len(seeds) // 2
    out = []
    for group in combinations(rest, k - 1):
        a = [first, *group]
        out.append((a, [s for s in rest if s not in group]))
    return out


def check(records: list[dict], metric: str = PRIMARY_METRIC, dataset: str | None = None) -> list[AARow]:
    rows = []
    for t in build_tables(records, n_resamples=1):
        if dataset is not None and t.dataset != dataset:
            continue
        for row in t.rows:
            seeds = sorted(row.seeds)
            if len(seeds) < MIN_SEEDS:
                continue
            runs = _model_runs(row)
            if runs.runs(metric, seeds) is None:
                continue  # per-user files missing
            pw, ps = [], []
            for a, b in splits(seeds):
                ra, rb = runs.runs(metric, a), runs.runs(metric, b)
                pw.append(paired_test(seed_average(ra), seed_average(rb)).p_wilcoxon)
                ps.append(seed_test(ra, rb).p)
            rows.append(
                AARow(
                    t.dataset,
                    row.label,
                    tuple(seeds),
                    len(ps),
                    int(np.sum(np.array(pw) < ALPHA)),
                    int(np.sum(np.array(ps) < ALPHA)),
                    tuple(ps),
                    tuple(pw),
                )
            )
    return rows


def report(rows: list[AARow], metric: str = PRIMARY_METRIC) -> str:
    if not rows:
        return (
            f"No row with {MIN_SEEDS} or more seeds in the records: run the models with "
            f"`python -m benchmark run ... --seeds 6` first."
        )
    table = [
        [
            r.dataset,
            r.model,
            len(r.seeds),
            r.splits,
            f"{r.wilcoxon}",
            f"{r.seed_aware}",
            f"{min(r.wilcoxon_p):.2g}",
            f"{min(r.seed_aware_p):.2g}",
        ]
        for r in rows
    ]
    n = sum(r.splits for r in rows)
    w = sum(r.wilcoxon for r in rows)
    s = sum(r.seed_aware for r in rows)
    lines = [
        f"A/A check on test {metric}: each row's seeds split into two groups of the same model; "
        f"splits called significant at p < {ALPHA} (false positives; a test at its level calls at "
        f"most {ALPHA:.0%} of them).",
        "",
        tabulate(
            table,
            headers=[
                "dataset",
                "model",
                "seeds",
                "splits",
                "per-user Wilcoxon",
                "seed-aware",
                "min p Wilcoxon",
                "min p seed-aware",
            ],
            tablefmt="github",
            disable_numparse=True,
        ),
        "",
        f"Pooled over {len(rows)} rows, {n} splits: per-user Wilcoxon {w} ({w / n:.0%}), seed-aware {s} ({s / n:.0%}).",
    ]
    return "\n".join(lines)


def run(results: str | Path, metric: str = PRIMARY_METRIC, dataset: str | None = None) -> str:
    store = RecordStore(results)
    records = [r for r in store.records() if not r.get("failed")]
    if not records:
        raise FusebenchError(f"no run records under {Path(results) / 'runs'}")
    if not any(metric in (r.get("test") or {}) for r in records):
        raise FusebenchError(f"unknown metric {metric!r}: the records hold e.g. {PRIMARY_METRIC}, ndcg@20")
    return report(check(records, metric, dataset), metric)
