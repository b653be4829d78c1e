"""What the command line takes, parsed and checked once: `NAME=VALUE` parameters, comma lists,
the user-error type and the run defaults. `cli` builds the parser from these; `reproduce` and
`leaderboard` read them here (so neither imports the command line back).
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

from baselines.base import get_model_class, make_model, model_source
from datasets.errors import FusebenchError

# `run --all` without --datasets: the dataset the quick start runs in under 30 minutes on 2 cores
# (the committed leaderboard adds lfm2k with the same budget)
DEFAULT_DATASETS = ("ml-100k",)


class UsageError(FusebenchError):
    """A bad option or option value on the command line (one line, exit code 2)."""


def resolve_models(specs: Sequence[str]) -> list[str]:
    """The registry names of model names or specs ('path/to/file.py:Class', 'pkg.mod:Class').

    A class from outside the package is imported, registered and run through the contract check
    (a few seconds) here, before anything is written: a broken model stops the command with the
    name of the property it breaks, not in the middle of a campaign."""
    from baselines.checks import check_recommender

    names = []
    for spec in specs:
        cls = get_model_class(spec)
        if model_source(cls.name) is not None:
            check_recommender(cls, search_samples=3)
        if cls.name in names:
            raise UsageError(f"model {cls.name!r} is listed twice ({spec})")
        names.append(cls.name)
    return names


def coerce(name: str, raw: str, default: Any) -> Any:
    """The one `NAME=VALUE` value parser: `raw` read as JSON (else as a string) and checked
    against the type of the parameter's default."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise UsageError(f"parameter {name} expects true/false, got {raw!r}")
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UsageError(f"parameter {name} expects an integer, got {raw!r}")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise UsageError(f"parameter {name} expects a finite number, got {raw!r}")
            return float(value)
        raise UsageError(f"parameter {name} expects a number, got {raw!r}")
    return value


def assignments(items: Sequence[str]) -> list[tuple[str, str]]:
    """The one `NAME=VALUE` syntax (--param): (name, raw value) pairs."""
    out = []
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--param expects NAME=VALUE, got {item!r}")
        out.append((name, raw))
    return out


def shared_params(models: Sequence[str], items: Sequence[str]) -> dict[str, Any]:
    """``NAME=VALUE`` for a command over several models: each applies to every model that has
    parameter NAME (typed by the first one's default); a name none of them has is an error."""
    out: dict[str, Any] = {}
    for name, raw in assignments(items):
        owners = [m for m in models if name in get_model_class(m).defaults()]
        if not owners:
            raise UsageError(f"--param {name}: none of {', '.join(models)} has that parameter")
        out[name] = coerce(name, raw, get_model_class(owners[0]).defaults()[name])
    return out


def parse_params(model: str, items: Sequence[str]) -> dict[str, Any]:
    """``NAME=VALUE`` for one model: names it has, values of its defaults' types, and values
    the model accepts."""
    cls = get_model_class(model)
    defaults = cls.defaults()
    params: dict[str, Any] = {}
    for name, raw in assignments(items):
        if name not in defaults:
            raise UsageError(
                f"model {model!r} has no parameter {name!r}; its parameters: {', '.join(defaults) or '(none)'}"
            )
        params[name] = coerce(name, raw, defaults[name])
    make_model(model, params)  # let the model reject values it cannot take, before any run
    return params


def split_list(value: str | None, flag: str | None = None) -> list[str] | None:
    """A comma-separated option as a list; naming `flag` makes an empty list a user error
    (``--datasets ,,`` must not quietly mean the default)."""
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if flag is not None and not items:
        raise UsageError(f"{flag} got no names ({value!r})")
    return items
