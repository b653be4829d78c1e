"""`python -m benchmark ...`: run, leaderboard, datasets, models, perf.

Errors the user can cause surface as one line on stderr and exit code 2; everything is
validated (models, parameters, metrics, datasets) before the first record is written. Faults of
the environment (full disk, read-only or missing folders, a file where a folder belongs) are
one line and exit code 3; writes are atomic, so they leave nothing half-written.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any, Sequence

from tqdm import tqdm

import datasets
import fusion_models  # noqa: F401  (registers the fusion models)
from baselines.base import INPUTS, campaign_models, get_model_class, model_names, model_source, reads_content
from baselines.params import describe
from datasets.content_inputs import ItemContent
from datasets.errors import EnvironmentFault, FusebenchError
from datasets.placebo import PLACEBOS, check_placebo

from .metrics import PRIMARY_METRIC
from .options import DEFAULT_DATASETS, UsageError, parse_params, resolve_models, split_list
from .protocol import DEFAULT_SEEDS, PATIENCE, Protocol
from .records import RecordStore
from .training import parse_metric

ENVIRONMENT_FAULT = 3  # exit code of an OSError (full disk, read-only folder); user errors exit 2


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad usage already; keep its message to one line."""

    def error(self, message):  # pragma: no cover - exercised through the CLI tests
        self.exit(2, f"{self.prog}: error: {message}\n")


def modality_params(models: list[str], value: str, params: dict[str, Any]) -> dict[str, Any]:
    """--modalities applies to feature-reading models; it is an error on a run without one."""
    if not any("modalities" in get_model_class(m).param_names() for m in models):
        raise UsageError(f"--modalities: none of {', '.join(models)} reads item features")
    if len(models) == 1:
        return {**params, "modalities": value}
    raise UsageError("--modalities applies to one model: use it with --model (or --param modalities=...)")


def run_config(args, device: str, seeds: tuple[int, ...] | None = None) -> Protocol:
    """The evaluation protocol from the CLI (split rule, seeds, stopping rule, test masking).

    `--protocol mmrec` is MMRec's protocol: the dataset's given split, early stopping with
    MMRec's stopping_step 20 (our patience 21, the default of every protocol) over up to 1000 epochs, and only
    training items masked at test time."""
    protocols = (*datasets.PROTOCOLS, "mmrec")
    if args.protocol is not None and args.protocol not in protocols:
        raise UsageError(f"unknown protocol {args.protocol!r}; available: {', '.join(protocols)}")
    parse_metric(args.metric)  # before anything is written (a one-shot model never validates)
    common = {"metric": args.metric, "eval_every": args.eval_every, "device": device}
    if seeds is not None:
        common["seeds"] = tuple(seeds)
    if args.patience is not None:
        common["patience"] = args.patience
    if getattr(args, "epochs", None) is not None:
        if args.epochs < 1:
            raise UsageError("--epochs must be >= 1")
        common["epochs"] = args.epochs
    if args.protocol == "mmrec":
        return Protocol.mmrec(**common)
    return Protocol(split=args.protocol, **common)


def seed_list(args) -> tuple[int, ...]:
    """--seed N (one seed) or --seeds N (seeds 0..N-1)."""
    if getattr(args, "seed", None) is not None:
        return (args.seed,)
    if args.seeds < 1:
        raise UsageError("--seeds must be >= 1")
    return tuple(range(args.seeds))


def cmd_run(args) -> int:
    _, summary = execute_run(args)
    print(summary)
    return 0


