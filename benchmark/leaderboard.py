"""results/LEADERBOARD.md, regenerated from the run records (never edited by hand)."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from .records import RecordStore, _atomic_write

COLUMNS = (
    ("recall@10", "Recall@10"),
    ("recall@20", "Recall@20"),
    ("ndcg@10", "NDCG@10"),
    ("ndcg@20", "NDCG@20"),
    ("mrr@20", "MRR@20"),
    ("item_coverage@20", "Coverage@20"),
)

CONVENTIONS = """\
Metric conventions (RecBole/MMRec): binary relevance; full ranking over all items (no sampled
negatives); train items masked at validation, train and valid items masked at test;
Recall@k = hits/|R|; NDCG@k with gains 1/log2(rank+1) and ideal DCG over min(|R|, k);
MRR@k = 1/rank of the first hit within k; Coverage@k = share of all items recommended to at
least one test user. Users without test items are left out of every mean. Hyper-parameters
and the early-stopping epoch are selected on validation Recall@20 only, never on test.
Values are mean ± std over seeds (std shown when there are at least two seeds)."""


def _label(rec: dict[str, Any]) -> str:
    """Model name, plus the parameters that differ from its defaults."""
    m = rec["model"]
    diff = {k: v for k, v in m["params"].items() if m.get("defaults", {}).get(k) != v}
    if not diff:
        return m["name"]
    return f"{m['name']} ({', '.join(f'{k}={v}' for k, v in sorted(diff.items()))})"


def _fmt(values: list[float]) -> str:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return "–"
    mean = float(np.mean(values))
    if len(values) < 2:
        return f"{mean:.4f}"
    return f"{mean:.4f} ± {float(np.std(values, ddof=1)):.4f}"


def _fmt_seconds(values: list[float]) -> str:
    m = float(np.mean(values))
    return f"{m:.2f}" if m < 10 else f"{m:.0f}"


def _fmt_count(n: int) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def build_tables(records: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """One (title, protocol line, markdown table) per dataset/protocol group."""
    groups: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        ds = rec["dataset"]
        gkey = (ds["name"], rec["split"]["protocol"], json.dumps(rec["split"]["params"], sort_keys=True),
                ds.get("rating_threshold"))
        groups[gkey][_label(rec)].append(rec)
    out = []
    for (name, protocol, sparams, threshold), by_model in sorted(groups.items(), key=lambda kv: str(kv[0])):
        rows, means = [], []
        for label, recs in sorted(by_model.items()):
            recs = sorted(recs, key=lambda r: r["seed"])
            first = recs[0]
            row = [label, first["model"]["family"], ", ".join(first["model"].get("modalities") or []) or "–"]
            mrow = []
            for key, _ in COLUMNS:
                vals = [r["test"].get(key) for r in recs]
                row.append(_fmt(vals))
                finite = [v for v in vals if v is not None and np.isfinite(v)]
                mrow.append(np.mean(finite) if finite else -np.inf)
            row += [
                str(len(recs)),
                _fmt_seconds([r["train_seconds"] for r in recs]),
                _fmt_seconds([r["eval_seconds"] for r in recs]),
                _fmt_count(int(first["model"]["n_parameters"])),
            ]
            rows.append(row)
            means.append(mrow)
        # bold the best mean of each metric column (ties: all of them)
        means = np.array(means, dtype=float)
        for j in range(len(COLUMNS)):
            best = means[:, j].max()
            for i in range(len(rows)):
                if np.isfinite(best) and np.isclose(means[i, j], best, rtol=0, atol=5e-5):
                    rows[i][3 + j] = f"**{rows[i][3 + j]}**"
        headers = ["Model", "Family", "Modalities", *(h for _, h in COLUMNS), "Seeds", "Train s", "Eval s", "Params"]
        table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
        first = next(iter(by_model.values()))[0]
        ds = first["dataset"]
        implicit = "every rating is a positive" if threshold is None else f"ratings >= {threshold} are positives"
        line = (
            f"{ds['n_users']:,} users, {ds['n_items']:,} items, {ds['n_interactions']:,} interactions; "
            f"split `{protocol}` {sparams}; {implicit}; {first['n_test_users']:,} test users; "
            f"dataset sha256 `{ds['fingerprint'][:12]}`."
        )
        out.append((f"{name} ({protocol} split)", line, table))
    return out


def render(records: list[dict[str, Any]]) -> str:
    revs = sorted({r["provenance"].get("git_revision") or "unknown" for r in records})
    devices = sorted({r["provenance"].get("device", "?") for r in records})
    parts = [
        "# fusebench leaderboard",
        "",
        f"Generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} from {len(records)} run records "
        f"(code revisions: {', '.join(f'`{r[:12]}`' for r in revs)}; devices: {'; '.join(devices)}). "
        "Regenerate with `python -m benchmark leaderboard`; reproduce with `python -m benchmark run --all`.",
        "",
        CONVENTIONS,
        "",
        "Best mean per metric in **bold**. Train s: wall-clock training time (validation passes excluded); "
        "Eval s: one full-ranking test pass; Params: learned scalars used at scoring.",
    ]
    if not records:
        parts += ["", "_No run records yet: run `python -m benchmark run --all`._"]
    for title, line, table in build_tables(records):
        parts += ["", f"## {title}", "", line, "", table]
    return "\n".join(parts) + "\n"


def write_leaderboard(results_dir: str | Path) -> Path:
    store = RecordStore(results_dir)
    text = render(list(store.records()))
    path = Path(results_dir) / "LEADERBOARD.md"
    _atomic_write(path, lambda f: f.write(text.encode()))
    return path
