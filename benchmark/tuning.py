"""Hyper-parameter tuning on validation only: seeded Optuna TPE, per-epoch pruning, equal budgets.

What the tuner sees is a :class:`TuningData`: the training matrix, the validation matrix and
the item content. It has no test matrix and `tune` accepts nothing else, so no code path in
this module can read a test interaction (`tests/test_tuning.py` checks both that and the
outcome: a model that would be perfect on test but is poor on validation loses tuning).

Every model's space comes from its own ``search_space(trial)``; the objective is the
validation metric of the run configuration (default Recall@20). Iterative models report
every validation to the trial, so the pruner (median by default, or Hyperband) stops bad
trials early; every trial of an iterative model is capped at the same number of epochs.

Budgets are equal for every model: ``Budget(trials=N)`` finishes exactly N trials per
(dataset, model) (completed or pruned; a trial that crashes does not count), or
``Budget(seconds=S)`` keeps starting trials until S seconds of trial time are spent.

Storage and resume. Studies live in an Optuna RDB storage: by default the SQLite file
``results/tuning.db``; ``postgresql://...`` lets several workers on several machines share a
study (each started with the same command). Finished trials are never redone: a rerun loads
the study and only runs what the budget still lacks. A trial whose worker was killed stays
RUNNING in the database; with SQLite the study belongs to one process at a time (a lock file
beside the database), so on start such trials are marked FAIL at once; with a server, workers
send heartbeats and a trial whose heartbeat stopped for ``GRACE_S`` seconds is marked FAIL by
the next worker that looks, which then takes its slot.

Reproducibility. With a trial budget the study is the same whether it ran in one go or was
killed and resumed: trial r (counting only finished and running trials, in creation order)
is sampled by a TPE sampler seeded with ``(seed, r)`` from the history of the trials before
it, and training itself is seeded. Raising the budget extends the same study: the first N
trials of a 2N-trial study are the N-trial study. (Several workers interleave trials in an
order that depends on timing, and a time budget depends on the machine, so neither is
bit-reproducible; both are recorded as such.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import socket
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import optuna
import scipy.sparse as sp
from optuna.trial import TrialState

from baselines import FitData, get_model_class, make_model, model_source
from datasets.errors import FusebenchError

from .evaluate import evaluate
from .protocol import Protocol
from .storage import _exclusive, default_storage, open_storage, storage_kind
from .training import parse_metric, train

# bump when the objective changes in a way that makes old studies incomparable
TUNING_VERSION = 1
SAMPLER_SEED = 0
# the split every model is tuned on (seeds of the final runs are independent of it)
TUNING_SPLIT_SEED = 0
# TPE's random start-up trials (Optuna's default is 10; small budgets would never leave it)
TPE_STARTUP_TRIALS = 4
# per-trial epoch cap of iterative models (equal for all of them); `--epoch-cap` changes it
DEFAULT_EPOCH_CAP = 20
# the default budget of `run --all` per (dataset, model): equal for every model (see README)
DEFAULT_BUDGET = "5"
PRUNERS = ("median", "hyperband", "none")
# how the final configuration is chosen from the trials (part of a tuned run's record key)
SELECTION = "best trial at the epoch cap vs. defaults at full length"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class _Surplus(Exception):
    """Another worker took the last slot of the budget between our check and our trial."""


class _EpochCap(Exception):
    """The trial reached the per-trial epoch cap."""


@dataclass(frozen=True)
class TuningData:
    """What tuning may see: the model's `FitData` (train and item content) and the validation
    matrix. There is no test matrix here."""

    dataset: str
    fingerprint: str
    split: dict[str, Any]  # protocol, params and seed of the split train/valid come from
    fit: FitData
    valid: sp.csr_matrix

    def __post_init__(self):
        if self.train.shape != self.valid.shape:
            raise FusebenchError(f"train {self.train.shape} and valid {self.valid.shape} differ in shape")

    @property
    def train(self) -> sp.csr_matrix:
        return self.fit.train

    def fit_data(self, device: str) -> FitData:
        return replace(self.fit, device=device)


@dataclass(frozen=True)
class Budget:
    """The per-(dataset, model) tuning budget: trials or seconds, plus the per-trial epoch cap."""

    trials: int | None = None
    seconds: float | None = None
    epoch_cap: int = DEFAULT_EPOCH_CAP

    def __post_init__(self):
        if (self.trials is None) == (self.seconds is None):
            raise FusebenchError("a tuning budget is a number of trials or a number of seconds (one of them)")
        if self.trials is not None and self.trials < 1:
            raise FusebenchError(f"the tuning budget must be >= 1 trial, got {self.trials}")
        if self.seconds is not None and not self.seconds > 0:
            raise FusebenchError(f"the tuning budget must be > 0 seconds, got {self.seconds}")
        if self.epoch_cap < 1:
            raise FusebenchError(f"the per-trial epoch cap must be >= 1, got {self.epoch_cap}")

    @classmethod
    def parse(cls, text: str | int, epoch_cap: int = DEFAULT_EPOCH_CAP) -> "Budget":
        """'8' -> 8 trials; '300s' -> 300 seconds of trial time."""
        s = str(text).strip().lower()
        m = re.fullmatch(r"(\d+(?:\.\d*)?)\s*(s|sec|seconds?)", s)
        if m:
            return cls(seconds=float(m.group(1)), epoch_cap=epoch_cap)
        if s.isdigit():
            return cls(trials=int(s), epoch_cap=epoch_cap)
        raise FusebenchError(f"--budget expects a number of trials (8) or seconds (300s), got {text!r}")

    def describe(self) -> str:
        return f"{self.trials} trials" if self.trials is not None else f"{self.seconds:g} s"


@dataclass(frozen=True)
class TuningPlan:
    """How every model of a run is tuned: the budget (None: not tuned), the pruner, where the
    studies live (None: the SQLite file results/tuning.db; a server storage also shares the
    seed runs, `benchmark.shared_runs`) and the TPE sampler's seed. Passed whole."""

    budget: Budget | None = None
    pruner: str = "median"
    storage: str | None = None
    sampler_seed: int = SAMPLER_SEED

    def __post_init__(self):
        if self.pruner not in PRUNERS:
            raise FusebenchError(f"unknown pruner {self.pruner!r}; available: {', '.join(PRUNERS)}")

    def url(self, results: str | Path) -> str:
        """The storage URL the studies are in."""
        return self.storage or default_storage(results)


