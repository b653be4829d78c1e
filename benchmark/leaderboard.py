"""results/LEADERBOARD.md and results/plots/, regenerated from the run records (never edited by hand).

One table per dataset and protocol (split protocol, split parameters, rating threshold and
evaluation settings: masking, validation metric, patience). Rules, stated on the page too:

- **Rows.** Runs of the same (dataset, protocol, model, hyper-parameters) over seeds make one
  row (mean ± sample std over seeds). When a model has several hyper-parameter sets in one
  table, the row shown is the tuned one (a record with ``tuning.trials > 0``); among several
  tuned ones, or when none is tuned, the most recently run one (latest
  ``provenance.created``; ties: more seeds, then label). The others are counted under the table.
- **Markers** (▲ better / ▼ worse than the best baseline, and on the content-lift columns) come
  from the seed-aware test (training seeds and users both sources of chance), Holm-corrected
  over every test of the table, p < 0.05 (see ``benchmark.stats``). The per-user Wilcoxon and
  t-test p-values are listed beside them in the details.
- **Bold**: the best mean of each column (ties at the shown precision: all of them).
- **Summary**: models ranked by mean rank of their test Recall@20 over the tables (average
  ranks for ties), with the number of tables each model was ranked on.

Old records that lack newer fields (tuning, evaluation protocol, per-user files) still render.
Nothing here imports a model class to render a record: rows are drawn from the records' own
fields (family, parameters, defaults, ``model.source`` of a user's class, ``model.run_file`` of
an external system scored by ``python -m benchmark score``); only whether a model is tunable,
which records do not carry, is asked of the registry, and only for registered names.
"""

from __future__ import annotations

import json
import re
import shlex
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata
from tabulate import tabulate

from datasets.download import atomic_write

from . import budget, plots
from .findings import findings
from .metrics import PRIMARY_METRIC
from .protocol import MAX_EPOCHS
from .records import EXTERNAL, RecordStore, RunRecord
from .stats import ALPHA, LIFT_METRICS, TESTED_METRICS
from .tables import (  # the numbers this page renders
    COLUMNS,
    Table,
    _budget,
    _nan_low,
    _nondefault_settings,
    _short,
    _short_hash,
    _short_hashes,
    build_tables,
    leaderboard_data,
)

FAMILY_NAMES = {**plots.FAMILY_NAMES, "external": "external"}
UP, DOWN, REF = "▲", "▼", "[ref]"
# the placebo controls' columns, in this order (datasets.placebo)
LIFT_HEADERS = {"shuffle": "Lift vs shuffled", "noise": "Lift vs noise"}
CAPPED = "†"  # a row with a seed whose training ended at the epoch bound, not by patience
DEFAULT_SEEDS = 3  # run's --seeds default
CONVENTIONS = """\
Metric conventions (RecBole/MMRec): binary relevance; full ranking over all items (no sampled
negatives); train items masked at validation; at test, train and valid items masked (only train
items under the MMRec protocol: each table says which); Recall@k = hits/|R|; NDCG@k with gains
1/log2(rank+1) and ideal DCG over min(|R|, k); MRR@k = 1/rank of the first hit within k;
Coverage@k = share of all items recommended to at least one test user. Users without test
items are left out of every mean. Hyper-parameters and the early-stopping epoch are selected on
validation Recall@20 only, never on test. Values are mean ± sample std over seeds (std shown
with at least two seeds)."""

