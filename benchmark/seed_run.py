"""One run = (dataset, split, model, params, seed): train, select on valid, test once, record."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from baselines import FitData, get_model_class, make_model, model_source, reads_content
from datasets import MultimodalDataset, Split
from datasets.errors import FusebenchError
from datasets.placebo import check_placebo

from .evaluate import evaluate
from .protocol import Protocol
from .provenance import provenance
from .records import RECORD_VERSION, RecordStore, RunRecord, record_key
from .segments import item_groups, stored_arrays
from .training import train

# the parts of a run's `tuning` description that define the run (its record key): the same
# budget tuned the same way is the same run (skipped on resume); another budget is another run.
# The outcome (best parameters) is in the key through the model's parameters anyway.
TUNING_IDENTITY = ("budget", "epoch_cap", "metric", "sampler", "pruner", "split_seed", "selection")


@dataclass
class RunOutcome:
    """What became of one run: "done", "skipped" (its record existed) or "failed" (diverged);
    always with its record and the record's path."""

    status: str
    key: str
    record: dict[str, Any]
    path: str
    extra: dict[str, Any] = field(default_factory=dict)

    def located(self) -> RunRecord:
        """The record with its path, as `RecordStore.records()` yields records."""
        return RunRecord(self.record, self.path)


def data_identity(dataset: MultimodalDataset, split: Split) -> dict:
    """The part of a record's key that names its data and split (shared with `benchmark.score`)."""
    return {
        "version": RECORD_VERSION,
        "dataset": {
            "name": dataset.name,
            "fingerprint": dataset.fingerprint(),
            "rating_threshold": dataset.meta.get("rating_threshold"),
        },
        "split": {"protocol": split.protocol, "params": split.params, "seed": split.seed},
        "seed": split.seed,
    }


def run_identity(dataset: MultimodalDataset, split: Split, model_name: str, params: dict, cfg: Protocol) -> dict:
    return {
        **data_identity(dataset, split),
        "model": {"name": model_name, "params": params, **_source_identity(model_name)},
        "training": cfg.identity(),
    }


def _source_identity(model_name: str) -> dict:
    """A model from outside the package is keyed by its code's hash too: an edited file makes
    new records rather than resuming the old code's (built-in models' keys are unchanged)."""
    src = model_source(model_name)
    return {} if src is None else {"source": {"sha256": src["sha256"]}}


