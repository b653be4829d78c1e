"""Declared hyper-parameter constraints: the values each model parameter accepts, stated once.

A model class declares ``_parameter_constraints = {"l2": [Interval("real", 0, None, closed="neither")]}``
(the idea of scikit-learn's ``sklearn/utils/_param_validation.py``, in a small local form);
declarations merge along the class hierarchy (`Recommender.parameter_constraints`), and
`Recommender.validate` runs `check_params` before anything is built, so `make_model` refuses a
bad ``--param`` before tuning storage or a record is touched. A value passes when any
constraint of its list accepts it. List entries are constraint objects or the shorthands
``None`` (the value None), ``bool``, ``str`` and other types (instances of that type).

Each constraint has a short `label` (``models list``: "int >= 1", "real in [0, 1)",
"one of bpr, warp") and a `phrase` for the one-line error ("ease: parameter l2 must be a real
number > 0, got -1.0").
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from datasets.errors import FusebenchError

CLOSED = ("left", "right", "both", "neither")


class Constraint:
    """One set of accepted values."""

    label = ""  # short, for `models list`
    phrase = ""  # for "parameter X must be <phrase>, got V"

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label})"


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


class Interval(Constraint):
    """Numbers from `low` to `high` (None: unbounded); `closed` says which ends belong.

    ``kind=int``: integers only (numpy's too). Python's bool is an int, but True is no count:
    bools are refused. ``kind="real"`` (or ``float``): any finite real number, ints included
    (``--param l2=5``); bools, NaN and infinities refused.
    """

    def __init__(self, kind, low: float | None = None, high: float | None = None, closed: str = "left"):
        if kind not in (int, float, "real"):
            raise TypeError(f"Interval kind must be int, float or 'real', got {kind!r}")
        if closed not in CLOSED:
            raise ValueError(f"closed must be one of {', '.join(CLOSED)}, got {closed!r}")
        if low is not None and high is not None and low > high:
            raise ValueError(f"empty interval: low {low!r} > high {high!r}")
        self.kind = int if kind is int else "real"
        self.low, self.high, self.closed = low, high, closed
        self.left_closed = closed in ("left", "both")
        self.right_closed = closed in ("right", "both")
        self.label = f"{'int' if self.kind is int else 'real'}{self._range()}"
        self.phrase = f"{'an integer' if self.kind is int else 'a real number'}{self._range()}"

    def _range(self) -> str:
        if self.low is None and self.high is None:
            return ""
        if self.high is None:
            return f" {'>=' if self.left_closed else '>'} {self.low}"
        if self.low is None:
            return f" {'<=' if self.right_closed else '<'} {self.high}"
        return f" in {'[' if self.left_closed else '('}{self.low}, {self.high}{']' if self.right_closed else ')'}"

    def accepts(self, value: Any) -> bool:
        if _is_bool(value):
            return False
        if self.kind is int:
            if not isinstance(value, numbers.Integral):
                return False
        elif not isinstance(value, numbers.Real) or not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (value == self.low and not self.left_closed)):
            return False
        if self.high is not None and (value > self.high or (value == self.high and not self.right_closed)):
            return False
        return True


class Options(Constraint):
    """One of the listed values, of the same type (1 is not "1"; True is not 1)."""

    def __init__(self, *values: Any):
        if not values:
            raise ValueError("Options needs at least one value")
        self.values = values
        self.label = self.phrase = "one of " + ", ".join(str(v) for v in values)

    def accepts(self, value: Any) -> bool:
        return any(isinstance(value, type(v)) and _is_bool(value) == _is_bool(v) and value == v for v in self.values)


class Boolean(Constraint):
    label, phrase = "bool", "a boolean (true or false)"

    def accepts(self, value: Any) -> bool:
        return _is_bool(value)


class NoneValue(Constraint):
    label = phrase = "None"

    def accepts(self, value: Any) -> bool:
        return value is None


class InstanceOf(Constraint):
    """Instances of `type_`; `label`/`phrase` may say what the value means (e.g. a model name)."""

    def __init__(self, type_: type, label: str | None = None, phrase: str | None = None):
        self.type = type_
        self.label = label or type_.__name__
        self.phrase = phrase or ("a string" if type_ is str else f"a {type_.__name__}")

    def accepts(self, value: Any) -> bool:
        return isinstance(value, self.type)


def make_constraint(c: Any) -> Constraint:
    """A constraint object from a declaration entry (see the module doc for the shorthands)."""
    if isinstance(c, Constraint):
        return c
    if c is None:
        return NoneValue()
    if c is bool:
        return Boolean()
    if isinstance(c, type):
        return InstanceOf(c)
    raise TypeError(f"not a parameter constraint: {c!r}")


def normalize(declared: list) -> list[Constraint]:
    return [make_constraint(c) for c in declared]


def describe(constraints: list) -> str:
    """The short form shown by `models list`, e.g. "int >= 1" or "str or None"."""
    return " or ".join(make_constraint(c).label for c in constraints)


def check_params(model: str, constraints: dict[str, list], values: dict[str, Any]) -> None:
    """Raise FusebenchError (one line naming model, parameter, accepted values and the value)
    for the first value no constraint of its parameter accepts; parameters without a
    declaration are not checked."""
    for name, value in values.items():
        declared = constraints.get(name)
        if declared is None:
            continue
        cons = normalize(declared)
        if not any(c.accepts(value) for c in cons):
            raise FusebenchError(
                f"{model}: parameter {name} must be {' or '.join(c.phrase for c in cons)}, got {value!r}"
            )


# the ranges most parameters take (constraints are immutable, so they can be shared)
POSITIVE_INT = Interval(int, 1, None)  # sizes, counts, epochs
NON_NEGATIVE_INT = Interval(int, 0, None)  # layers (0: no propagation)
POSITIVE = Interval("real", 0, None, closed="neither")  # learning rates, temperatures
NON_NEGATIVE = Interval("real", 0, None)  # penalties and loss weights (0: off)
DROPOUT = Interval("real", 0, 1, closed="left")  # a rate: 1 would drop everything
UNIT = Interval("real", 0, 1, closed="both")  # a mixing share