RULES = f"""\
One row per model and table: runs of the same (dataset, protocol, model, hyper-parameters) over
seeds. When a model was run with several hyper-parameter sets, the row shows the tuned one (an
Optuna search on validation), else the most recently run one; the others are counted under the
table. **Bold**: best mean per column. {UP}/{DOWN}: significantly better/worse than the best
baseline (the `baseline/*` model with the highest mean test Recall@20, marked {REF}): a
seed-aware two-sided t-test on the seeds both models ran on, in which the training seed and
the users are both sources of chance (Δ = mean per-user difference of seed-averaged values;
its variance = the seed-to-seed variance of the per-seed differences of the two models' means
over the number of seeds, plus the users' variance of the paired differences over the users;
Welch-Satterthwaite degrees of freedom; not run with one seed), Holm-Bonferroni corrected
over all tests of the table (every model x Recall@10/20, NDCG@10/20, MRR@20, the best fusion
model against every baseline, and the content lifts), adjusted p < {ALPHA}.
A per-user test alone calls a model "better" than
itself when two groups of its own seeds are compared (`python -m benchmark aa` runs this A/A
check on the records), so the per-user paired Wilcoxon and t-test p-values (users without test
items in either model dropped) are only listed under each table, with 95% bootstrap intervals
(1000 resamples of users, seed 0). Coverage@20
is a list-level number and is not tested. Train s: wall-clock training time (validation passes
excluded); Eval s: one full-ranking test pass; Params: learned scalars used at scoring; Tuning:
`defaults` = constructor defaults, no search, else the search budget per (dataset, model):
trial 0 is the defaults, and every trial of an iterative model stops at the same epoch cap
(default 20). Stopping rule of the seed runs, the same for every iterative model: training
stops after `patience` validations without improvement (the best epoch's state is kept), up to
one protocol-level maximum of epochs for all models ({MAX_EPOCHS} unless `--epochs` says otherwise),
never a model's own epoch default; {CAPPED} marks a row with a seed that ended at that maximum
instead (not converged). The trial cap favours configurations that learn fast, so when an
iterative model's best trial is not its defaults, both are trained to convergence on validation
and the better is kept (listed under each table)."""

COLD_START_NOTE = """\
In these tables every test item is *cold*: it has no training interaction at all (its
interactions went to validation or test). Pure collaborative filtering (family CF) learns only
from interactions, so it cannot score an unseen item better than chance or ties and is expected
near zero; content, hybrid and fusion models score new items from their features."""


# --- formatting ----------------------------------------------------------------------------


def _fmt(values: list[float]) -> str:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return "–"
    mean = float(np.mean(values))
    if len(values) < 2:
        return f"{mean:.4f}"
    return f"{mean:.4f} ± {float(np.std(values, ddof=1)):.4f}"


def _fmt_seconds(values: list[float]) -> str:
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return "–"
    m = float(np.mean(values))
    return f"{m:.2f}" if m < 10 else f"{m:.0f}"


def _fmt_count(n) -> str:
    if n is None:
        return "–"
    n = int(n)
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def _fmt_p(p: float) -> str:
    if not np.isfinite(p):
        return "–"
    if p >= 0.001:
        return f"{p:.3f}"
    return f"{p:.1e}"


def _fmt_ci(ci: tuple[float, float] | None) -> str:
    if ci is None or not np.isfinite(ci[0]):
        return "–"
    return f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def _lifts(table: Table) -> list[str]:
    """The placebo controls run in this table (the order of LIFT_HEADERS)."""
    return [p for p in LIFT_HEADERS if any(p in r.placebos for r in table.rows)]


def _lift_cell(st, row, placebo: str, metric: str) -> str:
    """Real minus placebo (per-user paired mean difference) with the significance marker."""
    c = st.lift(row.label, placebo, metric) if placebo in row.placebos else None
    if c is None or not np.isfinite(c.test.diff):
        return "–"
    cell = f"{c.test.diff:+.4f}"
    return cell + (f" {UP if c.direction > 0 else DOWN}" if c.direction else "")