def run_one(
    store: RecordStore,
    dataset: MultimodalDataset,
    split: Split,
    model_name: str,
    params: dict[str, Any] | None = None,
    cfg: Protocol | None = None,
    *,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
    tuning: dict[str, Any] | None = None,
    trained: Any = None,
    placebo: str | None = None,
    same_as: RunOutcome | None = None,
    shared: Any = None,
) -> RunOutcome:
    """Train (params = a fixed configuration), select the epoch on valid, test once, record.

    `tuning` (`benchmark.tuning.TuningResult.as_record()`), when the params came out of
    tuning, is stored as the record's "tuning"; its TUNING_IDENTITY fields join the key.
    `trained` (`benchmark.tuning.Trained`): this configuration already trained on this split
    under this protocol by tuning's full-length check; it is used instead of training again
    when its parameters, split seed and protocol are this run's. `placebo` ("shuffle" or
    "noise", `datasets.placebo`): the same run on placebo item content, a control of the real
    run; its record carries `"placebo"` at the top level and in its key (null for real runs,
    whose keys are unchanged). `same_as`: the finished run of this configuration under another
    seed on a split with the same interactions, for a model whose fit does not use the seed
    (`Recommender.uses_seed`): its results are this run's, so they are taken instead of
    training again (`reseeded`; the record names the run it was taken from). `shared`
    (`benchmark.shared_runs.SharedRuns`): the campaign's runs in a server database; the run is
    claimed there first and stored there when done, and one another machine holds comes back
    with status "elsewhere" (no results; its record holds the run's identity only)."""
    cfg = cfg or Protocol()
    if check_placebo(placebo) is not None and not reads_content(get_model_class(model_name)):
        raise FusebenchError(f"{model_name} reads no item content: a placebo control does not apply to it")
    if split.test.nnz == 0:  # every metric would be NaN: nothing to record
        raise FusebenchError(
            f"dataset {dataset.name!r}: its {split.protocol} split (seed {split.seed}) has no test "
            "interactions, so there is nothing to evaluate"
        )
    params = cfg.model_params(model_name, params)
    model = make_model(model_name, params)  # validates names before anything is written
    resolved = model.get_params()
    identity = run_identity(dataset, split, model_name, resolved, cfg)
    if tuning is not None:
        identity["tuning"] = {k: tuning.get(k) for k in TUNING_IDENTITY}
    if placebo is not None:
        identity["placebo"] = placebo
    key = record_key(identity)
    held = None if force else store.finished(dataset.name, model_name, key)
    if held is not None:
        if shared is not None and shared.finished(key) is None:
            shared.put(held, held.per_user())  # finished here before the campaign was shared
        return RunOutcome(status="skipped", key=key, record=held, path=held.path)

    def _record_run() -> RunOutcome:
        fitted = model  # the model the record describes (the full-length check's, when taken)
        if (
            same_as is not None
            and same_as.status in ("done", "skipped")
            and placebo is None
            and same_as.record["model"]["params"] == resolved
            and not model.uses_seed()
        ):
            record = reseeded(same_as.record, identity, key, dataset, split, cfg.device)
            path = store.write(record, same_as.located().per_user())
            return RunOutcome(status="done", key=key, record=record, path=str(path))

        data = FitData.from_split(dataset, split, cfg.device).placebo(placebo)
        if (
            placebo is None
            and trained is not None
            and trained.split_seed == split.seed
            and trained.model.get_params() == resolved
            and type(trained.model) is type(model)
        ):
            fitted, outcome = trained.model, trained.outcome
        else:
            try:
                outcome = train(fitted, data, split.valid, **cfg.stopping(), progress=progress)
            except FloatingPointError as exc:
                # a diverging configuration is a result of this seed, not a crash of the campaign:
                # recorded as failed (and, being seeded, not retried on resume; --force retries)
                record = {
                    **_describe(identity, key, dataset, split, fitted, model_name, cfg, None),
                    "failed": str(exc),
                    "valid": {},
                    "test": {},
                    "n_test_users": 0,
                }
                if tuning is not None:
                    record["tuning"] = dict(tuning)
                path = store.write(record, {})
                return RunOutcome(status="failed", key=key, record=record, path=str(path))
        popularity = np.asarray(split.train.sum(axis=0)).ravel()
        valid = evaluate(
            fitted.score,
            split.valid,
            split.train,
            metrics=cfg.metrics,
            ks=cfg.ks,
            batch_size=cfg.eval_batch_size,
            item_popularity=popularity,
        )
        # test time masks train and valid items (neither can be a test hit), unless the protocol
        # reproduces MMRec, which masks train items only
        test_exclude = split.train + split.valid if cfg.mask_valid_at_test else split.train
        test = evaluate(
            fitted.score,
            split.test,
            test_exclude,
            metrics=cfg.metrics,
            ks=cfg.ks,
            batch_size=cfg.eval_batch_size,
            item_popularity=popularity,
            item_groups=item_groups(popularity),  # head and tail items (benchmark.segments)
        )

        record = {
            **_describe(identity, key, dataset, split, fitted, model_name, cfg, outcome),
            "valid": valid.summary,
            "test": test.summary,
            "n_test_users": test.n_users_evaluated,
            "train_seconds": outcome.train_seconds,
            "eval_seconds": test.seconds,
        }
        if tuning is not None:
            record["tuning"] = dict(tuning)
        path = store.write(record, stored_arrays(test.per_user, split))
        return RunOutcome(status="done", key=key, record=record, path=str(path))

    if shared is None:
        return _record_run()
    # a server storage: the run is claimed before it trains (benchmark.shared_runs)
    done_elsewhere = None if force else shared.finished(key)
    holder = None if done_elsewhere is not None else shared.claim(key, dataset.name, model_name, force=force)
    if holder is not None and not force:
        done_elsewhere = shared.finished(key)  # finished between the two questions
    if done_elsewhere is not None:
        path = store.write(*done_elsewhere)
        return RunOutcome(status="skipped", key=key, record=done_elsewhere[0], path=str(path))
    if holder is not None:
        claimed = {"key": key, "seed": split.seed, "placebo": placebo, "test": {}}
        claimed["model"] = {"name": model_name, "family": type(model).family, "params": resolved}
        return RunOutcome(status="elsewhere", key=key, record=claimed, path="", extra={"worker": holder})
    with shared.holding(key):
        out = _record_run()
        shared.put(out.record, out.located().per_user())
    return out


def reseeded(
    source: dict[str, Any], identity: dict, key: str, dataset: MultimodalDataset, split: Split, device: str
) -> dict[str, Any]:
    """The record of `source`'s run under this run's seed: the same training and results (the
    fit does not read the seed and the split has the same interactions), this run's identity,
    key and provenance, and `same_as` naming the record whose results these are."""
    record = dict(source)
    data = describe_data(identity, key, dataset, split, device)
    return {
        **record,
        **{k: data[k] for k in ("dataset", "split", "seed", "key", "provenance")},
        "same_as": source["key"],
    }


def _describe(
    identity: dict, key: str, dataset: MultimodalDataset, split: Split, model, model_name: str, cfg: Protocol, outcome
) -> dict[str, Any]:
    """What a record says about its run besides the results: data, split, model, training, provenance."""
    cls = type(model)
    return {
        **describe_data(identity, key, dataset, split, cfg.device),
        "placebo": identity.get("placebo"),
        "model": {
            "name": model_name,
            "family": cls.family,
            "params": identity["model"]["params"],
            "defaults": cls.defaults(),
            "modalities": model.used_modalities(),
            "n_parameters": model.n_parameters(),
            # where a model from outside the package comes from (spec, file, SHA-256)
            **({"source": source} if (source := model_source(model_name)) else {}),
        },
        "training": {
            **cfg.identity(),
            "protocol": cfg.name,
            "mask_valid_at_test": cfg.mask_valid_at_test,
            # the protocol's epoch bound and the parameter that carries it
            **({"max_epochs": cfg.epochs, "epochs_param": cls.epochs_param} if cls.iterative else {}),
            **(asdict(outcome) if outcome is not None else {}),
        },
    }


def describe_data(identity: dict, key: str, dataset: MultimodalDataset, split: Split, device: str) -> dict[str, Any]:
    """The part of a record that describes its data, split and provenance (shared with `benchmark.score`)."""
    return {
        **identity,
        "key": key,
        "dataset": {
            **identity["dataset"],
            "n_users": dataset.n_users,
            "n_items": dataset.n_items,
            "n_interactions": dataset.n_interactions,
            "source": dataset.meta.get("source"),
            "spec": dataset.meta.get("spec"),  # what `datasets.load` takes to load it again
        },
        "split": split.describe(),
        "provenance": provenance(device),
    }
