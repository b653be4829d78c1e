"""Findings: the few sentences at the top of each leaderboard section, written from the numbers.

Every sentence is generated from one table's rows, tests, segments and budget curves (never by
hand), so it changes when the records change. The rules:

1. The best model: highest mean test Recall@20 (the table's ordering), with its family.
2. The best fusion model against the best baseline: the Δ and the Holm-corrected seed-aware p
   that drive the markers; "better"/"worse" only where that test says so.
3. Content use: a fusion or content model "uses its content" only where its lift over both
   placebo controls is significant and positive; listed both ways. Without placebo runs the
   sentence says the question was not tested.
4. Where the best fusion model's lift over the best baseline is largest (item and user segments),
   and where its lift over the shuffled placebo is largest.
5. Whether the model ranking is stable under the tuning budget (Kendall tau at half vs full).
"""

from __future__ import annotations

import numpy as np

from .budget import STABLE_TAU
from .metrics import PRIMARY_METRIC
from .stats import ALPHA


def _p(p: float) -> str:
    return "–" if not np.isfinite(p) else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def _names(labels: list[str]) -> str:
    labels = [f"`{x}`" for x in labels]
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def findings(table, placebo_kinds: tuple[str, ...] = ("shuffle", "noise")) -> list[str]:
    """Three to five sentences about one table (a `tables.Table`)."""
    st = table.stats
    rows = [r for r in table.rows if np.isfinite(r.means.get(PRIMARY_METRIC, np.nan))]
    if not rows:
        return []
    out = []
    best = max(rows, key=lambda r: (r.means[PRIMARY_METRIC], r.label))
    vals = best.values(PRIMARY_METRIC)
    spread = f" ± {np.std(vals, ddof=1):.4f}" if len(vals) > 1 else ""
    out.append(
        f"The best model by test Recall@20 is `{best.label}` ({best.family}, "
        f"{best.means[PRIMARY_METRIC]:.4f}{spread} over {len(vals)} seed{'s' * (len(vals) != 1)})."
    )
    fus, ref = st.best_fusion, st.best_baseline
    means = {r.label: r.means.get(PRIMARY_METRIC, np.nan) for r in rows}
    if fus and ref:
        c = st.against_best(fus, PRIMARY_METRIC)
        verdict = {
            1: "significantly better than",
            -1: "significantly worse than",
            0: "not significantly different from",
        }
        d = c.test.diff if c is not None else np.nan
        out.append(
            f"The best fusion model, `{fus}` ({means[fus]:.4f}), is {verdict[c.direction if c else 0]} the best "
            f"baseline `{ref}` ({means[ref]:.4f}): Δ {d:+.4f}, seed-aware Holm p {_p(c.p_seed_holm if c else np.nan)}."
        )
    elif ref:
        out.append(f"No fusion model in this table; the best baseline is `{ref}`.")
    tested = [r for r in table.rows if all(k in r.placebos for k in placebo_kinds)]
    if tested:
        uses = [
            r.label
            for r in tested
            if all((c := st.lift(r.label, k, PRIMARY_METRIC)) is not None and c.direction > 0 for k in placebo_kinds)
        ]
        rest = [r.label for r in tested if r.label not in uses]
        parts = []
        if uses:
            parts.append(f"{_names(uses)} {'uses its' if len(uses) == 1 else 'use their'} content")
        if rest:
            parts.append(f"{_names(rest)} {'does' if len(rest) == 1 else 'do'} not")
        out.append(
            f"Of the {len(tested)} model{'s' * (len(tested) != 1)} run against the shuffled and the noise "
            f"placebo (using the content = a significant positive lift over both, seed-aware Holm p < {ALPHA}): "
            + "; ".join(parts)
            + "."
        )
    elif any(r.placebos for r in table.rows):
        out.append("Placebo controls were run for only some models or only one kind; content use is not concluded.")
    else:
        out.append(
            "No placebo controls in these records, so whether the models use their content is not tested "
            "(`--placebo shuffle,noise`)."
        )
    seg = table.segments
    if seg is not None:
        parts = []
        if seg.reference and (r := seg.largest(seg.reference)) is not None:
            lift = r.lifts[seg.reference]
            parts.append(
                f"`{seg.fusion}`'s difference to `{seg.reference}` is largest on {r.segment} "
                f"({lift.delta:+.4f}, 95% CI [{lift.ci[0]:+.4f}, {lift.ci[1]:+.4f}])"
            )
        shuffled = seg.placebos.get("shuffle")
        if shuffled and (r := seg.largest(shuffled)) is not None:
            lift = r.lifts[shuffled]
            parts.append(
                f"its lift over its shuffled placebo is largest on {r.segment} "
                f"({lift.delta:+.4f}, [{lift.ci[0]:+.4f}, {lift.ci[1]:+.4f}])"
            )
        if parts:
            out.append("By segment, " + "; ".join(parts) + ".")
    b = table.budget
    if b is not None and b.tau is not None:
        stable = "stable" if b.tau >= STABLE_TAU else "not yet stable"
        out.append(
            f"The ranking of the tuned models is {stable} under the tuning budget: Kendall τ {b.tau:.2f} "
            f"between {b.half} and {b.trials} trials."
        )
    return out
