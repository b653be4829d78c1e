"""Paper result reproduction: a published table next to ours, with a verdict per cell.

A published table is data: one TOML file per table in ``benchmark/papers/`` (see the two
shipped ones for the schema): ``[paper]`` (source, commit, table, citation, relative
``tolerance``), ``[protocol]`` (how to run: ``config`` = ``mmrec`` for
`benchmark.protocol.Protocol.mmrec` or ``fusebench`` for `Protocol()`; ``split`` and its
``ratios``; ``rating_threshold``; ``drop_empty``; validation ``metric``, ``patience``,
``epochs``; ``metrics`` and ``ks``; human-readable ``description`` and known
``differences``), ``[datasets.<name>]`` (label, the source's statistics), ``[models.<name>]``
(label, the ``params`` we run, what the source ``stated``) and ``[results.<dataset>]``
(``<model> = { "<metric>@<k>" = value }``: the published numbers).

`reproduce` runs every (dataset, model, seed) of a table through `benchmark.seed_run.run_one`
(records in ``<results>/runs/``, so a rerun resumes) and writes
``<results>/reproductions/<name>.md``.

**Statistics and verdict** (per cell = dataset x model x metric):

- *ours*: the mean over seeds of the test metric, ± the sample standard deviation (ddof 1;
  0 with one seed);
- *95% CI (seeds)*: Student t-interval of the mean over seeds, ``mean ± t(0.975, n-1) *
  std / sqrt(n)``, when there are >= 2 seeds;
- *95% CI (users)*: `benchmark.stats.bootstrap_ci` (1000 resamples of test users) of the
  per-user values averaged over seeds: the spread a different sample of test users would
  give;
- *verdict*: **reproduced** when the published value lies inside our interval (the seed
  t-interval with >= 2 seeds, else the user bootstrap) or within the table's relative
  ``tolerance`` of our mean; otherwise **not reproduced** (ours higher / lower).

When the data is missing, `reproduce` raises `DataMissing` before anything is written; its
``lines`` say, one per file, what to put where (the CLI prints them and exits 2).
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

import datasets
import fusion_models  # noqa: F401  (registers the multimodal models the tables name)
from baselines.base import get_model_class, make_model
from datasets.download import atomic_write
from datasets.errors import FusebenchError

from .metrics import PRIMARY_METRIC, RANK_METRICS
from .protocol import Protocol
from .records import RecordStore
from .seed_run import run_one
from .stats import bootstrap_ci, seed_average

PAPERS_DIR = Path(__file__).resolve().parent / "papers"
_CELL = re.compile(r"^([a-z]+)@(\d+)$")


class DataMissing(FusebenchError):
    """The table's data is not there; ``lines`` holds one 'PATH  <- source' line per file."""

    def __init__(self, paper: str, lines: list[str]):
        self.lines = list(lines)
        super().__init__(f"reproduce {paper}: {len(lines)} data file(s) missing: " + "; ".join(lines))


@dataclass
class Paper:
    name: str
    path: Path
    data: dict[str, Any]

    @property
    def info(self) -> dict[str, Any]:
        return self.data["paper"]

    @property
    def protocol(self) -> dict[str, Any]:
        return self.data["protocol"]

    @property
    def datasets(self) -> dict[str, dict[str, Any]]:
        return self.data["datasets"]

    @property
    def models(self) -> dict[str, dict[str, Any]]:
        return self.data["models"]

    @property
    def results(self) -> dict[str, dict[str, dict[str, float]]]:
        return self.data["results"]

    @property
    def tolerance(self) -> float:
        return float(self.info.get("tolerance", 0.05))

    def cells(self) -> int:
        return sum(len(m) for r in self.results.values() for m in r.values())


def paper_names() -> list[str]:
    return sorted(p.stem for p in PAPERS_DIR.glob("*.toml"))


