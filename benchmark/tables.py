"""The leaderboard's numbers: run records -> rows (one per model and table, seeds grouped, the
selection rule applied) -> tables with their statistics (`benchmark.stats`), and the
machine-readable form of them (`leaderboard_data`, LEADERBOARD.json). `benchmark.leaderboard`
renders these tables; nothing here formats text for the page.

Records are read as `benchmark.records.RunRecord`s (upgraded from older forms on reading)."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from datasets.placebo import PLACEBOS

from . import budget
from .findings import findings
from .metrics import PRIMARY_METRIC
from .protocol import DEFAULT_SETTINGS
from .records import RunRecord
from .segments import SegmentTable, segment_arrays, segment_table
from .stats import LIFT_METRICS, TESTED_METRICS, GroupStats, ModelRuns, compare_models

COLUMNS = (
    ("recall@10", "Recall@10"),
    ("recall@20", "Recall@20"),
    ("ndcg@10", "NDCG@10"),
    ("ndcg@20", "NDCG@20"),
    ("mrr@20", "MRR@20"),
    ("item_coverage@20", "Coverage@20"),
)
COLD_START = "cold-start-items"


# --- record fields: read through benchmark.records.RunRecord --------------------------------


def _budget(t: dict[str, Any] | None) -> str:
    if t is None:
        return "defaults"
    if t.get("budget"):
        return str(t["budget"])
    out = f"{int(t['trials'])} trials"
    if t.get("timeout"):
        out += f", ≤{float(t['timeout']):g} s"
    return out


def _label(rec: RunRecord) -> str:
    """Model name, plus the parameters that differ from its defaults (untuned rows)."""
    diff = rec.changed_params()
    if not diff:
        return rec.model_name
    return f"{rec.model_name} ({', '.join(f'{k}={_short(v)}' for k, v in sorted(diff.items()))})"


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


# --- tables --------------------------------------------------------------------------------


@dataclass
class Row:
    model: str
    label: str
    family: str
    records: list[RunRecord]  # sorted by seed
    tuning: dict[str, Any] | None
    means: dict[str, float] = field(default_factory=dict)
    # placebo -> the runs of this configuration on placebo content (its controls; not in the means)
    placebos: dict[str, Row] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return [r.run_seed for r in self.records]

    def values(self, key: str) -> list[float]:
        return [r.number(key, "test") for r in self.records]

    @property
    def capped(self) -> bool:
        """Some seed's training ended at the epoch bound, not by patience: not converged."""
        return any(r.stopped_at_bound for r in self.records)

    def train_seconds(self) -> float:
        v = [r.number("train_seconds") for r in self.records]
        v = [x for x in v if np.isfinite(x)]
        return float(np.mean(v)) if v else float("nan")


@dataclass
class Table:
    key: tuple
    title: str
    dataset: str
    protocol: str
    settings: dict[str, Any]
    rows: list[Row]
    dropped: dict[str, int]  # model -> hyper-parameter sets not shown
    stats: GroupStats
    first: RunRecord  # one record, for dataset facts
    plot: str | None = None  # path relative to the results folder
    extra: list[str] = field(default_factory=list)  # what tells tables with the same title apart
    segments: SegmentTable | None = None  # where content helps (benchmark.segments)
    budget: Any = None  # benchmark.budget.BudgetCurves, read from the studies when the page is written
    budget_plot: str | None = None

    @property
    def cold_start(self) -> bool:
        return self.protocol == COLD_START


def _group_key(rec: RunRecord) -> tuple:
    ds = rec["dataset"]
    return (
        ds["name"],
        rec.protocol,
        rec.split_params,
        ds.get("rating_threshold"),
        ds.get("fingerprint"),
        json.dumps(rec.settings, sort_keys=True),
    )


