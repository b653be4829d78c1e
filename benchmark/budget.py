"""Budget curves: is the tuning budget large enough for the ranking of the models to settle?

From the stored Optuna studies of a table's tuned rows (each record's `tuning.study` in the
results folder's SQLite storage, where `run` keeps them by default): a model's best validation
metric so far after each trial (complete trials only, as the study's best trial is chosen;
trial 0 is the defaults; every trial of an iterative model at the same epoch cap), and the
Kendall tau between the ranking of the models by that value after half the budget
(`len // 2` trials) and after the whole budget. A tau near 1 says more trials would hardly
reorder the models; a low tau says the ranking at this budget is still moving.

Studies in another storage (PostgreSQL: records do not keep its URL) or missing from the
file are left out, and the page says how many rows had no readable study.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import kendalltau

from datasets.errors import FusebenchError

from .storage import default_storage

STABLE_TAU = 0.8  # at or above: the ranking is called settled (the page and the findings)


@dataclass(frozen=True)
class BudgetCurves:
    metric: str
    trials: int  # the budget: the most trials of any row
    half: int  # trials at "half the budget"
    curves: dict[str, list[float | None]]  # label -> best-so-far after trial 1..n (None: none complete yet)
    families: dict[str, str]
    tau: float | None  # Kendall tau of the ranking at `half` vs at the full budget (None: < 3 models)
    p: float | None
    missing: int  # tuned rows whose study could not be read

    def ranked(self, at: int) -> dict[str, float]:
        """label -> best value after `at` trials, for models with a complete trial by then."""
        out = {}
        for label, curve in self.curves.items():
            v = curve[min(at, len(curve)) - 1] if curve else None
            if v is not None:
                out[label] = v
        return out


def best_so_far(values: list[float | None]) -> list[float | None]:
    out, best = [], None
    for v in values:
        if v is not None and np.isfinite(v) and (best is None or v > best):
            best = float(v)
        out.append(best)
    return out


def _study_values(rdb, name: str, n: int) -> list[float | None]:
    import optuna

    study = optuna.load_study(study_name=name, storage=rdb)
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)[:n]
    return [t.value if t.state == optuna.trial.TrialState.COMPLETE else None for t in trials]


def curves(rows: list[Any], results_dir: str | Path, storage: str | None = None) -> BudgetCurves | None:
    """The budget curves of one table's rows (None when no row was tuned): their studies read
    from the folder's tuning.db, or from `storage` (a server URL) for rows tuned there."""
    tuned = [r for r in rows if r.tuning and r.tuning.get("study")]
    if not tuned:
        return None
    found: dict[str, list[float | None]] = {}
    missing = 0
    opened: dict[str, Any] = {}  # storage kind -> the opened storage (None: unreadable)
    for r in tuned:
        kind = r.tuning.get("storage", "sqlite")
        if kind not in opened:
            opened[kind] = _open(results_dir, storage, kind)
        rdb = opened[kind]
        if rdb is None:
            missing += 1
            continue
        try:
            found[r.label] = best_so_far(_study_values(rdb, r.tuning["study"], int(r.tuning["trials"])))
        except KeyError:  # not in this storage (tuned elsewhere, or the file was replaced)
            missing += 1
    metric = tuned[0].tuning.get("metric", "recall@20")
    families = {r.label: r.family for r in tuned}
    if not found:
        return BudgetCurves(metric, 0, 0, {}, families, None, None, missing)
    n = max(len(c) for c in found.values())
    half = max(1, n // 2)
    out = BudgetCurves(metric, n, half, found, families, None, None, missing)
    at_half, at_full = out.ranked(half), out.ranked(n)
    both = sorted(set(at_half) & set(at_full))
    if len(both) >= 3:
        res = kendalltau([at_half[m] for m in both], [at_full[m] for m in both])
        tau = float(res.statistic) if np.isfinite(res.statistic) else None
        p = float(res.pvalue) if np.isfinite(res.pvalue) else None
        out = BudgetCurves(metric, n, half, found, out.families, tau, p, missing)
    return out


def _open(results_dir: str | Path, storage: str | None, kind: str):
    """The storage that holds the studies of rows tuned on a `kind` storage: the folder's
    tuning.db for SQLite, `storage` when it is of that kind; None when there is none or it
    cannot be read (damaged: `doctor` says so; the page shows no curves)."""
    import optuna

    from .storage import open_storage, storage_kind

    if kind == "sqlite":
        if not (Path(results_dir) / "tuning.db").exists():
            return None
        url = default_storage(results_dir)
    elif storage is not None and storage_kind(storage) == kind:
        url = storage
    else:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return open_storage(url)
    except (FusebenchError, OSError):
        return None


def describe(b: BudgetCurves) -> str:
    """One sentence for the page."""
    if not b.curves:
        return (
            f"Budget: no readable study for the {b.missing} tuned rows in this folder's tuning.db "
            "(the studies stay in the storage the runs were tuned with), so no budget curves."
        )
    at_half = b.ranked(b.half)
    if b.tau is None:
        text = f"Budget: {len(b.curves)} tuned models with a readable study, too few to rank-correlate."
    else:
        text = (
            f"Budget: the ranking of the {len(at_half)} tuned models by best validation {b.metric} at the "
            f"trial epoch cap after {b.half} of {b.trials} trials agrees with the ranking after all "
            f"{b.trials} with Kendall τ = {b.tau:.2f}"
            + (
                " (1 = the same order: more trials would hardly reorder them)."
                if b.tau >= STABLE_TAU
                else f" (below {STABLE_TAU}: the ranking is still moving at this budget)."
            )
        )
    if b.missing:
        text += f" {b.missing} tuned rows have no readable study in this folder's tuning.db."
    return text


def data(b: BudgetCurves | None) -> dict[str, Any] | None:
    """LEADERBOARD.json's `budget` entry of a table."""
    if b is None:
        return None
    return {
        "metric": b.metric,
        "trials": b.trials,
        "half": b.half,
        "kendall_tau": b.tau,
        "kendall_p": b.p,
        "best_so_far": b.curves,
        "missing_studies": b.missing,
    }