def _markdown_table(table: Table) -> str:
    st = table.stats
    lifts = _lifts(table)
    rows, means = [], []
    for row in table.rows:
        label = row.label
        hashes = _short_hashes(row)
        if hashes:  # which code or run file produced it (details under the table)
            label += f" `{hashes[0]}`" if len(hashes) == 1 else f" ({len(hashes)} versions)"
        label += f" {REF}" if row.label == st.best_baseline else ""
        if row.capped:
            label += f" {CAPPED}"
        first = row.records[0]
        out = [
            label,
            FAMILY_NAMES.get(row.family, row.family),
            ", ".join(first["model"].get("modalities") or []) or "–",
        ]
        for key, _ in COLUMNS:
            out.append(_fmt(row.values(key)))
        out += [
            str(len(row.records)),
            _fmt_seconds([r.number("train_seconds") for r in row.records]),
            _fmt_seconds([r.number("eval_seconds") for r in row.records]),
            _fmt_count(first["model"].get("n_parameters")),
            "–" if row.family == EXTERNAL else _budget(row.tuning),
        ]
        out += [_lift_cell(st, row, placebo, PRIMARY_METRIC) for placebo in lifts]
        rows.append(out)
        means.append([_nan_low(row.means.get(k)) for k, _ in COLUMNS])
    means = np.array(means, dtype=float).reshape(len(rows), len(COLUMNS))
    for j, (key, _) in enumerate(COLUMNS):
        best = means[:, j].max() if len(rows) else -np.inf
        for i, row in enumerate(table.rows):
            cell = rows[i][3 + j]
            if np.isfinite(best) and np.isclose(means[i, j], best, rtol=0, atol=5e-5):
                cell = f"**{cell}**"
            c = st.against_best(row.label, key) if key in TESTED_METRICS else None
            if c is not None and c.direction:
                cell += f" {UP if c.direction > 0 else DOWN}"
            rows[i][3 + j] = cell
    headers = [
        "Model",
        "Family",
        "Modalities",
        *(h for _, h in COLUMNS),
        "Seeds",
        "Train s",
        "Eval s",
        "Params",
        "Tuning",
        *(LIFT_HEADERS[p] for p in lifts),
    ]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _describe(table: Table) -> str:
    rec = table.first
    ds = rec["dataset"]
    s = table.settings
    threshold = ds.get("rating_threshold")
    implicit = "every rating is a positive" if threshold is None else f"ratings >= {threshold} are positives"
    masking = (
        "train and valid items masked at test"
        if s["mask_valid_at_test"]
        else "only train items masked at test (valid items stay rankable, as in MMRec)"
    )
    seeds = sorted({sd for r in table.rows for sd in r.seeds})
    budgets = sorted({_budget(r.tuning) for r in table.rows if r.family != EXTERNAL}) or ["–"]
    facts = []
    if "n_users" in ds:
        facts.append(f"{ds['n_users']:,} users, {ds['n_items']:,} items, {ds['n_interactions']:,} interactions")
    facts.append(f"split `{table.protocol}` {rec.split_params}")
    facts.append(implicit)
    every = "" if s["eval_every"] == 1 else f", validated every {s['eval_every']} epochs"
    bound = (rec.get("training") or {}).get("max_epochs")
    every += f", at most {bound} epochs" if bound else ""
    facts.append(f"evaluation: {masking}; early stopping on validation {s['metric']}, patience {s['patience']}{every}")
    facts.append(f"seeds {', '.join(map(str, seeds))}")
    facts.append(f"tuning budget: {'; '.join(budgets)}")
    if rec.get("n_test_users") is not None:
        facts.append(f"{rec['n_test_users']:,} test users (seed {rec.run_seed})")
    if ds.get("fingerprint"):
        facts.append(f"dataset sha256 `{ds['fingerprint'][:12]}`")
    return "; ".join(facts) + "."


def _lift_legend(table: Table) -> str:
    """What the placebo columns mean, and which models beat both controls."""
    st = table.stats
    both = [
        r.label
        for r in table.rows
        if all((c := st.lift(r.label, p, PRIMARY_METRIC)) is not None and c.direction > 0 for p in LIFT_HEADERS)
    ]
    tested = [r.label for r in table.rows if set(LIFT_HEADERS) <= set(r.placebos)]
    verdict = (
        ""
        if not tested
        else " Beats both: "
        + (", ".join(f"`{x}`" for x in both) if both else "none")
        + f" (of {len(tested)} with both controls)."
    )
    return (
        "Lift vs shuffled / vs noise: test Recall@20 of the model minus the same configuration and "
        "seeds trained on placebo content (per-user paired mean difference; ▲/▼ Holm-corrected "
        f"seed-aware p < {ALPHA} with the table's other tests; NDCG@20 in the details). *Shuffled*: each "
        "modality's rows permuted across items, so the content keeps its distribution but belongs to "
        "other items; beating it shows the model reads the item's own content. *Noise*: Gaussian "
        "noise with each modality's means and variances, which a model can use as a second, free "
        "item-id embedding; beating it shows the content is worth more than an extra id. A model is "
        "said to use its content only where it beats both." + verdict
    )