@dataclass
class TuningResult:
    study: str
    storage: str  # the storage's kind: sqlite, postgresql, ...
    budget: Budget
    metric: str
    trials: int  # finished trials (completed + pruned) in the study
    complete: int
    pruned: int
    new_trials: int  # of which this call ran
    best_params: dict[str, Any]
    best_valid: float | None
    seconds: float  # trial time spent in the study (all workers)
    sampler: str
    pruner: str
    split_seed: int
    note: str = ""
    # iterative models whose best trial is not the defaults: both trained to convergence on
    # validation ({"defaults": v, "best": v, "chosen": ...}); see _full_length_choice
    full_length: dict[str, Any] | None = None
    # the chosen configuration as the full-length check trained it in this call (never stored)
    trained: "Trained | None" = field(default=None, repr=False, compare=False)

    def options(self) -> str:
        b = self.budget
        out = f"--budget {b.trials}" if b.trials is not None else f"--budget {b.seconds:g}s"
        if b.epoch_cap != DEFAULT_EPOCH_CAP:
            out += f" --epoch-cap {b.epoch_cap}"
        if self.pruner != "median":
            out += f" --pruner {self.pruner}"
        return out

    def as_record(self) -> dict[str, Any]:
        """What a run record stores under "tuning" (no storage URL, so no password)."""
        return {
            "trials": self.trials,
            "complete": self.complete,
            "pruned": self.pruned,
            "budget": self.budget.describe(),
            "timeout": self.budget.seconds,
            "epoch_cap": self.budget.epoch_cap,
            "metric": self.metric,
            "best_params": self.best_params,
            "best_valid": self.best_valid,
            "seconds": round(self.seconds, 3),
            "study": self.study,
            "storage": self.storage,
            "sampler": self.sampler,
            "pruner": self.pruner,
            "split_seed": self.split_seed,
            "selection": SELECTION,
            **({"full_length": self.full_length} if self.full_length else {}),
            # the `run` options that reproduce this tuning (for the leaderboard's command line)
            "options": self.options(),
            **({"note": self.note} if self.note else {}),
        }