def load_paper(name: str) -> Paper:
    """A shipped table by name, or any table file by path (``*.toml``); validated."""
    path = Path(name)
    if not (name.endswith(".toml") and path.is_file()):
        path = PAPERS_DIR / f"{name}.toml"
        if not path.is_file():
            raise FusebenchError(
                f"unknown table {name!r}; available: {', '.join(paper_names())} (or a path to a .toml)"
            )
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise FusebenchError(f"{path}: malformed TOML ({exc})") from exc
    paper = Paper(str(data.get("paper", {}).get("name") or path.stem), path, data)
    _validate(paper)
    return paper


def _validate(p: Paper) -> None:
    for key in ("paper", "protocol", "datasets", "models", "results"):
        if not isinstance(p.data.get(key), dict):
            raise FusebenchError(f"{p.path.name}: missing table [{key}]")
    for key in ("source", "title"):
        if not p.info.get(key):
            raise FusebenchError(f"{p.path.name}: [paper] needs {key}")
    if p.protocol.get("config", "fusebench") not in ("mmrec", "fusebench"):
        raise FusebenchError(f"{p.path.name}: protocol.config must be 'mmrec' or 'fusebench'")
    for ds, rows in p.results.items():
        if ds not in p.datasets:
            raise FusebenchError(f"{p.path.name}: results for dataset {ds!r} without a [datasets.{ds}] table")
        for model, cells in rows.items():
            if model not in p.models:
                raise FusebenchError(f"{p.path.name}: results for model {model!r} without a [models.{model}] table")
            for metric, value in cells.items():
                if not _CELL.match(metric) or not isinstance(value, (int, float)):
                    raise FusebenchError(f"{p.path.name}: results.{ds}.{model}: bad cell {metric!r} = {value!r}")
    for model in p.models:
        get_model_class(model)


# ------------------------------------------------------------------------ data presence
def missing_data(paper: Paper, data_dir=None, names: Sequence[str] | None = None) -> list[str]:
    from datasets.registry import missing_files

    out: list[str] = []
    for name in names or list(paper.datasets):
        out += missing_files(name, data_dir)
    return out


def list_papers(data_dir=None) -> str:
    """What `reproduce --list` prints: each table, its cells, models and data status."""
    lines = []
    for name in paper_names():
        p = load_paper(name)
        models = ", ".join(m.get("label", k) for k, m in p.models.items())
        lines.append(f"{name}: {p.info['title']}")
        lines.append(f"  source: {p.info['source']}")
        lines.append(f"  {p.cells()} published cells; models: {models}")
        for ds in p.datasets:
            miss = missing_data(p, data_dir, [ds])
            status = "ready" if not miss else f"MISSING {len(miss)} file(s)"
            if ds == "ml-1m" and not miss:
                from datasets.ml1m import URL, local_source

                src = local_source(data_dir)
                status = f"ready ({src})" if src is not None else f"not local: downloaded from {URL} on first use"
            lines.append(f"  dataset {ds}: {status}")
            lines += [f"    missing: {m}" for m in miss]
    return "\n".join(lines)


# ------------------------------------------------------------------------ running
def compact(ds: datasets.MultimodalDataset) -> datasets.MultimodalDataset:
    """``ds`` without users and items that have no interaction (ids re-densified; item
    features, masks and text sliced to the kept items)."""
    df = ds.interactions
    users = np.unique(df["user"].to_numpy())
    items = np.unique(df["item"].to_numpy())
    if len(users) == ds.n_users and len(items) == ds.n_items:
        return ds
    umap = np.full(ds.n_users, -1, dtype=np.int64)
    umap[users] = np.arange(len(users))
    imap = np.full(ds.n_items, -1, dtype=np.int64)
    imap[items] = np.arange(len(items))
    new = df.assign(
        user=umap[df["user"].to_numpy()].astype(np.int32), item=imap[df["item"].to_numpy()].astype(np.int32)
    )
    return replace(
        ds,
        interactions=new.reset_index(drop=True),
        n_users=len(users),
        n_items=len(items),
        user_ids=np.asarray(ds.user_ids)[users],
        item_ids=np.asarray(ds.item_ids)[items],
        features={m: np.ascontiguousarray(x[items]) for m, x in ds.features.items()},
        feature_masks={m: np.ascontiguousarray(x[items]) for m, x in ds.feature_masks.items()},
        item_text=None if ds.item_text is None else [ds.item_text[i] for i in items],
        meta={**ds.meta, "compacted": "users and items without interactions removed"},
    )