def execute_run(args) -> tuple[list[tuple[Any, int, Any]], str]:
    """`run` (the CLI's and `benchmark.api.run`'s): validate everything, tune, run the seeds,
    write the leaderboard. Returns ((job, seed, RunOutcome) for every run, the summary line)."""
    from baselines.torch_base import resolve_device

    if args.all == bool(args.dataset or args.model):
        raise UsageError("run needs either --all or both --dataset and --model")
    if not args.all and not (args.dataset and args.model):
        raise UsageError("run needs both --dataset and --model (or --all)")
    if not str(args.results).strip():
        raise UsageError("--results needs a folder")
    RecordStore(args.results).check_layout()
    models = split_list(args.models, "--models") if args.all else [args.model]
    models = resolve_models(models or campaign_models())
    if args.param and len(models) != 1:
        raise UsageError("--param applies to one model: use it with --model")
    params = parse_params(models[0], args.param) if args.param else {}
    if args.modalities is not None:
        params = modality_params(models, args.modalities, params)
    names = (split_list(args.datasets, "--datasets") or list(DEFAULT_DATASETS)) if args.all else [args.dataset]
    tuning = run_tuning(args)
    cfg = run_config(args, str(resolve_device(args.device)), seed_list(args))
    from .jobs import Job, auto_jobs, execute, longest_first, run_parallel
    from .provenance import git_revision

    workers = auto_jobs(cfg.device) if args.jobs == "auto" else _positive_int("--jobs", args.jobs)
    git_revision()  # the records state the code as it was when the run started

    # Load every dataset before running anything, so a malformed one stops the run before
    # a single record is written; unavailable ones (no mirror, no network) are skipped.
    loaded = []
    for name in names:
        try:
            loaded.append(datasets.load(name, data_dir=args.data_dir, rating_threshold=args.rating_threshold))
        except datasets.DatasetUnavailable as e:
            if not args.all:
                raise
            print(f"skipped dataset {name}: {e}", file=sys.stderr)
    loaded = distinct_datasets(loaded)
    for ds in loaded:
        if ds.n_interactions == 0:
            at = f" at --rating-threshold {args.rating_threshold}" if args.rating_threshold is not None else ""
            raise UsageError(f"dataset {ds.name!r} has no interactions{at}: nothing to train or evaluate")
        if (cfg.split or "given") == "given" and ds.given_split is not None and not (ds.given_split == 2).any():
            raise UsageError(f"dataset {ds.name!r}: its own split has no test rows (label 2)")
    if cfg.split == "given" and args.all:
        for name in [ds.name for ds in loaded if ds.given_split is None]:
            print(f"skipped dataset {name}: no split of its own for --protocol {args.protocol}", file=sys.stderr)
        loaded = [ds for ds in loaded if ds.given_split is not None]
    for ds in loaded:
        cfg.split_rule(ds)  # a given split asked of a dataset without one: before anything runs
    from .model_plan import Plan

    placebos = tuple(check_placebo(k) for k in split_list(getattr(args, "placebo", None), "--placebo") or ())
    if placebos and not args.all and not reads_content(get_model_class(models[0])):
        raise UsageError(f"{models[0]} reads no item content: --placebo does not apply to it")
    plan = Plan(tuning=tuning, results=args.results, force=args.force, placebos=tuple(dict.fromkeys(placebos)))
    counts = {"done": 0, "skipped": 0, "trials": 0, "failed": 0, "elsewhere": 0}
    pairs = []
    for ds in loaded:
        for m in models:
            why = unmet_needs(m, params, ds)
            if why is None:
                pairs.append((ds, m))
            elif args.all:
                print(f"skipped {m} on {ds.name}: it {why}", file=sys.stderr)
            else:
                raise UsageError(f"{m} {why} ({ds.name})")
    prints = {id(ds): ds.fingerprint() for ds in loaded}  # hashes every interaction: once per dataset
    jobs = [
        Job(
            ds.meta["spec"],
            ds.name,
            prints[id(ds)],
            args.data_dir,
            args.rating_threshold,
            m,
            params,
            replace(cfg, split=cfg.split_rule(ds)),
            plan,
            model_source(m),
        )
        for ds, m in pairs
    ]
    jobs = longest_first(jobs, lambda m: get_model_class(m).iterative)
    runs = sum(len(cfg.seeds) * (1 + len(plan.placebos) * reads_content(get_model_class(j.model))) for j in jobs)
    bar = tqdm(total=runs, desc="fusebench", unit="run", disable=None, dynamic_ncols=True)

    def on_tuned(job, res):
        counts["trials"] += res.new_trials
        if res.new_trials:
            best = "–" if res.best_valid is None else f"{res.best_valid:.4f}"
            full = res.full_length
            chosen = (
                ""
                if not full
                else (
                    f"; to convergence the defaults reach {full['defaults']:.4f}, the best "
                    f"trial {full['best']:.4f}: {full['chosen']} kept"
                )
            )
            tqdm.write(
                f"{job.name:16s} {job.model:12s} tuned: {res.trials} trials ({res.pruned} pruned), "
                f"valid {res.metric}={best} {res.best_params}{chosen}",
                file=sys.stderr,
            )

    outcomes = []

    def on_run(job, seed, out):
        outcomes.append((job, seed, out))
        bar.update(1)
        if out.status == "skipped":
            counts["skipped"] += 1
            return
        rec = out.record

        def say(label: str, text: str) -> None:  # one line per run, above the progress bar
            tqdm.write(f"{job.name:16s} {label:12s} seed={seed} {text}", file=sys.stderr)

        if out.status == "elsewhere":
            counts["elsewhere"] += 1
            say(job.model, f"run by {out.extra['worker']} (shared storage)")
            return
        counts["done"] += 1
        label = job.model + (f" [{rec['placebo']} placebo]" if rec.get("placebo") else "")
        if out.status == "failed":
            counts["failed"] += 1
            say(label, f"FAILED: {rec['failed']} (recorded; listed on the leaderboard)")
            return
        say(
            label,
            f"recall@20={rec['test']['recall@20']:.4f} ndcg@20={rec['test']['ndcg@20']:.4f} "
            f"train={rec['train_seconds']:.1f}s",
        )

    if workers == 1 or len(jobs) <= 1:  # in this process, with live progress
        by_spec = {ds.meta["spec"]: ds for ds in loaded}
        for job in jobs:
            bar.set_postfix_str(f"{job.name} {job.model}" + (" tuning" if tuning.budget else ""))
            execute(
                job,
                by_spec[job.dataset],
                on_tuned=lambda res, job=job: on_tuned(job, res),
                on_run=lambda seed, out, job=job: on_run(job, seed, out),
                progress=lambda msg, job=job: bar.set_postfix_str(f"{job.name} {job.model} {msg}"),
            )
    else:
        bar.set_postfix_str(f"{min(workers, len(jobs))} parallel jobs")

        def on_done(i, result):
            res, outcomes = result
            if res is not None:
                on_tuned(jobs[i], res)
            for out in outcomes:  # the seeds' runs, then their placebo controls
                on_run(jobs[i], out.record.get("seed"), out)

        run_parallel(jobs, min(workers, len(jobs)), on_done)
    bar.close()
    from .leaderboard import write_leaderboard
    from .shared_runs import gather

    if args.storage:  # what other machines finished so far joins this machine's page
        gather(args.storage, RecordStore(args.results))
    path = write_leaderboard(args.results, storage=args.storage)
    tuned = f" ({counts['trials']} new tuning trials)" if tuning.budget else ""
    failed = f" ({counts['failed']} failed: diverged, see the leaderboard)" if counts["failed"] else ""
    elsewhere = f", {counts['elsewhere']} run by other workers of the storage" if counts["elsewhere"] else ""
    return outcomes, (
        f"{counts['done']} runs done{failed}, {counts['skipped']} already finished (skipped; --force "
        f"reruns them){elsewhere}{tuned}; wrote {path}"
    )


