"""Where content helps: test Recall@20 by segment of items and of users.

Segments (per seed, from that seed's split):

- **Items by popularity.** *Head*: the most popular items (training interactions, ties by item
  index) that together hold HEAD_SHARE (20 %) of the training interactions; *tail*: every other
  item. A user's head (tail) recall is the share of their head (tail) test items in the top 20,
  left out for a user without test items in that group. Computed at evaluation from the same
  lists as every other metric (`evaluate(item_groups=...)`, per-user `recall@20|head` / `|tail`).
- **Users by activity.** Quartiles of the test users' training interactions (Q1 = least active),
  each user's ordinary Recall@20. The counts are stored beside the per-user metrics
  (USER_ACTIVITY).

Per table, the segments compare the best baseline (the reference), the best fusion model and
the best fusion model's placebo controls: each model's mean over users of seed-averaged values
in the segment, and the lift (best fusion minus the reference, minus each placebo) with a 95%
percentile bootstrap interval over users (`stats.bootstrap_ci` of the paired per-user
differences). Records made before these arrays existed have no segments (the page says so).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metrics import PRIMARY_METRIC
from .stats import bootstrap_ci, seed_average

HEAD_SHARE = 0.2
USER_ACTIVITY = "train_interactions"  # per-user training interactions, in the per-user file
ITEM_GROUPS = ("head", "tail")
USER_QUARTILES = ("users Q1", "users Q2", "users Q3", "users Q4")
SEGMENTS = ("all", "head items", "tail items", *USER_QUARTILES)


def head_items(popularity: np.ndarray) -> np.ndarray:
    """Boolean mask of the head items: the most popular that together hold HEAD_SHARE of the
    interactions (at least one item when there are any)."""
    pop = np.asarray(popularity, dtype=np.float64).ravel()
    mask = np.zeros(pop.size, dtype=bool)
    total = pop.sum()
    if total <= 0:
        return mask
    order = np.lexsort((np.arange(pop.size), -pop))  # most popular first, ties by item index
    n_head = int(np.searchsorted(np.cumsum(pop[order]), HEAD_SHARE * total)) + 1
    mask[order[:n_head]] = True
    return mask


def item_groups(popularity: np.ndarray) -> dict[str, np.ndarray]:
    head = head_items(popularity)
    return {"head": head, "tail": ~head}


def stored_arrays(per_user: dict[str, np.ndarray], split) -> dict[str, np.ndarray]:
    """What a record's per-user file holds: the per-user metrics (float32) and each user's
    training interactions (the user segments). One rule for the runner and `score`."""
    out = {k: np.asarray(v).astype(np.float32) for k, v in per_user.items()}
    out[USER_ACTIVITY] = np.diff(split.train.tocsr().indptr).astype(np.float32)
    return out


def segment_arrays(per_user: dict[str, np.ndarray], metric: str = PRIMARY_METRIC) -> dict[str, np.ndarray] | None:
    """segment -> per-user values of one seed (NaN outside the segment); None for a record made
    before the segment arrays."""
    need = [f"{metric}|{g}" for g in ITEM_GROUPS] + [USER_ACTIVITY, metric]
    if any(k not in per_user for k in need):
        return None
    x = np.asarray(per_user[metric], dtype=np.float64)
    out = {"all": x, "head items": per_user[f"{metric}|head"], "tail items": per_user[f"{metric}|tail"]}
    counts = np.asarray(per_user[USER_ACTIVITY], dtype=np.float64)
    tested = ~np.isnan(x)
    edges = np.quantile(counts[tested], [0.25, 0.5, 0.75]) if tested.any() else np.zeros(3)
    bins = np.searchsorted(edges, counts, side="left")  # Q1: <= first quartile, ... Q4: above the third
    for q, name in enumerate(USER_QUARTILES):
        out[name] = np.where(bins == q, x, np.nan)
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


@dataclass(frozen=True)
class Lift:
    delta: float
    ci: tuple[float, float]
    users: int


@dataclass(frozen=True)
class SegmentRow:
    segment: str
    users: int  # users in the segment (the best fusion model's, seed-averaged)
    means: dict[str, float]  # label -> mean over users
    lifts: dict[str, Lift]  # compared label -> best fusion minus it


@dataclass(frozen=True)
class SegmentTable:
    fusion: str
    reference: str | None
    placebos: dict[str, str]  # placebo kind -> label shown
    rows: list[SegmentRow]

    def largest(self, against: str) -> SegmentRow | None:
        """The segment (besides `all`) where the best fusion model's lift over `against` is largest."""
        rows = [
            r for r in self.rows if r.segment != "all" and against in r.lifts and np.isfinite(r.lifts[against].delta)
        ]
        return max(rows, key=lambda r: r.lifts[against].delta, default=None)


def _averaged(per_seed: dict[int, dict[str, np.ndarray] | None], seeds: list[int]) -> dict[str, np.ndarray] | None:
    parts = [per_seed.get(s) for s in seeds]
    if not parts or any(p is None for p in parts):
        return None
    return {seg: seed_average([p[seg] for p in parts]) for seg in SEGMENTS}


def _mean(x: np.ndarray) -> float:
    ok = ~np.isnan(x)
    return float(x[ok].mean()) if ok.any() else float("nan")


def segment_table(
    fusion: tuple[str, dict[int, dict[str, np.ndarray] | None]],
    reference: tuple[str, dict[int, dict[str, np.ndarray] | None]] | None,
    placebos: dict[str, tuple[str, dict[int, dict[str, np.ndarray] | None]]],
    n_resamples: int = 1000,
) -> SegmentTable | None:
    """The segment table of one leaderboard table from each model's per-seed segment arrays
    (`segment_arrays`); None when the best fusion model's records have none."""
    f_label, f_seeds = fusion
    others = ([reference] if reference else []) + [placebos[p] for p in sorted(placebos)]
    seeds = sorted(set(f_seeds).intersection(*[set(o[1]) for o in others]) if others else f_seeds)
    f = _averaged(f_seeds, seeds)
    if f is None:
        return None
    cmp = {}
    for label, per_seed in others:
        avg = _averaged(per_seed, seeds)
        if avg is not None:
            cmp[label] = avg
    rows = []
    for seg in SEGMENTS:
        means = {f_label: _mean(f[seg])}
        lifts = {}
        for label, avg in cmp.items():
            means[label] = _mean(avg[seg])
            d = f[seg] - avg[seg]
            ok = ~np.isnan(d)
            lifts[label] = Lift(_mean(d), bootstrap_ci(d, n_resamples=n_resamples), int(ok.sum()))
        rows.append(SegmentRow(seg, int(np.count_nonzero(~np.isnan(f[seg]))), means, lifts))
    shown = {p: label for p, (label, _) in placebos.items() if label in cmp}
    ref = reference[0] if reference and reference[0] in cmp else None
    return SegmentTable(f_label, ref, shown, rows)