def _notes(table: Table) -> list[str]:
    st = table.stats
    notes = []
    if st.best_baseline:
        line = f"Reference (best baseline by mean test Recall@20): `{st.best_baseline}`."
    else:
        line = "No baseline in this table: no significance markers."
    if st.best_fusion:
        line += f" Best fusion model: `{st.best_fusion}`."
    notes.append(line)
    capped = [r for r in table.rows if r.capped]
    if capped:
        parts = []
        for r in capped:
            bounds = sorted({int(rec["training"].get("epochs_run") or 0) for rec in r.records if rec.stopped_at_bound})
            parts.append(
                f"`{r.label}` ({sum(rec.stopped_at_bound for rec in r.records)} of {len(r.records)} seeds, "
                f"at {', '.join(map(str, bounds))} epochs)"
            )
        notes.append(
            f"{CAPPED} Not converged: training of at least one seed ended at its epoch bound while "
            "validation was still improving within the patience window, not by the stopping rule: "
            + "; ".join(parts)
            + "."
        )
    elif any(r.records[0].get("training", {}).get("epochs_run") is not None for r in table.rows):
        notes.append(
            f"Every iterative run in this table stopped by patience (none at its epoch bound, no {CAPPED} rows)."
        )
    if _lifts(table):
        notes.append(_lift_legend(table))
    if table.budget is not None:
        notes.append(budget.describe(table.budget))
    own = [(r, [rec.code for rec in r.records]) for r in table.rows if r.family != EXTERNAL]
    own = [(r, srcs) for r, srcs in own if any(srcs)]
    if own:
        parts = []
        for r, srcs in own:
            seen = {(s.get("spec") or s.get("path") or "?", s["sha256"]) for s in srcs if s}
            parts.append(f"`{r.label}`: " + ", ".join(f"`{spec}` (sha256 `{sha[:12]}`)" for spec, sha in sorted(seen)))
        notes.append("Models from the user's own code (the file or module and its SHA-256): " + "; ".join(parts) + ".")
    ext = [r for r in table.rows if r.family == EXTERNAL]
    if ext:
        parts = []
        for r in ext:
            files = []
            for rec in r.records:
                src = rec.code or {}
                absent = (rec.get("scoring") or {}).get("test_users_absent")
                files.append(
                    f"seed {rec.run_seed} `{Path(str(src.get('path', '?'))).name}` (sha256 "
                    f"`{str(src.get('sha256', '?'))[:12]}`"
                    + (f", {absent} test users absent from it" if absent else "")
                    + ")"
                )
            parts.append(f"`{r.label}`: " + ", ".join(files))
        masked = "train and valid" if table.settings["mask_valid_at_test"] else "train"
        notes.append(
            "Family external: recommendations made by another system and scored from its run file by "
            "`python -m benchmark score --dataset` on the same split: its lists ordered by score (ties by "
            f"item index), items among the user's {masked} interactions dropped before the cut (the "
            "same masking as every model), a test user absent from the file scored 0; no tuning, training "
            "time or parameter count is known. " + "; ".join(parts) + "."
        )
    if table.dropped:
        notes.append(
            "Other hyper-parameter sets run but not shown: "
            + ", ".join(f"{m} ({n})" for m, n in sorted(table.dropped.items()))
            + "."
        )
    tuned = [(r.label, r.tuning) for r in table.rows if r.tuning]
    if tuned:
        parts = []
        for label, t in tuned:
            best = t.get("best_params") or {}
            params = ", ".join(f"{k}={_short(v)}" for k, v in sorted(best.items())) or "–"
            study = f" (study `{t['study']}`)" if t.get("study") else ""
            full = t.get("full_length")
            if full:  # the best trial at the epoch cap and the defaults, both trained to convergence
                kept = "the defaults" if full.get("chosen") == "defaults" else "the best trial"
                study += (
                    f", {kept} kept: validation {full['defaults']:.4f} (defaults) vs. "
                    f"{full['best']:.4f} (best trial) at convergence"
                )
            parts.append(f"`{label}`: {params}{study}")
        notes.append("Selected hyper-parameters: " + "; ".join(parts) + ".")
    return notes


P_HEADERS = ("p seed-aware (Holm)", "p Wilcoxon (Holm)", "p t-test (Holm)")