def unmet_needs(model: str, params: dict[str, Any], ds) -> str | None:
    """Why `ds` cannot feed `model` (None when it can)."""
    needs = get_model_class(model).needs(params)
    if "features" in needs and not ds.features:
        return "needs item features, the dataset has none"
    raw = ItemContent.of(ds).available() if needs & {"text", "content"} else []
    if "text" in needs and "text" not in raw:
        return "needs item text, the dataset has none"
    if "content" in needs and not raw:
        return "needs raw item content (text or a catalogue's files), the dataset has none"
    return None


def distinct_datasets(loaded: list) -> list:
    """The loaded datasets without repeats of one spec; two different ones sharing a short
    name are refused (their records and messages would be told apart by a hash only)."""
    seen: dict[str, Any] = {}
    for ds in loaded:
        other = seen.setdefault(ds.name, ds)
        if other.meta["spec"] != ds.meta["spec"]:
            a, b = other.meta["spec"], ds.meta["spec"]
            raise UsageError(
                f"datasets {a} and {b} are both named {ds.name!r}; name them apart: "
                f"--datasets {ds.name}_a={a},{ds.name}_b={b}"
            )
    return list(seen.values())


def _cmd_doctor(args) -> int:
    from .doctor import cmd_doctor

    return cmd_doctor(args)