# --- storage ------------------------------------------------------------------------------
class _UserStopFilter(logging.Filter):
    """Drops Optuna's traceback of a trial stopped by Ctrl-C or a user error (and the "failed
    with value None" line after it): the CLI says those in one line of its own."""

    def __init__(self):
        super().__init__()
        self._after_stop = False

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (KeyboardInterrupt, FusebenchError)):
            self._after_stop = True
            return False
        if self._after_stop and "failed with value None" in record.getMessage():
            self._after_stop = False
            return False
        self._after_stop = False
        return True


def _quiet_user_stops() -> None:
    # on Optuna's handlers: a logger's own filters do not see its children's records
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _UserStopFilter) for f in handler.filters):
            handler.addFilter(_UserStopFilter())


# --- the study ----------------------------------------------------------------------------


def study_name(
    data: TuningData, model_name: str, cfg: Protocol, budget: Budget, fixed: dict[str, Any], pruner: str, seed: int
) -> str:
    """Readable prefix + a digest of everything that changes the objective or the sampler.

    The budget's size is not part of it: a larger budget extends the same study."""
    ident = {
        "version": TUNING_VERSION,
        "dataset": data.fingerprint,
        "split": data.split,
        "model": model_name,
        "fixed": fixed,
        "training": cfg.identity(),
        "epochs": cfg.epochs,
        "epoch_cap": budget.epoch_cap,
        "pruner": pruner,
        "sampler_seed": seed,
        "startup": TPE_STARTUP_TRIALS,
    }
    src = model_source(model_name)
    if src is not None:  # another version of a user's model file is another study
        ident["source"] = src["sha256"]
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{data.dataset}/{model_name}/{digest}"


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=3, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise FusebenchError(f"unknown pruner {name!r}; available: {', '.join(PRUNERS)}")


def _sampler(seed: int, rank: int) -> optuna.samplers.TPESampler:
    return optuna.samplers.TPESampler(seed=seed * 1_000_003 + rank, n_startup_trials=TPE_STARTUP_TRIALS)


def _duration(t) -> float:
    if t.datetime_start is None or t.datetime_complete is None:
        return 0.0
    return (t.datetime_complete - t.datetime_start).total_seconds()