def _segment_section(t: Table, cold: bool) -> str:
    """Where content helps: the best fusion model, the reference and its placebos by segment."""
    seg = t.segments
    if seg is None:
        if t.stats.best_fusion and not t.cold_start:
            return (
                "Where content helps: no segment arrays in these records (made before segments existed; "
                "`--force` runs them again)."
            )
        return ""
    versus = {seg.reference: seg.reference} if seg.reference else {}
    versus.update(
        {seg.placebos[p]: LIFT_HEADERS[p].removeprefix("Lift vs ") for p in LIFT_HEADERS if p in seg.placebos}
    )
    compared = list(versus)
    headers = ["Segment", "Users", seg.fusion, *compared, *(f"Lift vs {v} [95% CI]" for v in versus.values())]
    rows = []
    for r in (r for r in seg.rows if r.users):
        out = [r.segment, str(r.users), f"{r.means[seg.fusion]:.4f}" if np.isfinite(r.means[seg.fusion]) else "–"]
        out += [f"{r.means[c]:.4f}" if np.isfinite(r.means.get(c, np.nan)) else "–" for c in compared]
        for c in compared:
            lift = r.lifts.get(c)
            out.append("–" if lift is None or not np.isfinite(lift.delta) else f"{lift.delta:+.4f} {_fmt_ci(lift.ci)}")
        rows.append(out)
    text = (
        f"Where content helps: test Recall@20 of the best fusion model `{seg.fusion}`"
        + (f", the reference `{seg.reference}`" if seg.reference else "")
        + (" and its placebo controls" if seg.placebos else "")
        + " by segment (head items: the most popular items holding 20% of the training interactions; "
        "tail: the rest; users by quartile of their training interactions, Q1 least active), means over "
        "users of seed-averaged values; lift = the best fusion model minus the other, with a 95% bootstrap "
        "interval over users."
    )
    if cold:
        text += " The cold-start-items table of this dataset is under *Cold-start items* below."
    return text + "\n\n" + tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _test_cells(c) -> list[str]:
    """Δ and the Holm-corrected p's of one comparison, P_HEADERS' order ("–" when not run)."""
    if c is None:
        return ["–"] * (1 + len(P_HEADERS))
    delta = f"{c.test.diff:+.4f}" if np.isfinite(c.test.diff) else "–"
    return [delta, _fmt_p(c.p_seed_holm), _fmt_p(c.p_wilcoxon_holm), _fmt_p(c.p_t_holm)]


def _significance(table: Table) -> str:
    st = table.stats
    if not any(c.test.n for c in st.comparisons) and not any(st.ci.values()):
        return ""  # no per-user arrays (old records): nothing was tested
    shown = (PRIMARY_METRIC, "ndcg@20")
    names = {"recall@20": "Recall@20", "ndcg@20": "NDCG@20"}
    headers = ["Model", "Users"]
    for m in shown:
        headers += [f"{names[m]} 95% CI", f"Δ{names[m]}", *P_HEADERS]
    rows = []
    for row in table.rows:
        out = [row.label + (f" {REF}" if row.label == st.best_baseline else ""), str(st.n_users.get(row.label, "–"))]
        for m in shown:
            out.append(_fmt_ci(st.ci.get(row.label, {}).get(m)))
            out += _test_cells(st.against_best(row.label, m))
        rows.append(out)
    parts = [
        f"Against the reference `{st.best_baseline}`: Δ = mean per-user difference (model − reference) on "
        "seed-averaged values; Users = test users in the bootstrap."
        if st.best_baseline
        else "95% bootstrap intervals of the mean over users (seed-averaged per-user values).",
        "",
        tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True),
    ]
    fb = [c for c in st.comparisons if c.kind == "best fusion vs baseline" and c.metric in shown]
    if fb:
        by_ref: dict[str, dict[str, Any]] = defaultdict(dict)
        for c in fb:
            by_ref[c.reference][c.metric] = c
        rows = []
        for ref, cs in sorted(by_ref.items()):
            out = [f"{st.best_fusion} vs {ref}"]
            for m in shown:
                c = cs.get(m)
                out += _test_cells(c)
            rows.append(out)
        h = ["Best fusion vs baseline"]
        for m in shown:
            h += [f"Δ{names[m]}", *P_HEADERS]
        parts += ["", tabulate(rows, headers=h, tablefmt="github", disable_numparse=True)]
    lifted = [(r, p) for r in table.rows for p in _lifts(table) if p in r.placebos]
    if lifted:
        names = {m: dict(COLUMNS).get(m, m) for m in LIFT_METRICS}
        h = ["Content lift", "Seeds"]
        for m in LIFT_METRICS:
            h += [f"{names[m]} placebo", f"Δ{names[m]}", *P_HEADERS]
        rows = []
        for row, placebo in lifted:
            out = [f"{row.label} vs {placebo} placebo", str(len(row.placebos[placebo].records))]
            for m in LIFT_METRICS:
                c = st.lift(row.label, placebo, m)
                out.append(_fmt(row.placebos[placebo].values(m)))
                out += _test_cells(c)
            rows.append(out)
        parts += ["", tabulate(rows, headers=h, tablefmt="github", disable_numparse=True)]
    return "\n".join(parts)