def _positive_int(flag: str, value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise UsageError(f"{flag} expects a positive integer or 'auto', got {value!r}")
    return n


def run_tuning(args):
    """How `run` tunes: `run --all` with the default budget unless --no-tune; a single run
    when --budget is given (otherwise it trains the given configuration: defaults or --param)."""
    from .tuning import DEFAULT_BUDGET, Budget, TuningPlan

    budget = None
    if args.no_tune:
        if args.budget is not None:
            raise UsageError("--no-tune and --budget contradict each other")
    elif args.budget is not None or args.all:
        budget = Budget.parse(args.budget if args.budget is not None else DEFAULT_BUDGET, epoch_cap=args.epoch_cap)
    return TuningPlan(budget, pruner=args.pruner, storage=args.storage)


def cmd_tune(args) -> int:
    from baselines.torch_base import resolve_device

    from .model_plan import tuning_data
    from .tuning import TUNING_SPLIT_SEED, Budget, TuningPlan, tune

    if args.trials is not None and args.timeout is not None:
        raise UsageError("tune takes --trials or --timeout, not both")
    args.model = resolve_models([args.model])[0]
    params = parse_params(args.model, args.param) if args.param else {}
    if args.modalities is not None:
        params = modality_params([args.model], args.modalities, params)
    if args.timeout is not None:
        budget = Budget(seconds=args.timeout, epoch_cap=args.epoch_cap)
    else:
        from .tuning import DEFAULT_BUDGET

        budget = (
            Budget.parse(DEFAULT_BUDGET, epoch_cap=args.epoch_cap)
            if args.trials is None
            else Budget(trials=args.trials, epoch_cap=args.epoch_cap)
        )
    plan = TuningPlan(budget, pruner=args.pruner, storage=args.storage)
    cfg = run_config(args, str(resolve_device(args.device)))
    ds = datasets.load(args.dataset, data_dir=args.data_dir, rating_threshold=args.rating_threshold)
    split = cfg.split_of(ds, TUNING_SPLIT_SEED)
    data = tuning_data(ds, split)
    del split  # tuning gets train and valid only
    bar = tqdm(desc=f"tune {ds.name} {args.model}", disable=None, dynamic_ncols=True, bar_format="{desc}: {postfix}")
    res = tune(
        data,
        args.model,
        plan,
        cfg,
        results=args.results,
        study=args.study,
        fixed_params=params,
        progress=bar.set_postfix_str,
    )
    bar.close()
    best = "–" if res.best_valid is None else f"{res.best_valid:.4f}"
    print(
        f"study {res.study} ({res.storage}): {res.trials} finished trials ({res.complete} complete, "
        f"{res.pruned} pruned; {res.new_trials} run now), budget {budget.describe()}"
    )
    print(
        f"best valid {res.metric} = {best}  params {json.dumps(res.best_params, sort_keys=True)}"
        + (f"  ({res.note})" if res.note else "")
    )
    return 0


def cmd_leaderboard(args) -> int:
    from .leaderboard import write_leaderboard

    if args.storage:
        from .shared_runs import gather

        RecordStore(args.results).check_layout()
        n = gather(args.storage, RecordStore(args.results))
        print(f"gathered {n} records from the storage into {args.results}")

    print(f"wrote {write_leaderboard(args.results, storage=args.storage)}")
    return 0


def cmd_aa(args) -> int:
    from . import aa

    print(aa.run(args.results, args.metric, args.dataset))
    return 0


def cmd_datasets(args) -> int:
    if args.action == "list":
        for name in datasets.available():
            print(name)
        return 0
    if not args.name:
        raise UsageError(f"datasets {args.action} needs a dataset NAME")
    if args.action == "export":
        from datasets.export import export

        if not args.out:
            raise UsageError("datasets export needs an output folder: datasets export NAME --format F OUT")
        if not args.split and (args.protocol is not None or args.seed is not None):
            raise UsageError("--protocol and --seed choose the split that --split exports; add --split")
        ds = datasets.load(args.name, data_dir=args.data_dir, rating_threshold=args.rating_threshold)
        if args.split:
            from .score import split_of

            split = split_of(ds, args.protocol, args.seed, allow_mmrec=False)[0]
            print(f"wrote {export(ds, args.format, args.out, split=split)}")
            return 0
        print(f"wrote {export(ds, args.format, args.out)}")
        return 0
    ds = datasets.load(args.name, data_dir=args.data_dir, rating_threshold=args.rating_threshold)
    info = datasets.describe(ds)
    width = max(len(k) for k in info)
    for k, v in info.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}: {b}" for a, b in v.items()) or "–"
        elif isinstance(v, float):
            v = f"{v:.6g}"
        print(f"{k:<{width}}  {v}")
    return 0


def cmd_models(args) -> int:
    """One line per model, then one per parameter: its default and the values it accepts."""

    width = max(map(len, model_names()))
    for name in model_names():
        cls = get_model_class(name)
        defaults, constraints = cls.defaults(), cls.parameter_constraints()
        kind = "iterative" if cls.iterative else "one-shot"
        print(f"{name:{width}s} {cls.family:16s} {kind:9s} {'' if defaults else '(no hyper-parameters)'}".rstrip())
        print(f"    reads: {'; '.join(['interactions', *(INPUTS.get(n, n) for n in sorted(cls.needs()))])}")
        for k, v in defaults.items():
            print(f"    {f'{k}={v!r}':28s} {describe(constraints[k]) if k in constraints else '(not checked)'}")
    return 0


