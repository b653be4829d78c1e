"""fusebench from Python (a notebook): the same pipeline as `python -m benchmark run`, returning
pandas DataFrames.

    from benchmark import api
    runs = api.run(datasets=["ml-100k"], models=["pop", "ease", MyModel], budget=None, seeds=1)
    tables = api.leaderboard("results")          # {dataset: DataFrame}, one row per model

`run` builds the command line's options and runs the command's own code (`cli.execute_run`),
so every check, default, record and resume rule is the CLI's; it differs only in taking model
classes as well as names and in returning the runs instead of printing them.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from baselines.base import Recommender, builtin_model, get_model_class, register_external
from baselines.external import check_identity, source_of
from datasets.errors import FusebenchError

from .options import UsageError

_DEFAULT = object()


def _model_spec(model: str | type[Recommender]) -> tuple[str, bool]:
    """(the name or spec the CLI takes, whether worker processes can import it)."""
    if isinstance(model, str):
        return model, True
    if not (inspect.isclass(model) and issubclass(model, Recommender)):
        raise UsageError(f"models: {model!r} is neither a model name nor a Recommender subclass")
    if builtin_model(model.name) and get_model_class(model.name) is model:
        return model.name, True
    module = sys.modules.get(model.__module__)
    file = getattr(module, "__file__", None)
    if model.__module__.startswith("fusebench_external."):  # loaded from a file spec earlier
        return f"{file}:{model.__qualname__}", True
    if file and model.__module__ != "__main__":
        return f"{model.__module__}:{model.__qualname__}", True  # an importable module: workers import it too
    # defined in a notebook or a script's __main__: registered here, run in this process only;
    # defining the class again (an edited cell) replaces it, and its hash follows the code
    spec = f"{model.__module__}:{model.__qualname__}"
    check_identity(model, spec)
    path, sha = source_of(model)
    register_external(
        model, {"spec": spec, "path": path, "sha256": sha, "session": True, "canonical": f"<session>:{spec}"}
    )
    return model.name, False


def _argv(options: dict[str, Any]) -> list[str]:
    argv = []
    for flag, value in options.items():
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            for v in value:
                argv += [flag, str(v)]
        else:
            argv += [flag, str(value)]
    return argv


def run(
    datasets: Sequence[str] | None = None,
    models: Sequence[str | type[Recommender]] | None = None,
    *,
    budget: int | str | None = _DEFAULT,
    seeds: int = 3,
    results: str | Path = "results",
    params: dict[str, Any] | None = None,
    protocol: str | None = None,
    epochs: int | None = None,
    jobs: int | str = "auto",
    device: str = "auto",
    data_dir: str | None = None,
    force: bool = False,
    storage: str | None = None,
    placebo: Sequence[str] = (),
) -> pd.DataFrame:
    """Run `models` (names, specs or Recommender classes; default: every registered model) on
    `datasets` (default: the CLI's), like `run --all`: tuned with `budget` (the CLI's default
    when not given; None: no tuning, the defaults or `params`), then `seeds` seed runs each.
    Returns one row per run: dataset, model, seed, status (done / skipped: already recorded /
    failed), family, placebo (None for real runs; `placebo=("shuffle", "noise")` adds those
    controls of every content model, as `--placebo`), test metrics, train seconds, parameters
    and the record's path."""
    from .cli import build_parser, execute_run

    if models is not None and not len(models):
        raise UsageError("models is empty: give names or classes, or leave it out for every model")
    if datasets is not None and not len(datasets):
        raise UsageError("datasets is empty: give names, or leave it out for the default datasets")
    names, importable = [], True
    for m in models or []:
        spec, ok = _model_spec(m)
        names.append(spec)
        importable &= ok
    if not importable:
        jobs = 1  # a class defined in this session cannot be imported by a worker process
    options = {
        "--seeds": seeds,
        "--results": str(results),
        "--protocol": protocol,
        "--epochs": epochs,
        "--jobs": jobs,
        "--device": device,
        "--data-dir": data_dir,
        "--force": force,
        "--storage": storage,
        "--placebo": ",".join(placebo) or None,
    }
    if params:  # parameters go with one model on one dataset (`run --dataset D --model M --param ...`)
        if len(names) != 1 or not datasets or len(datasets) != 1:
            raise UsageError("params applies to one model on one dataset: pass models=[M], datasets=[D]")
        head = ["run", "--dataset", datasets[0], "--model", names[0]]
        options["--param"] = [f"{k}={_json(v)}" for k, v in params.items()]
        budget = None if budget is _DEFAULT else budget  # as on the CLI: a single run tunes when asked
    else:
        head = ["run", "--all"]
        options.update(
            {"--datasets": ",".join(datasets) if datasets else None, "--models": ",".join(names) if names else None}
        )
    if budget is None:
        options["--no-tune"] = not params
    elif budget is not _DEFAULT:
        options["--budget"] = budget
    outcomes, _ = execute_run(build_parser().parse_args([*head, *_argv(options)]))
    rows = []
    for job, seed, out in outcomes:
        rec = out.record
        rows.append(
            {
                "dataset": job.name,
                "model": job.model,
                "seed": seed,
                "status": out.status,
                "family": rec["model"]["family"],
                "placebo": rec.get("placebo"),
                **rec.get("test", {}),
                "train_seconds": rec.get("train_seconds"),
                "params": rec["model"]["params"],
                "record": out.path,
            }
        )
    if not rows:
        return pd.DataFrame(
            columns=["dataset", "model", "seed", "status", "family", "placebo", "train_seconds", "params", "record"]
        )
    # workers finish in any order: the frame is sorted, the same for every --jobs (real runs first)
    frame = pd.DataFrame(rows)
    order = frame["placebo"].map(lambda p: "" if p is None else p)
    return (
        frame.assign(_placebo=order)
        .sort_values(["dataset", "model", "_placebo", "seed"], kind="stable", ignore_index=True)
        .drop(columns="_placebo")
    )


