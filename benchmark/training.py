"""The protocol loop: the benchmark, not the model, owns validation and early stopping.

Iterative models run epoch by epoch; every `eval_every` epochs the validation metric is
computed with the metric core (train items masked), the best state is kept, and training
stops after `patience` evaluations without improvement. One-shot models fit once.

The stopping rule is the same for every iterative model: patience on validation, bounded by
the model's `epochs`, which the benchmark's protocols set to one protocol-level maximum
(`protocol.MAX_EPOCHS`) that never binds in practice, not to the model's own default. Every
outcome says why training stopped (`stopped_by`), so a run cut short by the maximum is
never presented as converged.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.sparse as sp

from baselines.base import FitData, Recommender
from datasets.errors import FusebenchError

from .evaluate import evaluate
from .metrics import PRIMARY_METRIC, RANK_METRICS
from .protocol import PATIENCE


def parse_metric(metric: str) -> tuple[str, int]:
    """'recall@20' -> ('recall', 20)."""
    name, sep, k = metric.partition("@") if isinstance(metric, str) else ("", "", "")
    if not name or not sep or not k.isdigit() or int(k) <= 0:
        raise FusebenchError(f"metric must look like 'recall@20', got {metric!r}")
    if name not in RANK_METRICS:
        raise FusebenchError(f"unknown metric {name!r} in {metric!r}; available: {', '.join(RANK_METRICS)} (@k)")
    return name, int(k)


@dataclass
class TrainOutcome:
    train_seconds: float
    valid_seconds: float = 0.0
    epochs_run: int | None = None
    best_epoch: int | None = None
    best_valid: float | None = None
    stopped_early: bool = False
    # why training ended: "patience" (no improvement for `patience` validations) or
    # "max_epochs" (the epoch bound was reached first); None for one-shot models
    stopped_by: str | None = None
    history: list[dict] = field(default_factory=list)


def train(
    model: Recommender,
    data: FitData,
    valid: sp.csr_matrix,
    *,
    metric: str = PRIMARY_METRIC,
    eval_every: int = 1,
    patience: int = PATIENCE,
    on_eval: Callable[[int, float], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrainOutcome:
    """Fit `model` on `data`, selecting the epoch on `valid` (never on test).

    `on_eval(epoch, value)` is called after each validation (the tuner's pruning hook).
    """
    if not model.iterative:
        t0 = time.perf_counter()
        model.fit(data)
        return TrainOutcome(train_seconds=time.perf_counter() - t0)

    name, k = parse_metric(metric)
    if valid.nnz == 0:  # every validation would be NaN: no epoch could be chosen, silently the last
        raise FusebenchError(
            f"{model.name}: the split has no validation interactions, so no epoch can be selected "
            "(use a split with a validation part)"
        )
    if eval_every < 1 or patience < 1:
        raise FusebenchError("eval_every and patience must be >= 1")
    out = TrainOutcome(train_seconds=0.0, epochs_run=0)
    t0 = time.perf_counter()
    model.init(data)
    out.train_seconds += time.perf_counter() - t0
    best, best_state, bad_evals = -math.inf, None, 0
    for epoch in range(1, int(model.epochs) + 1):
        t0 = time.perf_counter()
        loss = model.train_epoch()
        out.train_seconds += time.perf_counter() - t0
        out.epochs_run = epoch
        if not np.isfinite(loss):
            raise FloatingPointError(f"{model.name}: loss became {loss} at epoch {epoch}")
        row = {"epoch": epoch, "loss": float(loss)}
        if epoch % eval_every == 0 or epoch == model.epochs:
            res = evaluate(model.score, valid, data.train, metrics=(name,), ks=(k,))
            out.valid_seconds += res.seconds
            value = float(res.summary[metric])
            row[metric] = value
            if on_eval is not None:
                on_eval(epoch, value)
            if value > best:
                best, best_state, bad_evals = value, model.get_state(), 0
                out.best_epoch = epoch
            else:
                bad_evals += 1
            if progress is not None:
                progress(f"epoch {epoch} loss {loss:.4f} {metric} {value:.4f} (best {best:.4f}@{out.best_epoch})")
        out.history.append(row)
        if bad_evals >= patience:
            out.stopped_early = True
            break
    out.stopped_by = "patience" if out.stopped_early else "max_epochs"
    if best_state is not None:
        model.set_state(best_state)
    out.best_valid = None if best == -math.inf else best
    return out