def cmd_ablate(args) -> int:
    from baselines.torch_base import resolve_device

    from .ablation import ablate, write_report

    args.model = resolve_models([args.model])[0]
    params = parse_params(args.model, args.param) if args.param else {}
    cfg = run_config(args, str(resolve_device(args.device)), seed_list(args))
    ds = datasets.load(args.dataset, data_dir=args.data_dir, rating_threshold=args.rating_threshold)
    splits = [cfg.split_of(ds, s) for s in cfg.seeds]

    def on_run(label, seed, rec):
        if rec is not None:
            print(
                f"{label:28s} seed={seed} recall@20={rec['test']['recall@20']:.4f} train={rec['train_seconds']:.1f}s",
                file=sys.stderr,
            )

    text = ablate(
        RecordStore(args.results),
        ds,
        splits,
        args.model,
        params,
        cfg,
        modalities=split_list(args.modalities),
        force=args.force,
        on_run=on_run,
    )
    print(text)
    print(f"wrote {write_report(args.results, ds.name, args.model, text)}")
    return 0


def cmd_features(args) -> int:
    from .features_cmd import cmd_features as run_features

    return run_features(args)


def cmd_reproduce(args) -> int:
    from .reproduce import reproduce_cmd

    return reproduce_cmd(args)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m benchmark", description="fusebench: multimodal recommender benchmark")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="train and evaluate models, write run records and the leaderboard")
    r.add_argument("--all", action="store_true", help="every registered model on every default dataset")
    r.add_argument("--dataset", help="one dataset (see `datasets list`)")
    r.add_argument(
        "--model",
        help="one model: a name (see `models list`) or your own class, path/to/file.py:Class or package.module:Class",
    )
    r.add_argument("--datasets", help="with --all: comma-separated datasets instead of the defaults")
    r.add_argument("--models", help="with --all: comma-separated models (names or FILE.py:Class specs) instead of all")
    r.add_argument("--seed", type=int, help="one seed (split and model initialisation)")
    r.add_argument(
        "--seeds", type=int, default=len(DEFAULT_SEEDS), help=f"number of seeds 0..N-1 (default {len(DEFAULT_SEEDS)})"
    )
    r.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="model hyper-parameter")
    r.add_argument(
        "--protocol",
        help="split protocol (default: the source's split if it has one, else random 8:1:1); "
        "mmrec = MMRec's protocol (given split, stopping_step 20, only train items masked at test)",
    )
    r.add_argument(
        "--modalities", help="feature sets a fusion/content model uses, e.g. text,audio/vggish (default all)"
    )
    r.add_argument("--rating-threshold", type=float, help="ratings >= this are positives (default: all)")
    r.add_argument("--metric", default=PRIMARY_METRIC, help="validation metric for early stopping")
    r.add_argument(
        "--patience",
        type=int,
        help=f"validations without improvement before stopping (default {PATIENCE} in every protocol: "
        "MMRec's stopping_step 20 stops at the 21st)",
    )
    r.add_argument("--eval-every", type=int, default=1, help="validate every N epochs")
    r.add_argument(
        "--placebo",
        metavar="KINDS",
        help=f"also run placebo controls ({', '.join(PLACEBOS)}, comma-separated) of every model that reads "
        "item content: its configuration and seeds on content that carries no item information",
    )
    r.add_argument(
        "--epochs",
        type=int,
        help="maximum epochs of every iterative model whose epochs are not set by "
        "--param (default: the protocol's 1000, never a model's own default; patience stops training)",
    )
    _run_io_args(r)
    r.add_argument(
        "--jobs",
        default="auto",
        help="(dataset, model) jobs run side by side in worker processes, "
        "sharing the cores (default auto: one per CPU core, at most 4; 1 on a GPU)",
    )
    _tuning_args(r)
    r.add_argument(
        "--budget",
        help="tuning budget per dataset and model: N trials or Ns seconds "
        "(--all default: see README; a single run tunes only when given)",
    )
    r.add_argument("--no-tune", action="store_true", help="no tuning: the models' defaults (or --param)")
    r.set_defaults(func=cmd_run)

    t = sub.add_parser("tune", help="tune one model on one dataset (validation only), e.g. as one of several workers")
    t.add_argument("--dataset", required=True)
    t.add_argument("--model", required=True)
    t.add_argument(
        "--trials", type=int, help="number of finished trials the study should hold (default: the run --all budget)"
    )
    t.add_argument("--timeout", type=float, help="instead of --trials: seconds of trial time")
    t.add_argument("--study", help="study name (default: derived from dataset, model and protocol)")
    t.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="hold a hyper-parameter fixed")
    t.add_argument("--modalities", help="feature sets a fusion/content model uses (held fixed)")
    t.add_argument("--protocol", help="split protocol (as for run; mmrec = MMRec's protocol)")
    t.add_argument("--rating-threshold", type=float)
    t.add_argument("--metric", default=PRIMARY_METRIC, help="the validation metric to maximise")
    t.add_argument("--patience", type=int)
    t.add_argument("--eval-every", type=int, default=1)
    t.add_argument(
        "--epochs", type=int, help="as for run: maximum epochs of iterative models (trials also obey --epoch-cap)"
    )
    t.add_argument("--device", default="auto")
    t.add_argument("--data-dir")
    t.add_argument("--results", default="results", help="results folder (the default SQLite storage lives there)")
    _tuning_args(t)
    t.set_defaults(func=cmd_tune)

    lb = sub.add_parser("leaderboard", help="regenerate results/LEADERBOARD.md from the records")
    lb.add_argument("--results", default="results")
    lb.add_argument(
        "--storage",
        metavar="URL",
        help="a server storage of `run --storage`: its finished runs (from every machine) are gathered "
        "into --results first, and its studies give the budget curves",
    )
    lb.set_defaults(func=cmd_leaderboard)

    aa = sub.add_parser(
        "aa", help="A/A check: how often the tests call a model different from itself (groups of its own seeds)"
    )
    aa.add_argument("--results", default="results")
    aa.add_argument("--dataset", help="only this dataset's tables")
    aa.add_argument("--metric", default=PRIMARY_METRIC, help=f"per-user test metric (default {PRIMARY_METRIC})")
    aa.set_defaults(func=cmd_aa)

    dr = sub.add_parser(
        "doctor", help="list damaged or orphaned records, studies and locks; --fix moves them to results/quarantine/"
    )
    dr.add_argument("--results", default="results")
    dr.add_argument("--fix", action="store_true", help="move what is damaged to quarantine/ with its reason")
    dr.set_defaults(func=_cmd_doctor)

    d = sub.add_parser("datasets", help="list datasets or summarise one")
    d.add_argument("action", choices=["list", "info", "export"])
    d.add_argument("name", nargs="?")
    d.add_argument("out", nargs="?", help="export: output folder")
    d.add_argument("--format", choices=["recbole", "mmrec"], default="recbole", help="export format")
    d.add_argument("--data-dir")
    d.add_argument("--rating-threshold", type=float)
    d.add_argument(
        "--split",
        action="store_true",
        help="export: write one split's train/valid/test files (and the "
        "test qrels, recbole format) so another framework trains on exactly fusebench's training set",
    )
    d.add_argument("--protocol", help="with --split: split protocol (default: the source's split, else random 8:1:1)")
    d.add_argument("--seed", type=int, help="with --split: split seed (default 0)")
    d.set_defaults(func=cmd_datasets)

    m = sub.add_parser("models", help="list models with their hyper-parameters and defaults")
    m.add_argument("action", choices=["list"])
    m.set_defaults(func=cmd_models)

    a = sub.add_parser("ablate", help="run a feature model with each modality removed; write a comparison table")
    a.add_argument("--dataset", required=True)
    a.add_argument("--model", required=True)
    a.add_argument("--modalities", help="the modalities to start from (default: all the dataset has)")
    a.add_argument("--seeds", type=int, default=len(DEFAULT_SEEDS), help=f"seeds 0..N-1 (default {len(DEFAULT_SEEDS)})")
    a.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="model hyper-parameter")
    a.add_argument("--protocol", help="split protocol (as for run; mmrec = MMRec's protocol)")
    a.add_argument("--rating-threshold", type=float)
    a.add_argument("--metric", default=PRIMARY_METRIC, help="validation metric for early stopping")
    a.add_argument("--patience", type=int)
    a.add_argument("--eval-every", type=int, default=1)
    _run_io_args(a)
    a.set_defaults(func=cmd_ablate)

    fe = sub.add_parser("features", help="list the encoders, or extract item features from raw content")
    fe.add_argument("action", choices=["list", "extract"])
    fe.add_argument("--dataset", help="dataset to extract for (a name, catalogue:PATH, mmrec:PATH ...)")
    fe.add_argument("--encoder", help="encoder name, e.g. text/minilm (see `features list`)")
    fe.add_argument("--modality", help="modality name to store it under (default: the encoder name)")
    fe.add_argument("--content", help="folder of image/audio/video files named <item id>.<ext>")
    fe.add_argument("--batch-size", type=int)
    fe.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda ...")
    fe.add_argument("--data-dir", help="offline mirror folder holding dataset files")
    fe.add_argument("--no-cache", action="store_true", help="recompute even if the encoder cache has it")
    fe.set_defaults(func=cmd_features)

    pf = sub.add_parser("perf", help="speed scripts: metrics, train, scale")
    pfs = pf.add_subparsers(dest="what", required=True, metavar="{metrics,train,scale}")
    pm = pfs.add_parser(
        "metrics",
        help="the metric core against RecBole, ranx, numpy and the memory-read floor on synthetic top-K lists",
    )
    pm.add_argument("--users", type=int, default=100_000)
    pm.add_argument("--items", type=int, default=20_000)
    pm.add_argument("--k", type=int, default=100)
    pm.add_argument("--seed", type=int, default=0)
    pm.add_argument("--repeat", type=int, default=3)
    pm.add_argument("--no-compile-timing", action="store_true", help="skip the fresh-process compile measurements")
    pm.set_defaults(func=_perf("perf", "run_metrics"))
    pt = pfs.add_parser("train", help="seconds per training epoch and per validation pass, per model")
    pt.add_argument("--dataset", default="ml-100k")
    pt.add_argument("--models", help="comma-separated iterative models (default: every registered one)")
    pt.add_argument("--epochs", type=int, default=4, help="epochs timed per model (default 4; the first apart)")
    _shared_param_arg(pt)
    pt.add_argument("--no-reference", action="store_true", help="skip RecBole's BPR and LightGCN")
    pt.add_argument("--data-dir")
    pt.set_defaults(func=_perf("perf_train", "run_train"))
    ps = pfs.add_parser(
        "scale",
        help="seconds per epoch, per validation and test pass, and peak memory of every model on a "
        "synthetic folder of a large dataset's shape (default: Amazon Sports)",
    )
    from .perf_scale import SHAPES

    ps.add_argument("--shape", choices=sorted(SHAPES), default="sports", help="a standard shape (default sports)")
    ps.add_argument("--users", type=int)
    ps.add_argument("--items", type=int)
    ps.add_argument("--interactions", type=int)
    ps.add_argument("--text-dim", type=int, default=384)
    ps.add_argument("--image-dim", type=int, default=4096)
    ps.add_argument("--models", help="comma-separated models (default: every registered one)")
    ps.add_argument("--epochs", type=int, default=2, help="epochs timed per iterative model (the first apart)")
    ps.add_argument("--no-reference", action="store_true", help="skip RecBole's BPR and LightGCN")
    ps.add_argument("--no-floor", action="store_true", help="skip the epoch floors (one more epoch each)")
    ps.add_argument("--out", help="where the synthetic folder is written and kept (default: the cache)")
    _shared_param_arg(ps)
    ps.set_defaults(func=_perf("perf_scale", "run_scale"))

    from .parity import PAIRS

    pa = sub.add_parser("parity", help="ours against RecBole's own BPR and LightGCN on the same splits and seeds")
    pa.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    pa.add_argument("--dataset", default="ml-100k")
    pa.add_argument("--models", default="bpr,lightgcn", help=f"comma-separated, from {sorted(PAIRS)}")
    pa.add_argument("--epochs", type=int, default=None, help="max epochs for both sides (default: 300)")
    pa.add_argument("--learning-rate", type=float, default=None, help="learning rate for both sides (default 1e-3)")
    pa.add_argument("--patience", type=int, default=10)
    pa.add_argument("--metric", default=PRIMARY_METRIC, help="validation metric for early stopping")
    pa.add_argument("--device", default="cpu")
    pa.set_defaults(func=_perf("parity", "run_parity"))

    rp = sub.add_parser(
        "reproduce",
        help="run a published table under its paper's protocol; write "
        "results/reproductions/NAME.md (published vs ours, verdict per cell)",
    )
    rp.add_argument("name", nargs="?", help="table name (see --list) or a path to a table .toml")
    rp.add_argument("--list", action="store_true", help="the tables that can be reproduced and which data is missing")
    rp.add_argument(
        "--seeds", type=int, default=len(DEFAULT_SEEDS), help=f"seeds 0..N-1 (default {len(DEFAULT_SEEDS)})"
    )
    rp.add_argument("--models", help="comma-separated subset of the table's models")
    rp.add_argument("--datasets", help="comma-separated subset of the table's datasets")
    rp.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a hyper-parameter of every model that has it (the report says so)",
    )
    _run_io_args(rp)
    rp.add_argument(
        "--grid",
        action="store_true",
        help="run each model's stated hyper-parameter grid (seed 0) and "
        "keep the best on validation, instead of the table's fixed configuration",
    )
    rp.set_defaults(func=cmd_reproduce)

    _score_parser(sub)
    return p


