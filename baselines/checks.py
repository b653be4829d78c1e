"""`check_recommender(cls)`: the model contract, checked property by property (in the spirit
of scikit-learn's `check_estimator`), on a tiny generated dataset, in seconds.

It is public: a third party runs it on their own class, fusebench runs it on every registered
model in its test suite, and on a user's class (`--model file.py:Class`) before training it,
so a broken model fails with the name of the broken property instead of deep in a run.

    from baselines.checks import check_recommender
    check_recommender(MyModel)            # raises ContractError naming the property
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from datasets.errors import FusebenchError

from .base import FAMILIES, FitData, Recommender, model_source

# the tiny dataset: enough users and items for every model's defaults (kNN k, embedding sizes
# and batch sizes larger than the data are each model's business to clip)
N_USERS, N_ITEMS, PER_USER = 40, 30, 6
EPOCHS = 2  # iterative models train this many epochs in the check


class ContractError(FusebenchError):
    """A model breaks a property of the contract; the message names the property."""


def tiny_data(seed: int = 0) -> FitData:
    """A small interaction matrix, one feature set per modality (image with missing items), item text."""
    rng = np.random.default_rng(1234)
    rows, cols = [], []
    for u in range(N_USERS):
        items = rng.choice(N_ITEMS, size=PER_USER, replace=False)
        rows += [u] * PER_USER
        cols += items.tolist()
    train = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(N_USERS, N_ITEMS))
    words = ["rock", "jazz", "pop", "folk", "metal", "soul", "blues", "punk"]
    text = [" ".join(words[(i + j) % len(words)] for j in range(3)) + f" item{i}" for i in range(N_ITEMS)]
    image_mask = np.ones(N_ITEMS, bool)
    image_mask[::7] = False
    image = rng.normal(size=(N_ITEMS, 12)).astype(np.float32)
    image[~image_mask] = 0.0
    features = {
        "text": rng.normal(size=(N_ITEMS, 8)).astype(np.float32),
        "image": image,
        "audio": rng.normal(size=(N_ITEMS, 6)).astype(np.float32),
        "video": rng.normal(size=(N_ITEMS, 10)).astype(np.float32),
    }
    return FitData(train=train, features=features, item_text=text, seed=seed, feature_masks={"image": image_mask})


def _guarded(cls: type, prop: str, fn, *args, **kwargs):
    """`fn(*args)`, an exception of the model's code reported as a break of `prop`."""
    try:
        return fn(*args, **kwargs)
    except ContractError:
        raise
    except Exception as exc:
        raise _fail(cls, prop, f"raised {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _fail(cls: type, prop: str, detail: str) -> ContractError:
    name = getattr(cls, "name", "?")
    src = model_source(name) if isinstance(name, str) else None
    where = src["spec"] if src else f"{cls.__module__}.{cls.__qualname__}"  # the spec the user typed
    return ContractError(f"{where} (model {name!r}) breaks the contract, property {prop!r}: {detail}")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _snapshot(data: FitData) -> tuple:
    t = data.train
    return (
        t.shape,
        t.data.copy(),
        t.indices.copy(),
        t.indptr.copy(),
        {k: v.copy() for k, v in data.features.items()},
        list(data.item_text or []),
    )


def _unchanged(before: tuple, data: FitData) -> bool:
    shape, values, indices, indptr, feats, text = before
    t = data.train
    return (
        t.shape == shape
        and np.array_equal(t.data, values)
        and np.array_equal(t.indices, indices)
        and np.array_equal(t.indptr, indptr)
        and feats.keys() == data.features.keys()
        and all(np.array_equal(feats[k], data.features[k]) for k in feats)
        and list(data.item_text or []) == text
    )


def _params_for_check(cls: type[Recommender], params: dict[str, Any]) -> dict[str, Any]:
    key = cls.epochs_param
    if cls.iterative and key and key in cls.param_names():
        params = {**params, key: EPOCHS}
    return params


def _build(cls: type[Recommender], params: dict[str, Any]) -> Recommender:
    model = _guarded(cls, "get_params", cls, **params)
    _guarded(cls, "validate", model.validate)
    return model


def _train(cls: type[Recommender], model: Recommender, data: FitData) -> Recommender:
    if not cls.iterative:
        out = _guarded(cls, "fit", model.fit, data)
        if out is not model:
            raise _fail(cls, "fit", f"fit(data) must return self, returned {type(out).__name__}")
        return model
    out = _guarded(cls, "init", model.init, data)
    if out is not None:
        raise _fail(cls, "init", f"init(data) must return None, returned {type(out).__name__}")
    for epoch in range(EPOCHS):
        loss = _guarded(cls, "train_epoch", model.train_epoch)
        if isinstance(loss, bool) or not isinstance(loss, (int, float, np.floating, np.integer)):
            raise _fail(
                cls,
                "train_epoch",
                f"train_epoch() must return the epoch's mean loss as a float, returned {type(loss).__name__}",
            )
        if not math.isfinite(float(loss)):
            raise _fail(cls, "train_epoch", f"epoch {epoch + 1} returned a non-finite loss {loss!r}")
    return model


def _scores(cls: type[Recommender], model: Recommender, users: np.ndarray, n_items: int) -> np.ndarray:
    s = _guarded(cls, "score", model.score, users)
    if not isinstance(s, np.ndarray):
        raise _fail(cls, "score", f"score(users) must return a numpy array, returned {type(s).__name__}")
    if s.dtype != np.float32:
        raise _fail(cls, "score", f"score(users) must return float32, returned {s.dtype}")
    if s.shape != (len(users), n_items):
        raise _fail(
            cls,
            "score",
            f"score(users) for {len(users)} users must have shape ({len(users)}, {n_items}), returned {s.shape}",
        )
    return s


def _search_space_samples(cls: type[Recommender], n: int) -> list[dict[str, Any]]:
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line per check
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
        out = []
        for _ in range(n):
            trial = study.ask()
            out.append(cls.search_space(trial))
            study.tell(trial, 0.0)
        return out
    finally:
        optuna.logging.set_verbosity(verbosity)


def check_recommender(cls: type[Recommender], *, search_samples: int = 10, seed: int = 0) -> None:
    """Check that `cls` keeps the model contract; raise `ContractError` naming the first broken
    property. Properties, in order:

    - ``class``: a `Recommender` subclass with a `name` and a family in FAMILIES;
    - ``get_params``: the constructor stores each parameter unchanged (same value and type) and
      `get_params()` returns them (defaults and values from the search space);
    - ``validate``: the defaults pass `validate()`;
    - ``search_space``: it samples only parameters the constructor has and values `validate()`
      accepts (`search_samples` random draws);
    - ``fit`` / ``init`` / ``train_epoch``: return self / None / a finite float;
    - ``score``: float32 of shape (len(users), n_items), also for one user and for none;
    - ``training data``: neither fit nor score changes the training matrix, features or text;
    - ``seed``: the same seed gives the same scores;
    - ``get_state``: (iterative) `set_state(get_state())` after more training restores the scores;
    - ``used_modalities``: names among the feature sets given (or `item_text`, or `MODALITY/raw`
      for raw content); ``n_parameters``: an int >= 0.
    """
    if not (inspect.isclass(cls) and issubclass(cls, Recommender)):
        raise ContractError(f"{cls!r} is not a subclass of baselines.Recommender")
    if not cls.name or cls.family not in FAMILIES:
        raise _fail(cls, "class", f"needs a `name` and a `family` in {', '.join(FAMILIES)}")
    defaults = cls.defaults()
    missing = [k for k, v in defaults.items() if v is inspect.Parameter.empty]
    if missing:
        raise _fail(cls, "get_params", f"every constructor parameter needs a default; {', '.join(missing)} has none")

    configs = [defaults]
    try:
        configs += [{**defaults, **sample} for sample in _search_space_samples(cls, search_samples)]
    except ContractError:
        raise
    except Exception as exc:
        raise _fail(cls, "search_space", f"sampling raised {type(exc).__name__}: {exc}") from None
    for i, params in enumerate(configs):
        unknown = set(params) - set(defaults)
        if unknown:
            raise _fail(cls, "search_space", f"samples parameters the constructor does not take: {sorted(unknown)}")
        model = _guarded(cls, "get_params", cls, **params)
        got = _guarded(cls, "get_params", model.get_params)
        bad = [k for k in params if k not in got or not _same(got[k], params[k])]
        if bad:
            k = bad[0]
            raise _fail(
                cls,
                "get_params",
                f"the constructor must store {k}={params[k]!r} unchanged; "
                f"get_params() gives {got.get(k, '(missing)')!r}",
            )
        try:
            model.validate()
        except Exception as exc:  # a user's validate may raise anything: the property is named all the same
            where = "the defaults" if i == 0 else f"search-space sample {params}"
            text = str(exc).strip().splitlines()
            why = text[0] if isinstance(exc, FusebenchError) and text else _first_line(exc)
            raise _fail(cls, "validate" if i == 0 else "search_space", f"{where} refused: {why}") from None

    data = tiny_data(seed)
    params = _params_for_check(cls, defaults)
    before = _snapshot(data)
    model = _train(cls, _build(cls, params), data)
    users = np.array([0, 3, 7, N_USERS - 1])
    first = _scores(cls, model, users, N_ITEMS)
    _scores(cls, model, users[:1], N_ITEMS)
    _scores(cls, model, users[:0], N_ITEMS)
    if not _unchanged(before, data):
        raise _fail(cls, "training data", "fit or score changed the training matrix, the features or the text")

    again = _scores(cls, _train(cls, _build(cls, params), tiny_data(seed)), users, N_ITEMS)
    if not np.array_equal(first, again, equal_nan=True):
        raise _fail(
            cls,
            "seed",
            f"two fits with seed {seed} gave different scores (max difference {np.nanmax(np.abs(first - again)):.3g})",
        )

    if cls.iterative:
        state = _guarded(cls, "get_state", model.get_state)
        _guarded(cls, "train_epoch", model.train_epoch)
        _guarded(cls, "get_state", model.set_state, state)
        restored = _scores(cls, model, users, N_ITEMS)
        if not np.array_equal(first, restored, equal_nan=True):
            raise _fail(cls, "get_state", "set_state(get_state()) after another epoch did not restore the scores")

    used = _guarded(cls, "used_modalities", model.used_modalities)
    given = set(data.features) | {"item_text"}  # item_text: the raw text, for text models
    if data.content is not None:  # raw content the end-to-end models decode themselves
        given |= {f"{m}/raw" for m in data.content.available()}
    if not isinstance(used, (list, tuple)) or not set(used) <= given:
        raise _fail(cls, "used_modalities", f"must list inputs among {sorted(given)}, gave {used!r}")
    n = _guarded(cls, "n_parameters", model.n_parameters)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise _fail(cls, "n_parameters", f"must be an int >= 0, gave {n!r}")