def rank_summary(tables: list[Table]) -> str:
    """Models ranked by mean rank of test Recall@20 over the given tables (1 = best)."""
    ranks: dict[str, list[float]] = defaultdict(list)
    family: dict[str, str] = {}
    for t in tables:
        rows = [r for r in t.rows if np.isfinite(r.means.get(PRIMARY_METRIC, np.nan))]
        if not rows:
            continue
        rk = rankdata([-r.means[PRIMARY_METRIC] for r in rows], method="average")
        for r, x in zip(rows, rk):
            ranks[r.model].append(float(x))
            family[r.model] = r.family
    if not ranks:
        return "_No table with Recall@20 values._"
    order = sorted(ranks, key=lambda m: (np.mean(ranks[m]), -len(ranks[m]), m))
    rows = [
        [i + 1, m, FAMILY_NAMES.get(family[m], family[m]), f"{np.mean(ranks[m]):.2f}", len(ranks[m])]
        for i, m in enumerate(order)
    ]
    return tabulate(
        rows,
        headers=["#", "Model", "Family", "Mean rank (Recall@20)", "Tables ranked on"],
        tablefmt="github",
        disable_numparse=True,
    )


# --- the command that reproduces the records ------------------------------------------------


def _defaults_of_cli() -> tuple[set[str], set[str]]:
    try:
        import fusion_models  # noqa: F401  (registers the fusion models)
        from baselines.base import model_names

        from .options import DEFAULT_DATASETS

        return set(DEFAULT_DATASETS), set(model_names())
    except Exception:  # noqa: BLE001
        return set(), set()


def _tuning_options(t: dict[str, Any]) -> str:
    """The run's own tuning flags (records store them, e.g. `--budget 5`); older records: the
    budget as a shell comment."""
    if t.get("options"):
        return f" {t['options']}"
    return f"  # tuning budget per model: {_budget(t)}"


def _seed_option(seeds: list[int]) -> str:
    if seeds == list(range(DEFAULT_SEEDS)):
        return ""
    if seeds == list(range(len(seeds))):
        return f" --seeds {len(seeds)}"
    if len(seeds) == 1:
        return f" --seed {seeds[0]}"
    return f" --seeds {max(seeds) + 1}"  # a superset of the seeds on record


def _tunable(rec: dict[str, Any], registered: set[str]) -> bool:
    """Whether `run --all` would tune this record's model (it has a search space): the record's
    own `model.tunable` when it has one, else the registry's class for a registered name; a name
    the registry does not know (a user's class) counts as tunable (its command says --no-tune)."""
    m = rec["model"]
    if isinstance(m.get("tunable"), bool):
        return m["tunable"]
    if m["name"] not in registered:
        return True
    try:
        import optuna

        from baselines.base import get_model_class

        return bool(get_model_class(m["name"]).search_space(optuna.trial.FixedTrial({}, 0)))
    except Exception:  # noqa: BLE001 - FixedTrial raises on the first suggest: it has a space
        return True


def _load_spec(t: Table) -> str:
    """What `--datasets` takes to load the table's data again: the spec it was loaded from
    (a folder's path, an alias), or its name in records older than the spec."""
    return t.first["dataset"].get("spec") or t.dataset