def _perf(module: str, function: str):
    """A command whose code is imported when it runs (the speed scripts load RecBole, ranx)."""

    def run(args) -> int:
        import importlib

        return getattr(importlib.import_module(f"{__package__}.{module}"), function)(args)

    return run


def _shared_param_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="hyper-parameter for every model that has it (e.g. batch_size=4096)",
    )


def _score_parser(sub) -> argparse.ArgumentParser:
    """`score`'s sub-parser."""
    from .score import CONVENTIONS, FILE_KS, cmd_score

    s = sub.add_parser(
        "score",
        help="score recommendations made elsewhere: a TREC run file against TREC qrels, "
        "or against a dataset's split (writes a run record, family external)",
    )
    s.add_argument("--run", required=True, help="TREC run file: user Q0 item rank score tag (whitespace separated)")
    s.add_argument("--qrels", help="TREC qrels: user 0 item rel (rel > 0 is relevant)")
    s.add_argument(
        "--convention",
        choices=CONVENTIONS,
        default="recbole",
        help="with --qrels: recbole (fusebench's, default) or trec (trec_eval's); see docs/metrics.md",
    )
    s.add_argument("--ks", help=f"with --qrels: cutoffs (default {','.join(map(str, FILE_KS))})")
    s.add_argument("--per-user", metavar="OUT.csv", help="write one row per scored user, a column per metric@k")
    s.add_argument("--dataset", help="score against this dataset's split instead (raw ids; writes a run record)")
    s.add_argument(
        "--protocol",
        help="with --dataset: split protocol (default: the source's split if it has one, "
        "else random 8:1:1); mmrec = the given split with only train items masked",
    )
    s.add_argument("--seed", type=int, help="with --dataset: split seed (default 0)")
    s.add_argument("--name", help="with --dataset: the external system's name on the leaderboard")
    s.add_argument("--rating-threshold", type=float, help="with --dataset: as for run")
    s.add_argument("--data-dir", help="offline mirror folder holding dataset files")
    s.add_argument("--results", default="results", help="with --dataset: results folder (default ./results)")
    s.add_argument("--force", action="store_true", help="with --dataset: rewrite a record that already exists")
    s.set_defaults(func=cmd_score)
    return s


