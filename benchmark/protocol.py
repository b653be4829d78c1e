"""The evaluation protocol: one frozen object holding what every run of an invocation shares
(split rule, seeds, validation metric and stopping rule, test-time masking, metrics and
cutoffs, the epoch bound) with the project's defaults defined once here, `split_rule`, the one
place where "the dataset's own split if its source has one, else random" is applied, and
`model_params`, the one place where protocol-level settings reach a model. It is passed whole
(to jobs, the tuner, every run), never unpacked into keyword lists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from baselines import get_model_class
from datasets import MultimodalDataset, Split, default_protocol
from datasets import split as make_split
from datasets.errors import FusebenchError

from .evaluate import DEFAULT_METRICS
from .metrics import PRIMARY_METRIC

DEFAULT_KS = (10, 20, 50)
DEFAULT_SEEDS = (0, 1, 2)
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
    # the split rule: a `datasets.PROTOCOLS` name, or None for each dataset's own default
    # (`split_rule`); a job carries it resolved for its dataset
    split: str | None = None
    seeds: tuple[int, ...] = DEFAULT_SEEDS  # the seed runs of every configuration

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
                "split": "given",
                **overrides,
            }
        )

    def split_rule(self, dataset: MultimodalDataset) -> str:
        """The split `dataset` is evaluated on: the protocol's, else the dataset's own default
        (`datasets.default_protocol`: its source's split when it has one, else random 8:1:1).
        A given split asked of a dataset without one is a user error."""
        rule = self.split or default_protocol(dataset)
        if rule == "given" and dataset.given_split is None:
            how = f"--protocol {self.name}" if self.name != "fusebench" else "--protocol given"
            raise FusebenchError(f"dataset {dataset.name!r} has no split of its own; {how} needs one")
        return rule

    def split_of(self, dataset: MultimodalDataset, seed: int) -> Split:
        """The split of `dataset` under this protocol's rule with `seed`."""
        return make_split(dataset, protocol=self.split_rule(dataset), seed=seed)

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