def reproduce_commands(tables: list[Table]) -> list[str]:
    """`python -m benchmark run --all ...` with the non-default options the records show."""
    from .tuning import DEFAULT_BUDGET

    default_ds, all_models = _defaults_of_cli()
    groups: dict[tuple[str, str], tuple[set, set]] = defaultdict(lambda: (set(), set()))
    free: dict[str, set] = defaultdict(set)  # untunable models by protocol options
    free_ds: dict[str, set] = defaultdict(set)
    singles: list[str] = []
    for t in tables:
        s = t.settings
        opts = ""
        if s["protocol"] == "mmrec":
            opts += " --protocol mmrec"
        elif t.protocol not in ("random", "given"):
            opts += f" --protocol {t.protocol}"
        thr = t.first["dataset"].get("rating_threshold")
        if thr is not None:
            opts += f" --rating-threshold {thr:g}"
        data_opts = opts  # what `score --dataset` needs to make the same split
        for k, v in sorted(_nondefault_settings(s).items()):
            opts += f" --{k.replace('_', '-')} {v}"
        seeds = sorted({sd for r in t.rows if r.family != EXTERNAL for sd in r.seeds})
        opts += _seed_option(seeds)
        if _lifts(t):
            opts += f" --placebo {','.join(_lifts(t))}"
        for r in t.rows:
            if r.family == EXTERNAL:  # recommendations made elsewhere: scored again from their run files
                for rec in r.records:
                    run = shlex.quote(str((rec.code or {}).get("path") or "RUN"))
                    singles.append(
                        f"python -m benchmark score --dataset {_load_spec(t)}{data_opts} --seed "
                        f"{rec.run_seed} --run {run} --name {r.model}"
                    )
                continue
            model = r.records[0].model_arg
            if r.tuning is None and r.label != r.model:  # hand-set parameters: a command of its own
                m = r.records[0]["model"]
                diff = {k: v for k, v in m["params"].items() if (m.get("defaults") or {}).get(k) != v}
                params = "".join(
                    f" --param {k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in sorted(diff.items())
                )
                singles.append(f"python -m benchmark run --dataset {_load_spec(t)} --model {model}{params}{opts}")
                continue
            if r.tuning is None and not _tunable(r.records[0], all_models):
                free[opts].add(model)  # nothing to tune: it fits any command of its table
                free_ds[opts].add(_load_spec(t))
                continue
            tflags = _tuning_options(r.tuning) if r.tuning is not None else " --no-tune"
            if tflags == f" --budget {DEFAULT_BUDGET}":
                tflags = ""  # what `run --all` does anyway
            groups[(opts, tflags)][0].add(_load_spec(t))
            groups[(opts, tflags)][1].add(model)
    for opts, models in free.items():
        # join the largest command with the same protocol options, else one of their own
        same = [k for k in groups if k[0] == opts]
        target = max(same, key=lambda k: (len(groups[k][1]), k), default=(opts, ""))
        groups[target][0].update(free_ds[opts])
        groups[target][1].update(models)
    cmds = []
    for (opts, tflags), (dss, models) in sorted(groups.items()):
        cmd = "python -m benchmark run --all"
        if dss != default_ds:
            cmd += f" --datasets {','.join(sorted(dss))}"
        if models != all_models:
            cmd += f" --models {','.join(sorted(models))}"
        cmds.append(cmd + opts + tflags)
    return cmds + sorted(set(singles))


# --- the page ------------------------------------------------------------------------------


def _slug(table: Table) -> str:
    base = f"{table.dataset}__{table.protocol}"
    if table.settings["protocol"] != "fusebench":
        base += f"__{table.settings['protocol']}"
    if table.extra:
        base += f"__{_short_hash(table.key)}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", base)


def write_plots(tables: list[Table], results_dir: str | Path) -> bool:
    """One PNG per table under results/plots/; False when matplotlib is not installed."""
    if not plots.available():
        return False
    for t in tables:
        pts = [
            plots.Point(r.label, r.family, r.train_seconds(), r.means.get(PRIMARY_METRIC, float("nan"))) for r in t.rows
        ]
        if not any(map(plots.drawable, pts)):
            continue  # e.g. old records without training times
        rel = f"plots/{_slug(t)}.png"
        plots.accuracy_vs_time(pts, Path(results_dir) / rel, f"{t.title}: accuracy vs. training time")
        t.plot = rel
        if t.budget is not None and t.budget.curves:
            rel = f"plots/{_slug(t)}__budget.png"
            b = t.budget
            ylabel = f"best validation {b.metric} so far (trial epoch cap)"
            plots.budget_curves(b.curves, b.families, Path(results_dir) / rel, f"{t.title}: tuning budget", ylabel)
            t.budget_plot = rel
    return True


def _section(t: Table, level: str = "##", cold: bool = False) -> list[str]:
    parts = ["", f"{level} {t.title}", ""]
    said = findings(t)
    if said:
        parts += ["**Findings** (generated from the records): " + " ".join(said), ""]
    parts += [_describe(t), "", _markdown_table(t), ""]
    parts += [" ".join(_notes(t))]
    segs = _segment_section(t, cold)
    if segs:
        parts += ["", segs]
    if t.plot:
        parts += ["", f"![{t.title}: test Recall@20 against training time]({t.plot})"]
    if t.budget_plot:
        parts += ["", f"![{t.title}: best validation so far against tuning trials]({t.budget_plot})"]
    sig = _significance(t)
    if sig:
        parts += [
            "",
            "<details><summary>Significance tests and 95% bootstrap intervals</summary>",
            "",
            sig,
            "",
            "</details>",
        ]
    return parts