def run_config(paper: Paper, device: str) -> Protocol:
    pr = paper.protocol
    metrics = tuple(pr.get("metrics", RANK_METRICS))
    ks = tuple(int(k) for k in pr.get("ks", (10, 20, 50)))
    cited = {int(_CELL.match(c).group(2)) for r in paper.results.values() for m in r.values() for c in m}
    cited_metrics = {_CELL.match(c).group(1) for r in paper.results.values() for m in r.values() for c in m}
    vm, vk = _CELL.match(pr.get("metric", PRIMARY_METRIC)).groups()
    metrics = tuple(dict.fromkeys((*metrics, *sorted(cited_metrics), vm)))
    ks = tuple(sorted({*ks, *cited, int(vk)}))
    common = {"metric": pr.get("metric", PRIMARY_METRIC), "metrics": metrics, "ks": ks, "device": device}
    for key in ("patience", "epochs"):
        if key in pr:
            common[key] = int(pr[key])
    if pr.get("config", "fusebench") == "mmrec":
        return Protocol.mmrec(**common)
    return Protocol(mask_valid_at_test=bool(pr.get("mask_valid_at_test", True)), **common)


def model_params(paper: Paper, model: str, overrides: dict[str, Any]) -> dict[str, Any]:
    names = get_model_class(model).param_names()
    params = dict(paper.models[model].get("params", {}))
    params.update({k: v for k, v in overrides.items() if k in names})
    make_model(model, params)  # rejects bad names/values before anything runs
    return params