def _run_io_args(p: argparse.ArgumentParser) -> None:
    """Where commands that write run records run, read and write (run, ablate, reproduce)."""
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    p.add_argument("--data-dir", help="offline mirror folder holding dataset files")
    p.add_argument("--results", default="results", help="results folder (default ./results)")
    p.add_argument("--force", action="store_true", help="rerun runs that already have a record")


def _tuning_args(p: argparse.ArgumentParser) -> None:
    from .tuning import DEFAULT_EPOCH_CAP

    p.add_argument(
        "--storage",
        help="Optuna storage URL (default: SQLite results/tuning.db); "
        "postgresql://user:pw@host/db lets workers on several machines share a study",
    )
    p.add_argument("--pruner", default="median", help="median (default), hyperband or none")
    p.add_argument(
        "--epoch-cap",
        type=int,
        default=DEFAULT_EPOCH_CAP,
        help=f"epochs per tuning trial of iterative models (default {DEFAULT_EPOCH_CAP})",
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    try:
        if args.command == "datasets" and args.out is None and len(rest) == 1 and not rest[0].startswith("-"):
            # argparse cannot take the OUT positional after `--format F`; accept it there too
            args.out = rest.pop()
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return args.func(args)
    except EnvironmentFault as e:
        print(f"error: {e}", file=sys.stderr)
        return ENVIRONMENT_FAULT
    except FusebenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`models list | head`): nothing to report
        sys.stderr.close()
        return 0
    except OSError as e:  # the environment's fault (full disk, read-only folder, a file in a folder's place)
        target = e.filename2 or e.filename  # a failed rename names its temporary file first
        where = f"{target}: " if target else ""
        print(
            f"error: {where}{e.strerror or e} (nothing half-written is kept; fix it and run the same command again)",
            file=sys.stderr,
        )
        return ENVIRONMENT_FAULT
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; run the same command again to resume", file=sys.stderr)
        return 130
