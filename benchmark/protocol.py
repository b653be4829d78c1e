"""The evaluation protocol: one frozen object holding what every run of an invocation shares
(validation metric and stopping rule, test-time masking, metrics and cutoffs, the epoch bound)
with the project's defaults defined once here, and `model_params`, the one place where
protocol-level settings reach a model. The split rule (`datasets.default_protocol`) and the
seeds travel with each job (`benchmark.parallel.Job`, `benchmark.pipeline.Plan`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from baselines import get_model_class

from .evaluate import DEFAULT_METRICS
from .metrics import PRIMARY_METRIC

DEFAULT_KS = (10, 20, 50)
# the protocol-level maximum of epochs of every iterative model (MMRec uses 1000 too): large
# enough never to bind in practice, so patience on validation is what stops training
MAX_EPOCHS = 1000
# evaluations without improvement before training stops, in every protocol: MMRec's rule
# (stopping_step 20 stops at the 21st evaluation without improvement). With 10, FREEDOM's
# validation curve, which plateaus for more than 10 epochs before it improves again, stopped at
# 117-166 epochs on lfm2k against 248-315 under MMRec's rule, and .019 lower in test Recall@20.
PATIENCE = 21
# the selection and test-time settings the leaderboard groups runs by, with the value a record
# written before the setting was recorded was made with (`records.RunRecord.settings`)
DEFAULT_SETTINGS = {
    "metric": PRIMARY_METRIC,
    "patience": PATIENCE,
    "eval_every": 1,
    "protocol": "fusebench",
    "mask_valid_at_test": True,
}


@dataclass(frozen=True)
class Protocol:
    """Protocol settings shared by every run of a benchmark invocation."""

    metric: str = PRIMARY_METRIC  # validation metric for early stopping / selection
    patience: int = PATIENCE  # evaluations without improvement before stopping
    eval_every: int = 1
    metrics: tuple[str, ...] = DEFAULT_METRICS
    ks: tuple[int, ...] = DEFAULT_KS
    eval_batch_size: int = 1024
    device: str = "cpu"
    # the fusebench protocol masks train and valid items at test time; MMRec masks train only
    mask_valid_at_test: bool = True
    # the epoch bound of every iterative model whose epochs the user did not set explicitly
    # (`--epochs`); a model's own `epochs` default is not a cap under the benchmark's protocols
    epochs: int = MAX_EPOCHS
    name: str = "fusebench"  # which evaluation protocol these settings make up

    @classmethod
    def mmrec(cls, **overrides) -> Protocol:
        """MMRec's evaluation protocol (src/configs/overall.yaml): early stopping on valid
        Recall@20 with `stopping_step` 20, up to 1000 epochs, and at test time only the training
        items masked (validation items stay rankable). Use it with the given split. Its stopping
        rule is the fusebench protocol's too (`PATIENCE`): MMRec's early_stopping counts
        evaluations without improvement and stops once the count exceeds stopping_step, i.e. at
        the 21st; our `patience` stops at the patience-th."""
        return cls(
            **{
                "metric": PRIMARY_METRIC,
                "patience": PATIENCE,
                "mask_valid_at_test": False,
                "epochs": MAX_EPOCHS,
                "name": "mmrec",
                **overrides,
            }
        )

    def stopping(self) -> dict[str, Any]:
        """The stopping rule's settings, as `benchmark.training.train` takes them."""
        return {"metric": self.metric, "eval_every": self.eval_every, "patience": self.patience}

    def identity(self) -> dict[str, Any]:
        """The settings that change results (and so belong in a record's key)."""
        out = {"metric": self.metric, "patience": self.patience, "eval_every": self.eval_every}
        if self.name != "fusebench":
            out.update(protocol=self.name, mask_valid_at_test=self.mask_valid_at_test)
        return out

    def model_params(self, model_name: str, params: dict[str, Any] | None) -> dict[str, Any]:
        """The one place where protocol-level settings reach a model: an iterative model's epoch
        bound becomes the protocol's (`self.epochs`) unless the user set it explicitly."""
        params = dict(params or {})
        cls = get_model_class(model_name)
        key = cls.epochs_param
        if cls.iterative and key and key not in params and key in cls.param_names():
            params[key] = self.epochs
        return params