def _select_rows(records: list[RunRecord]) -> tuple[list[Row], dict[str, int]]:
    """One row per model: group seeds of one parameter set, then apply the selection rule."""
    variants: dict[str, dict[str, list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    controls: dict[tuple[str, str, str], list[RunRecord]] = defaultdict(list)
    for rec in records:
        if rec["placebo"] is None:
            variants[rec.model_name][rec.variant].append(rec)
        else:
            controls[(rec.model_name, rec.variant, rec["placebo"])].append(rec)
    rows, dropped = [], {}
    for name, by_params in variants.items():
        cands = []
        for pkey, recs in by_params.items():
            recs = _one_per_seed(recs)
            tuning = next((r.tuned for r in recs if r.tuned), None)
            label = name if tuning else _label(recs[0])  # tuned parameters are listed under the table
            row = Row(name, label, recs[0].family, recs, tuning)
            for placebo in PLACEBOS:
                if crecs := controls.get((name, pkey, placebo)):
                    row.placebos[placebo] = Row(
                        name, f"{label} [{placebo} placebo]", row.family, _one_per_seed(crecs), tuning
                    )
            cands.append(row)
        cands.sort(
            key=lambda r: (r.tuning is not None, max(x.created for x in r.records), len(r.records), r.label),
            reverse=True,
        )
        rows.append(cands[0])
        if len(cands) > 1:
            dropped[name] = len(cands) - 1
    for row in [*rows, *(p for r in rows for p in r.placebos.values())]:
        row.means = {key: _mean_finite(row.values(key)) for key, _ in COLUMNS}
    rows.sort(key=lambda r: (-_nan_low(r.means.get(PRIMARY_METRIC)), r.label))
    return rows, dropped


def _one_per_seed(recs: list[RunRecord]) -> list[RunRecord]:
    """One record per seed, by seed (a rerun with --force replaces the file; keep the newest anyway)."""
    per_seed: dict[int, RunRecord] = {}
    for r in sorted(recs, key=lambda r: r.created):
        per_seed[r.run_seed] = r
    return [per_seed[s] for s in sorted(per_seed)]


def _mean_finite(values: list[float]) -> float:
    vals = [v for v in values if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def _nan_low(x) -> float:
    return -np.inf if x is None or not np.isfinite(x) else x


def _model_runs(row: Row) -> ModelRuns:
    per_seed = {r.run_seed: r.per_user for r in row.records}
    return ModelRuns(row.label, row.family, row.means.get(PRIMARY_METRIC, float("nan")), per_seed)


def _same_evaluation(table_key: tuple, ext_key: tuple) -> bool:
    """An external record belongs in a table of the same data, split and test-time protocol;
    the selection settings (validation metric, patience) do not apply to it."""
    if table_key[:5] != ext_key[:5]:
        return False
    a, b = json.loads(table_key[5]), json.loads(ext_key[5])
    return all(a[k] == b[k] for k in ("protocol", "mask_valid_at_test"))


def _segments(
    stats: GroupStats, runs: dict[str, ModelRuns], placebos: dict[str, dict[str, ModelRuns]], n_resamples: int
) -> SegmentTable | None:
    """The best fusion model against the reference and its own placebos, by segment."""
    if stats.best_fusion is None:
        return None

    def per_seed(m: ModelRuns) -> dict[int, dict[str, np.ndarray] | None]:
        return {s: (segment_arrays(pu) if (pu := m.arrays(s)) is not None else None) for s in m.per_seed}

    fus = stats.best_fusion
    ref = (stats.best_baseline, per_seed(runs[stats.best_baseline])) if stats.best_baseline else None
    controls = {k: (f"{fus} ({k} placebo)", per_seed(m)) for k, m in placebos.get(fus, {}).items()}
    return segment_table((fus, per_seed(runs[fus])), ref, controls, n_resamples=n_resamples)


def build_tables(records: list[dict[str, Any]], n_resamples: int = 1000) -> list[Table]:
    """One table per dataset/protocol group, rows selected and statistics computed. An external
    system's record joins every table of its data, split and test protocol (else one of its own)."""
    records = [RunRecord.of(r) for r in records]
    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    for rec in records:
        if not rec.external:
            groups[_group_key(rec)].append(rec)
    for rec in (r for r in records if r.external):
        key = _group_key(rec)
        for g in [g for g in groups if _same_evaluation(g, key)] or [key]:
            groups[g].append(rec)
    tables = []
    for gkey, recs in sorted(groups.items(), key=lambda kv: json.dumps(kv[0], default=str)):
        rows, dropped = _select_rows(recs)
        placebos = {r.label: {k: _model_runs(p) for k, p in r.placebos.items()} for r in rows if r.placebos}
        runs = [_model_runs(r) for r in rows]
        stats = compare_models(runs, n_resamples=n_resamples, placebos=placebos)
        segs = _segments(stats, {m.label: m for m in runs}, placebos, n_resamples)
        name, protocol = gkey[0], gkey[1]
        settings = json.loads(gkey[5])
        title = f"{name} ({protocol} split"
        if settings["protocol"] != "fusebench":
            title += f", {'MMRec' if settings['protocol'] == 'mmrec' else settings['protocol']} protocol"
        title += ")"
        first = next((r for r in recs if not r.external), recs[0])  # the table's facts: a trained run's
        tables.append(Table(gkey, title, name, protocol, settings, rows, dropped, stats, first, segments=segs))
    # disambiguate tables that would share a title (other threshold, settings, split or data version)
    same: dict[str, list[Table]] = defaultdict(list)
    for t in tables:
        same[t.title].append(t)
    for group in same.values():
        if len(group) < 2:
            continue
        for i, k in ((1, "split"), (3, "threshold"), (4, "data"), (5, "settings")):
            if len({t.key[i] for t in group}) < 2:
                continue
            for t in group:
                t.extra.append(_distinguish(t, k))
        for t in group:
            t.extra = [x for x in t.extra if x] or [f"#{_short_hash(t.key)}"]
            t.title += f" [{'; '.join(t.extra)}]"
    return tables


def _nondefault_settings(s: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in s.items() if k not in ("protocol", "mask_valid_at_test") and DEFAULT_SETTINGS.get(k) != v}


def _distinguish(t: Table, what: str) -> str:
    if what == "split":
        return f"split {t.first.split_params}"
    if what == "threshold":
        thr = t.first["dataset"].get("rating_threshold")
        return "all ratings" if thr is None else f"ratings >= {thr:g}"
    if what == "data":
        return f"data sha256 {str(t.first['dataset'].get('fingerprint'))[:8]}"
    diff = _nondefault_settings(t.settings)
    return ", ".join(f"{k}={v}" for k, v in sorted(diff.items())) or "default settings"


def _short_hash(key) -> str:
    return hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()[:6]


def _short_hashes(row: Row) -> list[str]:
    """The distinct short SHA-256s of the code or run files behind a row's seeds."""
    out = []
    for r in row.records:
        src = r.code
        if src is not None and str(src["sha256"])[:8] not in out:
            out.append(str(src["sha256"])[:8])
    return out


def _finite(x) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _test_data(c) -> dict[str, float | None]:
    """One comparison's numbers: Δ, the Holm-corrected seed-aware p (the markers') and the
    per-user Wilcoxon's (the details')."""
    return {
        "delta": _finite(c.test.diff),
        "p_holm": _finite(c.p_seed_holm),
        "p_holm_wilcoxon": _finite(c.p_wilcoxon_holm),
    }


def _placebo_lift(t: Table, row: Row) -> dict[str, Any] | None:
    """{placebo: {metric: {"delta", "p_holm", "p_holm_wilcoxon", "seeds"}}} with placebo controls, else None."""
    if not row.placebos:
        return None
    out = {}
    for placebo in sorted(row.placebos):
        out[placebo] = {}
        for metric in LIFT_METRICS:
            c = t.stats.lift(row.label, placebo, metric)
            if c is not None:
                out[placebo][metric] = {**_test_data(c), "seeds": len(c.seeds)}
    return out


def _segments_data(seg: SegmentTable | None) -> dict[str, Any] | None:
    if seg is None:
        return None
    return {
        "fusion": seg.fusion,
        "reference": seg.reference,
        "placebos": seg.placebos,
        "rows": [
            {
                "segment": r.segment,
                "users": r.users,
                "recall@20": {k: _finite(v) for k, v in r.means.items()},
                "lift": {
                    k: {"delta": _finite(x.delta), "ci95": [_finite(x.ci[0]), _finite(x.ci[1])], "users": x.users}
                    for k, x in r.lifts.items()
                },
            }
            for r in seg.rows
        ],
    }


def leaderboard_data(tables: list[Table]) -> dict[str, Any]:
    """The leaderboard's numbers, machine-readable: what LEADERBOARD.json holds and
    `benchmark.api.leaderboard` returns as DataFrames. One entry per table, keyed by its dataset
    (by its title where one dataset has several tables); every value comes from the same rows,
    reference and Holm-corrected tests as the Markdown page. NaN is written as null."""
    datasets = [t.dataset for t in tables]
    out = {}
    for t in tables:
        models = {}
        for row in t.rows:
            test = {}
            for metric in sorted({k for r in row.records for k in (r.get("test") or {})}):
                vals = [v for v in row.values(metric) if np.isfinite(v)]
                test[metric] = {
                    "mean": float(np.mean(vals)) if vals else None,
                    "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
                    "seeds": len(vals),
                }
            versus = {}
            for metric in TESTED_METRICS:
                c = t.stats.against_best(row.label, metric)
                if c is not None:
                    versus[metric] = _test_data(c)
            models[row.label] = {
                "name": row.model,
                "family": row.family,
                "reference": row.label == t.stats.best_baseline,
                "test": test,
                "placebo_lift": _placebo_lift(t, row),
                "vs_reference": versus or None,
                "stopped_by_cap": row.capped,
                "train_seconds": _finite(row.train_seconds()),
            }
        key = t.dataset if datasets.count(t.dataset) == 1 else t.title
        out[key] = {
            "title": t.title,
            "protocol": t.protocol,
            "settings": t.settings,
            "models": models,
            "budget": budget.data(t.budget),
            "segments": _segments_data(t.segments),
            "findings": findings(t),
        }
    return {"datasets": out}