def tune(
    data: TuningData,
    model_name: str,
    plan: TuningPlan | Budget,
    cfg: Protocol | None = None,
    *,
    results: str | Path = "results",
    study: str | None = None,
    fixed_params: dict[str, Any] | None = None,
    poll_s: float = 2.0,
    progress: Callable[[str], None] | None = None,
) -> TuningResult:
    """Tune `model_name` on `data.valid` within `plan.budget` (a bare `Budget`: the default
    plan with that budget); resumes the study if it exists.

    `fixed_params` are held fixed (they override what the space samples). Returns the best
    finished configuration (the model's defaults when nothing is tunable or nothing finished).
    """
    if not isinstance(data, TuningData):
        raise TypeError(f"tune() takes TuningData (train and valid only), not {type(data).__name__}")
    plan = plan if isinstance(plan, TuningPlan) else TuningPlan(plan)
    if plan.budget is None:
        raise FusebenchError("tune() needs a tuning plan with a budget")
    budget, pruner, seed = plan.budget, plan.pruner, plan.sampler_seed
    cfg = cfg or Protocol()
    metric_name, metric_k = parse_metric(cfg.metric)
    cls = get_model_class(model_name)
    fixed = dict(fixed_params or {})
    make_model(model_name, fixed)  # unknown or invalid fixed parameters: a user error, now
    url = plan.url(results)
    kind = storage_kind(url)
    name = study or study_name(data, model_name, cfg, budget, fixed, pruner, seed)
    base = dict(
        study=name,
        storage=kind,
        budget=budget,
        metric=cfg.metric,
        sampler=f"TPE(seed={seed})",
        pruner=pruner,
        split_seed=int(data.split.get("seed", 0)),
    )

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _quiet_user_stops()
    if not cls.search_space(_Probe()):
        return TuningResult(
            **base,
            trials=0,
            complete=0,
            pruned=0,
            new_trials=0,
            best_params={},
            best_valid=None,
            seconds=0.0,
            note="no hyper-parameters to tune",
        )

    rdb = open_storage(url)
    with _exclusive(url, name):
        st = optuna.create_study(
            study_name=name,
            storage=rdb,
            direction="maximize",
            load_if_exists=True,
            sampler=_sampler(seed, 0),
            pruner=make_pruner(pruner),
        )
        if kind == "sqlite":
            # we hold the study's lock: a RUNNING trial is one whose process died
            for t in st.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                rdb.set_trial_system_attr(t._trial_id, "fusebench:failed", "worker died (found RUNNING)")
                rdb.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        objective = _objective(st, data, model_name, fixed, cfg, budget, seed, (metric_name, metric_k))
        new = 0
        while True:
            trials = st.get_trials(deepcopy=False)
            finished = [t for t in trials if t.state in FINISHED]
            running = [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
            if budget.trials is not None:
                if len(finished) >= budget.trials:
                    break
                if len(finished) + len(running) >= budget.trials:
                    # the other slots are taken by other workers: wait for them; a dead worker's
                    # trial fails after the grace period and its slot comes back
                    time.sleep(poll_s)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                        optuna.storages.fail_stale_trials(st)
                    continue
            elif sum(_duration(t) for t in finished) >= budget.seconds:
                break
            if progress is not None:
                progress(f"trial {len(finished) + 1}" + (f"/{budget.trials}" if budget.trials else ""))
            st.optimize(objective, n_trials=1, catch=(_Surplus,), gc_after_trial=False)
            new += 1
        trials = st.get_trials(deepcopy=False, states=FINISHED)
        complete = [
            t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
        ]
        seconds = sum(_duration(t) for t in trials)
        common = dict(
            trials=len(trials),
            complete=len(complete),
            pruned=len(trials) - len(complete),
            new_trials=new,
            seconds=seconds,
        )
        if not complete:
            return TuningResult(
                **base,
                **common,
                best_params={},
                best_valid=None,
                note="no trial completed: the model's defaults are used",
            )
        # the best completed trial; ties go to the earlier trial (as Optuna does)
        best = max(complete, key=lambda t: (t.value, -t.number))
        chosen, full, trained = _full_length_choice(st, data, model_name, cfg, trials, best, progress)
    return TuningResult(
        **base,
        **common,
        best_params=dict(chosen.user_attrs["params"]),
        best_valid=float(chosen.value),
        full_length=full,
        trained=trained,
    )


def _full_length_choice(st, data: TuningData, model_name: str, cfg: Protocol, trials, best, progress):
    """Trials of iterative models stop at the epoch cap, which favours configurations that
    learn fast; the seeds then train to convergence, where the defaults may do better. So when
    the best trial is not the defaults (trial rank 0), both are trained to convergence (early
    stopping, as the seed runs do) on the same train/valid, and the higher validation value
    wins. Validation only; the values are kept in the study, so a resumed run does not retrain.
    Returns (chosen trial, {"defaults": v, "best": v, "chosen": "defaults"|"best"} or None,
    the chosen configuration trained here as a `Trained`, or None when it was not trained now)."""
    defaults = next((t for t in trials if t.user_attrs.get("defaults")), None)
    if defaults is None or defaults.number == best.number or not get_model_class(model_name).iterative:
        return best, None, None
    values, trained = {}, {}
    for role, t in (("defaults", defaults), ("best", best)):
        attr = f"full_length:{t.number}"
        if attr not in st.user_attrs:
            if progress is not None:
                progress(f"full-length validation of the {role}")
            model = _model(model_name, t.user_attrs["params"], cfg)
            try:
                out = train(model, data.fit_data(cfg.device), data.valid, **cfg.stopping())
                value = out.best_valid if out.best_valid is not None and math.isfinite(out.best_valid) else -math.inf
                if math.isfinite(value):
                    trained[role] = Trained(model, out, int(data.split.get("seed", 0)))
            except FloatingPointError:  # diverged past the cap: never chosen
                value = -math.inf
            st.set_user_attr(attr, value)
        values[role] = float(st.user_attrs[attr])
    chosen = "defaults" if values["defaults"] > values["best"] else "best"  # a tie keeps the best trial
    return (defaults if chosen == "defaults" else best), {**values, "chosen": chosen}, trained.get(chosen)


@dataclass
class Trained:
    """A configuration the full-length check trained to convergence on the tuning split: the
    very training the seed run on that split would repeat (same matrices, seed, protocol), so
    that run takes it instead of training again (`seed_run.run_one(trained=...)`)."""

    model: Any
    outcome: Any  # training.TrainOutcome
    split_seed: int


def _model(model_name: str, params: dict[str, Any], cfg: Protocol):
    return make_model(model_name, cfg.model_params(model_name, params))


class _Probe:
    """A stand-in trial that answers every suggestion with its first choice or lower bound
    (to learn which parameters a space covers without touching a study)."""

    def suggest_categorical(self, name, choices):
        return choices[0]

    def suggest_float(self, name, low, high, **kw):
        return low

    def suggest_int(self, name, low, high, **kw):
        return low

    def suggest_uniform(self, name, low, high):
        return low

    def suggest_loguniform(self, name, low, high):
        return low

    def suggest_discrete_uniform(self, name, low, high, q):
        return low


def _objective(
    study,
    data: TuningData,
    model_name: str,
    fixed: dict,
    cfg: Protocol,
    budget: Budget,
    seed: int,
    metric: tuple[str, int],
):
    cls = get_model_class(model_name)
    fit_data = data.fit_data(cfg.device)
    metric_name, k = metric
    worker = f"{socket.gethostname()}:{os.getpid()}"

    def objective(trial: optuna.Trial) -> float:
        # rank = this trial's slot among the live and finished trials, in creation order
        # (creation is serialised by the storage, so ranks are unique across workers)
        earlier = study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING, TrialState.WAITING))
        rank = sum(1 for t in earlier if t.number < trial.number)
        if budget.trials is not None and rank >= budget.trials:
            trial.set_user_attr("surplus", True)
            raise _Surplus(f"trial {trial.number} is over the budget of {budget.trials}")
        # sampled parameters depend only on (seed, rank) and the history: a resumed study
        # draws what the uninterrupted one would have drawn
        study.sampler = _sampler(seed, rank)
        trial.set_user_attr("worker", worker)
        trial.set_user_attr("rank", rank)
        if rank == 0:
            # the first trial of every study is the model's default configuration (nothing is
            # sampled: the sampler learns only from the sampled trials), so tuning can only
            # improve on the defaults on validation, whatever the budget
            params = {**{k: v for k, v in cls.defaults().items() if k in cls.search_space(_Probe())}, **fixed}
            trial.set_user_attr("defaults", True)
        else:
            params = {**cls.search_space(trial), **fixed}
        trial.set_user_attr("params", params)
        model = _model(model_name, params, cfg)  # the epoch cap below still applies
        best = {"value": -math.inf, "epoch": None}

        def on_eval(epoch: int, value: float) -> None:
            if value > best["value"]:
                best.update(value=value, epoch=epoch)
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")
            if epoch >= budget.epoch_cap:
                raise _EpochCap

        try:
            train(model, fit_data, data.valid, **cfg.stopping(), on_eval=on_eval)
        except _EpochCap:
            pass
        except FloatingPointError as e:  # a diverging configuration: finished, never best
            trial.set_user_attr("diverged", str(e))
            raise optuna.TrialPruned(str(e)) from None
        if model.iterative:
            value = best["value"]
            trial.set_user_attr("best_epoch", best["epoch"])
        else:
            res = evaluate(model.score, data.valid, data.train, metrics=(metric_name,), ks=(k,))
            value = float(res.summary[cfg.metric])
        if not math.isfinite(value):
            raise optuna.TrialPruned(f"validation {cfg.metric} is {value}")
        return value

    return objective


def study_summary(url: str, name: str) -> dict[str, Any]:
    """Counts by state and trial numbers of a stored study (for tests and `tune`'s report)."""
    st = optuna.load_study(study_name=name, storage=url)
    trials = st.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return {
        "counts": counts,
        "numbers": [t.number for t in trials],
        "workers": [t.user_attrs.get("worker") for t in trials if t.state in FINISHED],
    }