def grid_points(paper: Paper, model: str, overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """The model's configurations under ``--grid``: its fixed ``params`` combined with every
    point of the table's ``grid`` (the search the source states, in fusebench's parameter
    names; a parameter overridden on the command line is not searched). Without a grid: one."""
    import itertools

    base = model_params(paper, model, overrides)
    grid = {k: list(v) for k, v in paper.models[model].get("grid", {}).items() if k not in overrides}
    keys = list(grid)
    points = [{**base, **dict(zip(keys, combo))} for combo in itertools.product(*(grid[k] for k in keys))]
    for p in points:
        make_model(model, p)
    return points or [base]


@dataclass
class Cell:
    dataset: str
    model: str
    metric: str
    published: float
    values: list[float]
    per_user: list[np.ndarray] = field(repr=False, default_factory=list)
    tolerance: float = 0.05

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if self.n >= 2 else 0.0

    @property
    def ci_seeds(self) -> tuple[float, float] | None:
        if self.n < 2:
            return None
        from scipy import stats as sps

        half = float(sps.t.ppf(0.975, self.n - 1)) * self.std / math.sqrt(self.n)
        # every metric of these tables lies in [0, 1]
        return max(0.0, self.mean - half), min(1.0, self.mean + half)

    @property
    def ci_users(self) -> tuple[float, float]:
        if not self.per_user:
            return float("nan"), float("nan")
        return bootstrap_ci(seed_average(self.per_user), n_resamples=1000, seed=0)

    @property
    def interval(self) -> tuple[float, float]:
        return self.ci_seeds or self.ci_users

    @property
    def delta(self) -> float:
        return self.mean - self.published

    @property
    def rel(self) -> float:
        return self.delta / self.published if self.published else float("nan")

    @property
    def verdict(self) -> str:
        lo, hi = self.interval
        if lo <= self.published <= hi:
            return "reproduced (in 95% CI)"
        if abs(self.rel) <= self.tolerance:
            return f"reproduced (within {self.tolerance:.0%})"
        return "not reproduced (ours " + ("higher)" if self.delta > 0 else "lower)")

    @property
    def reproduced(self) -> bool:
        return self.verdict.startswith("reproduced")


def _parse_overrides(items: Sequence[str], models: Sequence[str]) -> dict[str, Any]:
    """``NAME=VALUE`` applied to every model of the run that has parameter NAME."""
    from .options import shared_params

    return shared_params(models, items)


def reproduce(
    paper: Paper,
    *,
    seeds: int = 3,
    data_dir=None,
    results: str | Path = "results",
    models: Sequence[str] | None = None,
    dataset_names: Sequence[str] | None = None,
    param_items: Sequence[str] = (),
    device: str = "cpu",
    force: bool = False,
    grid: bool = False,
    on_run: Callable[[str, str, int, dict], None] | None = None,
) -> Path:
    """Run the table (see the module doc); returns the report's path."""
    if seeds < 1:
        raise FusebenchError("--seeds must be >= 1")
    models = list(models or paper.models)
    for m in models:
        if m not in paper.models:
            raise FusebenchError(f"table {paper.name} has no model {m!r}; its models: {', '.join(paper.models)}")
    names = list(dataset_names or paper.datasets)
    for d in names:
        if d not in paper.datasets:
            raise FusebenchError(f"table {paper.name} has no dataset {d!r}; its datasets: {', '.join(paper.datasets)}")
    models = [m for m in paper.models if m in models]  # the table's order
    names = [d for d in paper.datasets if d in names]
    overrides = _parse_overrides(param_items, models)
    points = {m: grid_points(paper, m, overrides) if grid else [model_params(paper, m, overrides)] for m in models}
    lines = missing_data(paper, data_dir, names)
    if lines:
        raise DataMissing(paper.name, lines)
    cfg = run_config(paper, device)
    pr = paper.protocol
    loaded = {}
    for name in names:
        ds = datasets.load(name, data_dir=data_dir, rating_threshold=pr.get("rating_threshold"))
        loaded[name] = compact(ds) if pr.get("drop_empty") else ds
    split_protocol = pr.get("split", "random")
    split_params = {"ratios": tuple(pr["ratios"])} if "ratios" in pr and split_protocol != "given" else {}
    store = RecordStore(results)
    cells: list[Cell] = []
    runs: dict[tuple[str, str], list[dict]] = {}
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    searched: dict[tuple[str, str], list[tuple[float, dict[str, Any]]]] = {}

    def run(ds, sp, model, params, seed, label):
        out = run_one(store, ds, sp, model, params, cfg, force=force)
        rec = out.located()
        if rec.get("failed"):
            raise FusebenchError(
                f"{model} on {ds.name}, seed {seed}, diverged ({rec['failed']}); its failure is recorded in {rec.path}"
            )
        if on_run is not None:
            on_run(label, model, seed, rec)
        return rec

    for name, ds in loaded.items():
        splits = [datasets.split(ds, protocol=split_protocol, seed=s, **split_params) for s in range(seeds)]
        for model in models:
            best, first = points[model][0], None
            if len(points[model]) > 1:  # --grid: select on validation (seed 0), never on test
                tried = []
                for pt in points[model]:
                    rec = run(ds, splits[0], model, pt, 0, f"{name} (grid)")
                    v = float(rec["valid"].get(cfg.metric, float("nan")))
                    tried.append((v if np.isfinite(v) else -np.inf, pt, rec))
                top = max(v for v, _, _ in tried)
                _, best, first = next(t for t in tried if t[0] == top)  # ties: the first point
                searched[(name, model)] = [(v, pt) for v, pt, _ in tried]
            chosen[(name, model)] = best
            recs = [
                first if (seed == 0 and first is not None) else run(ds, sp, model, best, seed, name)
                for seed, sp in enumerate(splits)
            ]
            runs[(name, model)] = recs
            published = paper.results.get(name, {}).get(model, {})
            per_user = [RecordStore.per_user(r) for r in recs]
            for metric, value in published.items():
                cells.append(
                    Cell(
                        name,
                        model,
                        metric,
                        float(value),
                        [float(r["test"][metric]) for r in recs],
                        [pu[metric] for pu in per_user if metric in pu],
                        paper.tolerance,
                    )
                )
    text = render_report(paper, cells, loaded, chosen, overrides, seeds, device, runs, searched, grid, models)
    path = Path(results) / "reproductions" / f"{paper.name}.md"
    atomic_write(path, lambda f: f.write(text.encode()))
    return path


# ------------------------------------------------------------------------ report
def _f(x: float) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.4f}"


