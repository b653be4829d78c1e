"""The pipeline behind `run`: tune on validation, retrain the best configuration on N seeds,
evaluate each once on test, write the records.

Resumable at every step: tuning continues its stored study (finished trials are not redone),
and a seed run whose record exists is skipped (its key holds the tuned parameters and the
tuning budget, so the same budget finds the same records and a new budget makes new ones).
Tuning only ever receives `tuning_data(dataset, split)`: train and valid, never test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from baselines import FitData, get_model_class, reads_content
from datasets import MultimodalDataset, Split

from .protocol import Protocol
from .records import RecordStore
from .seed_run import RunOutcome, run_one
from .shared_runs import open_shared
from .tuning import TUNING_SPLIT_SEED, TuningData, TuningPlan, TuningResult, tune


def tuning_data(dataset: MultimodalDataset, split: Split) -> TuningData:
    """The tuner's view of a split: train and valid (and item content); the test matrix stays here."""
    return TuningData(
        dataset=dataset.name,
        fingerprint=dataset.fingerprint(),
        split={"protocol": split.protocol, "params": dict(split.params), "seed": split.seed},
        fit=FitData.from_split(dataset, split),
        valid=split.valid,
    )


@dataclass(frozen=True)
class Plan:
    """How `run` treats every (dataset, model) besides the protocol: how it is tuned, where
    the records go, whether existing ones are redone, and the placebo controls."""

    tuning: TuningPlan = TuningPlan()  # its budget None: no tuning
    results: str | Path = "results"
    force: bool = False
    # placebo controls (datasets.placebo) run after the real seeds of every model that reads
    # item content: the same configuration and seeds on placebo content, no tuning of their own
    placebos: tuple[str, ...] = ()


def run_model(
    store: RecordStore,
    dataset: MultimodalDataset,
    model: str,
    params: dict[str, Any],
    cfg: Protocol,
    plan: Plan,
    get_split: Callable[[int], Split],
    *,
    on_tuned: Callable[[TuningResult], None] | None = None,
    on_run: Callable[[int, RunOutcome], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[TuningResult | None, list[RunOutcome]]:
    """Tune `model` on `dataset` (split seed TUNING_SPLIT_SEED) with `params` held fixed, then
    run the chosen configuration once per seed of `cfg`, then once per seed and placebo control
    (`plan.placebos`) if the model reads item content. Returns the tuning result and the
    outcomes (real runs first)."""
    result, tuning, final = None, None, dict(params)
    if plan.tuning.budget is not None:
        result = tune(
            tuning_data(dataset, get_split(TUNING_SPLIT_SEED)),
            model,
            plan.tuning,
            cfg,
            results=plan.results,
            fixed_params=params,
            progress=progress,
        )
        if on_tuned is not None:
            on_tuned(result)
        if result.trials > 0:  # nothing tunable: a plain run, shared with --no-tune
            final = {**result.best_params, **params}
            tuning = result.as_record()
    shared = open_shared(plan.tuning.storage)  # a server storage shares the seed runs (benchmark.shared_runs)
    outcomes = []
    first: tuple[Split, RunOutcome] | None = None  # the first seed's split and run
    for seed in cfg.seeds:
        split = get_split(seed)
        # a model whose fit ignores the seed, on a split that does not change with it (a given
        # split), gives every seed the first seed's results: taken, not retrained (seed_run.reseeded)
        same_as = first[1] if first is not None and first[0].same_interactions(split) else None
        # the full-length check already trained the chosen configuration on the tuning split:
        # the seed run on that split takes it (the same training, so the same record)
        trained = (
            result.trained
            if result is not None and result.trained is not None and result.trained.split_seed == seed
            else None
        )
        out = run_one(
            store,
            dataset,
            split,
            model,
            final,
            cfg,
            force=plan.force,
            tuning=tuning,
            trained=trained,
            same_as=same_as,
            shared=shared,
        )
        if first is None:
            first = (split, out)
        outcomes.append(out)
        if on_run is not None:
            on_run(seed, out)
    for kind in plan.placebos if reads_content(get_model_class(model)) else ():
        for seed in cfg.seeds:
            out = run_one(
                store,
                dataset,
                get_split(seed),
                model,
                final,
                cfg,
                force=plan.force,
                tuning=tuning,
                placebo=kind,
                shared=shared,
            )
            outcomes.append(out)
            if on_run is not None:
                on_run(seed, out)
    return result, outcomes