def _revisions(revs: list[str]) -> str:
    return ", ".join(f"`{r[:12]}{'-dirty' if r.endswith('-dirty') else ''}`" for r in revs) or "–"


def _failed_section(failed: list[dict[str, Any]], root: Path | None) -> list[str]:
    """The seed runs that diverged: results too (a model that fails on some seeds is less
    usable than its row says), listed rather than averaged in."""
    lines = [
        "",
        "## Failed runs",
        "",
        "Seed runs whose training diverged (non-finite loss). They are left out of the tables above; "
        "`--force` runs them again.",
        "",
        "| dataset | model | parameters | seed | reason | record |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(failed, key=lambda r: (r["dataset"]["name"], r["model"]["name"], r["seed"])):
        path = Path(r.path)
        shown = path.relative_to(root) if root is not None and path.is_relative_to(root) else path
        params = ", ".join(f"{k}={_short(v)}" for k, v in sorted((r["model"].get("params") or {}).items()))
        lines.append(
            f"| {r['dataset']['name']} | {r['model']['name']} | {params} | {r['seed']} | {r['failed']} | `{shown}` |"
        )
    return lines


def render(
    records: list[dict[str, Any]],
    tables: list[Table] | None = None,
    plotted: bool = True,
    failed: list[dict[str, Any]] | None = None,
    root: Path | None = None,
) -> str:
    tables = build_tables(records) if tables is None else tables
    revs = sorted({(r.get("provenance") or {}).get("git_revision") or "unknown" for r in records})
    devices = sorted({(r.get("provenance") or {}).get("device") or "?" for r in records})
    dates = sorted(d[:10] for d in (RunRecord.of(r).created for r in records) if d)
    when = (
        (f"runs dated {dates[0]}" + (f" to {dates[-1]}" if dates[-1] != dates[0] else "") + " UTC; ") if dates else ""
    )
    parts = [
        "# fusebench leaderboard",
        "",
        f"Generated from {len(records)} run records ({when}code revisions: "
        f"{_revisions(revs)}; devices: {'; '.join(devices) or '–'}). "
        "Regenerate with `python -m benchmark leaderboard`.",
    ]
    if records:
        parts += ["", "Reproduce the records with:", "", "```", *reproduce_commands(tables), "```"]
    parts += ["", CONVENTIONS, "", RULES]
    if not plotted:
        parts += ["", "_Plots skipped: matplotlib is not installed._"]
    if not records:
        parts += ["", "_No run records yet: run `python -m benchmark run --all`._"]
        parts += _failed_section(failed, root) if failed else []
        return "\n".join(parts) + "\n"
    main = [t for t in tables if not t.cold_start]
    cold = [t for t in tables if t.cold_start]
    if main:
        parts += [
            "",
            "## Summary: mean rank across tables",
            "",
            "Rank 1 = highest mean test Recall@20 in a table (ties share the average rank); a model "
            "ranked on fewer tables is not directly comparable with one ranked on all.",
            "",
            rank_summary(main),
        ]
    for t in main:
        parts += _section(t, cold=any(c.dataset == t.dataset for c in cold))
    if cold:
        parts += [
            "",
            "## Cold-start items",
            "",
            COLD_START_NOTE,
            "",
            "### Mean rank across cold-start tables",
            "",
            rank_summary(cold),
        ]
        for t in cold:
            parts += _section(t, "###")
    if failed:
        parts += _failed_section(failed, root)
    return "\n".join(parts) + "\n"


def write_leaderboard(results_dir: str | Path, storage: str | None = None) -> Path:
    """Write LEADERBOARD.md, LEADERBOARD.json and the plots from `results_dir`'s records;
    `storage` (`run --storage`): where the studies of rows tuned on a server storage are."""
    store = RecordStore(results_dir)
    records, failed = [], []
    for rec in store.records():
        (failed if rec.get("failed") else records).append(rec)
    tables = build_tables(records)
    for t in tables:
        t.budget = budget.curves(t.rows, results_dir, storage)
    plotted = write_plots(tables, results_dir)
    text = render(records, tables, plotted=plotted, failed=failed, root=Path(results_dir))
    data = json.dumps(leaderboard_data(tables), indent=2, sort_keys=True).encode()
    atomic_write(Path(results_dir) / "LEADERBOARD.json", lambda f: f.write(data))
    path = Path(results_dir) / "LEADERBOARD.md"
    atomic_write(path, lambda f: f.write(text.encode()))
    return path