def _json(value: Any) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value)


def leaderboard(results: str | Path = "results") -> dict[str, pd.DataFrame]:
    """The leaderboard's tables from the records in `results`, built by the leaderboard's own
    code (`leaderboard_data`: the numbers LEADERBOARD.json holds): {table title: DataFrame}, one
    row per model, indexed by the row's label, with mean and sample std over seeds of each test
    metric (`recall@20`, `recall@20_std`, ...), whether it is the reference, the difference to
    the reference on Recall@20 and its Holm-corrected p-value, whether a seed stopped at the
    epoch bound, and seconds of training."""
    from .metrics import PRIMARY_METRIC
    from .records import RecordStore
    from .tables import build_tables, leaderboard_data

    if not Path(results).is_dir():
        raise FusebenchError(f"results folder {results} does not exist")
    records = [r for r in RecordStore(results).records() if not r.get("failed")]
    out = {}
    for table in leaderboard_data(build_tables(records))["datasets"].values():
        rows = []
        for label, m in table["models"].items():
            line = {"model": label, "name": m["name"], "family": m["family"]}
            line["seeds"] = max((v["seeds"] for v in m["test"].values()), default=0)
            for metric, v in m["test"].items():
                line[metric] = _nan(v["mean"])
                line[f"{metric}_std"] = _nan(v["std"])
            versus = (m["vs_reference"] or {}).get(PRIMARY_METRIC) or {}
            line.update(
                reference=m["reference"],
                delta_vs_reference=_nan(versus.get("delta")),
                p_holm=_nan(versus.get("p_holm")),
                stopped_by_cap=m["stopped_by_cap"],
                train_seconds=_nan(m["train_seconds"]),
            )
            rows.append(line)
        out[table["title"]] = pd.DataFrame(rows).set_index("model")
    return out


def _nan(x) -> float:
    return float("nan") if x is None else x
