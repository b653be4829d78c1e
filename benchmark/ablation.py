"""Modality ablation: which modality matters on which data.

`python -m benchmark ablate --dataset D --model M` runs the model with every modality it can
read, then once with each modality removed (and, with three or more, with each one alone), on
the same splits and seeds, through the ordinary runner (so every variant is a normal run
record, resumable and skipped when already done). The table compares each variant with the
full model: mean test metric ± std over seeds, the change, and the leaderboard's seed-aware
test (`benchmark.stats.seed_test`, Holm-corrected over the table; two seeds or more). A large
drop when m is removed says the model relies on m; no drop says m adds nothing the others (or
the interactions) do not carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tabulate import tabulate

from baselines.base import get_model_class
from datasets import MultimodalDataset, Split
from datasets.download import atomic_write
from datasets.errors import FusebenchError

from .protocol import Protocol
from .records import RecordStore
from .seed_run import run_one
from .stats import holm, seed_test

METRICS = ("recall@20", "ndcg@20")


@dataclass
class Variant:
    label: str
    modalities: list[str]


def variants(names: list[str]) -> list[Variant]:
    """All modalities, then each one removed, then (with 3+) each one alone."""
    out = [Variant("all", list(names))]
    if len(names) > 1:
        out += [Variant(f"without {m}", [n for n in names if n != m]) for m in names]
    if len(names) > 2:
        out += [Variant(f"only {m}", [m]) for m in names]
    return out


def ablate(
    store: RecordStore,
    dataset: MultimodalDataset,
    splits: list[Split],
    model_name: str,
    params: dict | None = None,
    cfg: Protocol | None = None,
    *,
    modalities: list[str] | None = None,
    force: bool = False,
    on_run: Callable[[str, int, dict | None], None] | None = None,
) -> str:
    """Run every variant on every split; return the Markdown report."""
    cls = get_model_class(model_name)
    if "modalities" not in cls.param_names():
        raise FusebenchError(f"model {model_name!r} does not read item features: nothing to ablate")
    params = dict(params or {})
    if "modalities" in params:
        raise FusebenchError("ablate chooses the modalities itself; pass the set to start from with --modalities")
    names = list(modalities or dataset.features)
    if not names:
        raise FusebenchError(f"dataset {dataset.name!r} has no item features: nothing to ablate")
    unknown = [n for n in names if n not in dataset.features]
    if unknown:
        raise FusebenchError(f"unknown modality {unknown[0]!r}; {dataset.name} has: {', '.join(dataset.features)}")
    cfg = cfg or Protocol()
    per_variant: dict[str, list[tuple[dict, dict]]] = {}
    for v in variants(names):
        for split in splits:
            out = run_one(
                store, dataset, split, model_name, {**params, "modalities": ",".join(v.modalities)}, cfg, force=force
            )
            rec = out.located()
            if rec.get("failed"):
                raise FusebenchError(
                    f"{model_name} ({v.label}) seed {split.seed} diverged ({rec['failed']}); its "
                    f"failure is recorded in {rec.path}"
                )
            if on_run is not None:
                on_run(v.label, split.seed, None if out.status == "skipped" else out.record)
            per_variant.setdefault(v.label, []).append((rec, RecordStore.per_user(rec)))
    return report(dataset.name, model_name, variants(names), per_variant)


def report(dataset: str, model: str, vs: list[Variant], runs: dict[str, list[tuple[dict, dict]]]) -> str:
    full = runs["all"]
    rows, tests = [], []
    for v in vs:
        recs = runs[v.label]
        row = [v.label, ", ".join(v.modalities)]
        for metric in METRICS:
            vals = np.array([r["test"][metric] for r, _ in recs])
            ref = np.mean([r["test"][metric] for r, _ in full])
            std = f" ± {vals.std(ddof=1):.4f}" if len(vals) > 1 else ""
            row.append(f"{vals.mean():.4f}{std}")
            row.append("" if v.label == "all" else f"{(vals.mean() - ref) / ref * 100:+.1f}%" if ref else "n/a")
            if v.label != "all":
                a, b = [pu[metric] for _, pu in recs], [pu[metric] for _, pu in full]
                tests.append((len(rows), len(row) - 1, seed_test(a, b, paired=True).p))  # same seeds
        rows.append(row)
    adjusted = holm([p for _, _, p in tests])
    for (i, j, _), p in zip(tests, adjusted):
        if np.isfinite(p):
            rows[i][j] += f" (p={p:.2g})" if p >= 1e-4 else " (p<1e-4)"
    headers = ["variant", "modalities"]
    for metric in METRICS:
        headers += [metric.replace("recall", "Recall").replace("ndcg", "NDCG"), "Δ vs all"]
    seeds = sorted({r["seed"] for r, _ in full})
    first = full[0][0]
    lines = [
        f"# Modality ablation: {model} on {dataset}",
        "",
        f"Split protocol `{first['split']['protocol']}`, seeds {seeds}, evaluation protocol "
        f"`{first['training'].get('protocol', 'fusebench')}`; the model's other hyper-parameters: "
        f"{_params(first)}. Test metrics, mean ± std over seeds; Δ is relative to the run with all "
        "modalities; p: the seed-aware two-sided t-test against `all` (training seeds and users both "
        "sources of chance, as on the leaderboard; not run with one seed), Holm-corrected over the table.",
        "",
        tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True),
        "",
    ]
    return "\n".join(lines)


def _params(rec: dict) -> str:
    p = {k: v for k, v in rec["model"]["params"].items() if k != "modalities"}
    return ", ".join(f"{k}={v}" for k, v in sorted(p.items())) or "(none)"


def write_report(results_dir: str | Path, dataset: str, model: str, text: str) -> Path:
    safe = lambda s: s.replace("/", "_").replace(":", "_")  # noqa: E731
    path = Path(results_dir) / "ablations" / f"{safe(dataset)}__{safe(model)}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(text.encode()))
    return path