def _stats_line(paper: Paper, name: str, ds) -> tuple[str, str | None]:
    ours = (ds.n_users, ds.n_items, ds.n_interactions)
    src = paper.datasets[name].get("stats")
    fmt = lambda t: " / ".join(f"{v:,}" for v in t)  # noqa: E731
    if not src:
        return f"ours {fmt(ours)} (users / items / interactions); the source states none", None
    theirs = (int(src["users"]), int(src["items"]), int(src["interactions"]))
    same = ours == theirs
    line = f"ours {fmt(ours)}, source {fmt(theirs)} (users / items / interactions): {'match' if same else 'DIFFER'}"
    diff = (
        None
        if same
        else (
            f"{paper.datasets[name].get('label', name)}: the loaded data has {fmt(ours)} "
            f"users / items / interactions, the source {fmt(theirs)}; a different dataset "
            "explains any gap on its own."
        )
    )
    return line, diff


def render_report(paper, cells, loaded, chosen, overrides, seeds, device, runs, searched, grid, models) -> str:
    from .provenance import device_description, git_revision

    info, pr = paper.info, paper.protocol
    n_ok = sum(c.reproduced for c in cells)
    out = [f"# Reproduction: {info['title']}", ""]
    out += [
        f"- Source: {info['source']}" + (f" (commit `{info['source_commit']}`)" if info.get("source_commit") else ""),
        f"- Table: {info.get('table', '–')}",
    ]
    if info.get("citation"):
        out.append(f"- Citation: {info['citation']}")
    out += [
        f"- Run: {seeds} seed(s) (0..{seeds - 1}) on {device_description(device)}, fusebench revision "
        f"`{git_revision() or 'unknown'}`, {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
        f"- Table file: `benchmark/papers/{paper.path.name}`",
        "",
    ]
    out += ["## Protocol", ""] + [f"- {d}" for d in pr.get("description", [])]
    out += [
        "",
        "## Verdict rule",
        "",
        "Ours = mean over seeds ± sample std. 95% CI (seeds) = Student t-interval of the mean over seeds "
        "(needs >= 2 seeds; clipped to [0, 1]; wide with few seeds: t(0.975, 1) = 12.7); 95% CI (users) = "
        "percentile bootstrap over test users (1000 resamples) of the "
        "per-user values averaged over seeds. A cell is **reproduced** when the published value lies in our "
        "95% interval (the seed t-interval with >= 2 seeds, else the user bootstrap) or within "
        f"{paper.tolerance:.0%} (relative) of our mean; otherwise **not reproduced**.",
        "",
        f"**Summary: {n_ok} of {len(cells)} cells reproduced.**",
        "",
    ]
    extra_diffs = []
    for name, ds in loaded.items():
        label = paper.datasets[name].get("label", name)
        stats, diff = _stats_line(paper, name, ds)
        if diff:
            extra_diffs.append(diff)
        sub = [c for c in cells if c.dataset == name]
        out += [
            f"## {label} (`{name}`)",
            "",
            f"Data: {stats}.",
            "",
            "| Model | Metric | Published | Ours (mean ± std) | Δ abs | Δ rel | 95% CI (seeds, t) | "
            "95% CI (users, bootstrap) | Verdict |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for c in sub:
            cs, cu = c.ci_seeds, c.ci_users
            seeds_ci = "–" if cs is None else f"[{_f(cs[0])}, {_f(cs[1])}]"
            out.append(
                f"| {paper.models[c.model].get('label', c.model)} | {c.metric} | {c.published:.4f} | "
                f"{_f(c.mean)} ± {_f(c.std)} | {c.delta:+.4f} | {c.rel:+.1%} | {seeds_ci} | "
                f"[{_f(cu[0])}, {_f(cu[1])}] | {c.verdict} |"
            )
        out.append("")
    if overrides:
        extra_diffs.append(
            "Parameters overridden on the command line (not the source's configuration): "
            + ", ".join(f"{k}={v}" for k, v in sorted(overrides.items()))
            + "."
        )
    if grid:
        extra_diffs.append(
            f"Grid search (--grid): each model's stated grid was run on seed 0 and the point with "
            f"the best validation {paper.protocol.get('metric', 'recall@20')} kept for every seed; "
            "test results never took part in the choice."
        )
    else:
        with_grid = [m for m in models if paper.models[m].get("grid")]
        if with_grid:
            extra_diffs.append(
                "Fixed configurations: the source searched a grid per model; this run used one "
                f"configuration per model (`--grid` runs the stated grids of {', '.join(with_grid)}, "
                "selecting on validation)."
            )
    if seeds < 2:
        extra_diffs.append(
            "One seed only: the verdict interval is the per-user bootstrap, which ignores the variation between seeds."
        )
    skipped = [m for m in paper.models if m not in models]
    if skipped:
        extra_diffs.append(f"Models of the table not run this time: {', '.join(skipped)}.")
    out += ["## Known protocol differences that can explain a gap", ""]
    out += [f"- {d}" for d in [*pr.get("differences", []), *extra_diffs]]
    out += [
        "",
        "## Configurations run",
        "",
        "| Dataset | Model | Our parameters | Stated by the source | Grid points tried (best valid) | "
        "Epochs run (best epoch) per seed |",
        "|---|---|---|---|---|---|",
    ]
    for (name, m), p in chosen.items():
        epochs = [
            f"{r.get('training', {}).get('epochs_run', '–')} ({r.get('training', {}).get('best_epoch', '–')})"
            for r in runs[(name, m)]
        ]
        ptxt = ", ".join(f"{k}={v}" for k, v in sorted(p.items())) or "defaults"
        tried = searched.get((name, m))
        gtxt = (
            "–"
            if not tried
            else (f"{len(tried)} ({paper.protocol.get('metric', 'recall@20')} {max(v for v, _ in tried):.4f})")
        )
        out.append(
            f"| {name} | {paper.models[m].get('label', m)} | {ptxt} | {paper.models[m].get('stated', '–')} | "
            f"{gtxt} | {', '.join(epochs)} |"
        )
    out.append("")
    return "\n".join(out)


# ------------------------------------------------------------------------ CLI
def reproduce_cmd(args) -> int:
    """`python -m benchmark reproduce` (see benchmark/cli.py for the options)."""
    import json
    import sys

    from baselines.torch_base import resolve_device

    from .options import UsageError, split_list

    if args.list:
        if args.name:
            raise UsageError("reproduce --list takes no table name")
        print(list_papers(args.data_dir))
        return 0
    if not args.name:
        raise UsageError(f"reproduce needs a table name (one of {', '.join(paper_names())}) or --list")
    paper = load_paper(args.name)

    def on_run(ds, model, seed, rec):
        if ds.endswith("(grid)"):
            print(
                f"{ds:23s} {model:10s} valid "
                f"{rec['training']['metric']}={rec['valid'][rec['training']['metric']]:.4f} "
                + json.dumps(rec["model"]["params"], sort_keys=True),
                file=sys.stderr,
            )
            return
        print(
            f"{ds:23s} {model:10s} seed={seed} "
            + " ".join(
                f"{m}={rec['test'][m]:.4f}" for m in list(paper.results.get(ds.split()[0], {}).get(model, {}))[:3]
            ),
            file=sys.stderr,
        )

    try:
        path = reproduce(
            paper,
            seeds=args.seeds,
            data_dir=args.data_dir,
            results=args.results,
            models=split_list(args.models),
            dataset_names=split_list(args.datasets),
            param_items=args.param,
            device=str(resolve_device(args.device)),
            force=args.force,
            grid=args.grid,
            on_run=on_run,
        )
    except DataMissing as exc:
        print(
            f"error: the data for {paper.name} is missing; put these files in place (nothing was written):",
            file=sys.stderr,
        )
        for line in exc.lines:
            print(f"missing: {line}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
