"""Declared parameter constraints: every registered model declares every parameter, bad values
are refused by `make_model` with one line naming the parameter, and search spaces stay inside."""

import math
import re

import numpy as np
import optuna
import pytest

import fusion_models  # noqa: F401  (registers the fusion models)
from baselines import get_model_class, make_model, model_names
from baselines.base import Recommender
from baselines.params import (
    Boolean,
    InstanceOf,
    Interval,
    NoneValue,
    Options,
    check_params,
    describe,
    make_constraint,
    normalize,
)
from datasets.errors import FusebenchError

optuna.logging.set_verbosity(optuna.logging.WARNING)
MODELS = model_names()


# --- the constraint classes ----------------------------------------------------------------------
def test_int_interval_refuses_bools_and_non_integers():
    c = Interval(int, 1, None)
    assert c.label == "int >= 1" and c.phrase == "an integer >= 1"
    assert c.accepts(1) and c.accepts(10**9) and c.accepts(np.int64(3))
    for bad in (0, -1, True, False, np.bool_(True), 1.0, 2.5, "3", None, float("nan")):
        assert not c.accepts(bad), bad


def test_real_interval_takes_ints_but_not_bools_nan_or_inf():
    c = Interval("real", 0, None, closed="neither")
    assert c.label == "real > 0" and Interval(float, 0, None).label == "real >= 0"
    assert c.accepts(5) and c.accepts(1e-12) and c.accepts(np.float32(0.5))
    for bad in (0, 0.0, -1.0, True, float("nan"), float("inf"), "1", None):
        assert not c.accepts(bad), bad
    assert not Interval("real").accepts(float("-inf")) and Interval("real").label == "real"


@pytest.mark.parametrize(
    "closed, label, inside, outside",
    [
        ("left", "real in [0, 1)", [0, 0.5], [1, -0.1, 1.1]),
        ("right", "real in (0, 1]", [1, 0.5], [0, 1.1]),
        ("both", "real in [0, 1]", [0, 1], [-0.1, 1.1]),
        ("neither", "real in (0, 1)", [0.5], [0, 1]),
    ],
)
def test_interval_ends(closed, label, inside, outside):
    c = Interval("real", 0, 1, closed=closed)
    assert c.label == label
    assert all(c.accepts(v) for v in inside) and not any(c.accepts(v) for v in outside)


def test_interval_declaration_errors():
    with pytest.raises(TypeError):
        Interval(str, 0, 1)
    with pytest.raises(ValueError):
        Interval(int, 0, 1, closed="open")
    with pytest.raises(ValueError):
        Interval(int, 2, 1)
    assert Interval(int, None, 4, closed="both").label == "int <= 4"


def test_options_match_value_and_type():
    c = Options("bpr", "softmax")
    assert c.label == "one of bpr, softmax" and c.accepts("bpr") and not c.accepts("BPR")
    assert not Options(0, 1).accepts(True) and Options(0, 1).accepts(1) and not Options("1").accepts(1)


def test_shorthands_and_descriptions():
    assert isinstance(make_constraint(None), NoneValue) and isinstance(make_constraint(bool), Boolean)
    assert isinstance(make_constraint(str), InstanceOf) and make_constraint(dict).accepts({})
    assert describe([str, dict, None]) == "str or dict or None"
    assert Boolean().accepts(np.bool_(False)) and not Boolean().accepts(1)
    with pytest.raises(TypeError):
        make_constraint("int")


def test_check_params_message_is_one_line_naming_model_parameter_range_and_value():
    with pytest.raises(FusebenchError) as e:
        check_params("ease", {"l2": [Interval("real", 0, None, closed="neither")]}, {"l2": -1.0})
    assert str(e.value) == "ease: parameter l2 must be a real number > 0, got -1.0"
    with pytest.raises(FusebenchError, match=r"^m: parameter c must be a string or None, got 3$"):
        check_params("m", {"c": [str, None]}, {"c": 3})
    check_params("m", {"c": [str, None]}, {"c": None, "undeclared": object()})  # undeclared: not checked


def test_declarations_merge_along_the_mro_and_only_constructor_parameters_count():
    class Base(Recommender):
        _parameter_constraints = {"a": [Interval(int, 0, None)], "b": [bool], "unused": [str]}

    class Child(Base):
        name = "child"
        _parameter_constraints = {"a": [Interval(int, 1, None)]}

        def __init__(self, a: int = 1, b: bool = True, c=None):
            self.a, self.b, self.c = a, b, c

    assert {k: describe(v) for k, v in Child.parameter_constraints().items()} == {"a": "int >= 1", "b": "bool"}
    Child().validate()
    Child(c=object()).validate()  # undeclared: not checked
    with pytest.raises(FusebenchError, match="child: parameter a must be an integer >= 1, got 0"):
        Child(a=0).validate()


# --- every registered model -----------------------------------------------------------------------
def invalid_values(constraints: list) -> list:
    """Values derived from the constraints that none of them accepts: beyond each bound (the
    open end itself too), non-integers for ints, NaN/inf for reals, bools for numbers, an
    unknown option, wrong types."""
    cands: list = []
    for c in normalize(constraints):
        if isinstance(c, Interval):
            step = 1 if c.kind is int else 0.5
            if c.low is not None:
                cands += [c.low - step] + ([] if c.left_closed else [c.low])
            if c.high is not None:
                cands += [c.high + step] + ([] if c.right_closed else [c.high])
            cands += [1.5, True, "1"] if c.kind is int else [float("nan"), float("inf"), True, "1"]
        elif isinstance(c, Options):
            cands += ["no-such-option", 0]
        elif isinstance(c, Boolean):
            cands += ["yes", 1]
        elif isinstance(c, InstanceOf):
            cands += [3, ["a"]]
    cons = normalize(constraints)
    return [v for v in cands if not any(c.accepts(v) for c in cons)]


@pytest.mark.parametrize("name", MODELS)
def test_every_parameter_is_declared_and_the_defaults_pass(name):
    cls = get_model_class(name)
    declared = cls.parameter_constraints()
    assert set(cls.param_names()) == set(declared), f"undeclared: {set(cls.param_names()) - set(declared)}"
    own = vars(cls).get("_parameter_constraints", {})
    assert set(own) <= set(cls.param_names()), f"no such constructor parameter: {set(own) - set(cls.param_names())}"
    for k, default in cls.defaults().items():
        assert any(c.accepts(default) for c in normalize(declared[k])), (k, default)
    make_model(name)


@pytest.mark.parametrize("name", MODELS)
def test_invalid_values_are_refused_by_make_model_naming_the_parameter(name):
    for param, constraints in get_model_class(name).parameter_constraints().items():
        bad_values = invalid_values(constraints)
        assert bad_values, f"{param}: no invalid value derived from {describe(constraints)}"
        for bad in bad_values:
            with pytest.raises(FusebenchError) as e:
                make_model(name, {param: bad})
            msg = str(e.value)
            assert msg.startswith(f"{name}: parameter {param} must be "), msg
            assert "\n" not in msg and msg.endswith(f"got {bad!r}"), msg


@pytest.mark.parametrize("name", MODELS)
def test_search_space_samples_only_accepted_values(name):
    cls = get_model_class(name)
    constraints = cls.parameter_constraints()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        params = cls.search_space(trial)
        for k, v in params.items():
            assert any(c.accepts(v) for c in normalize(constraints[k])), (k, v, describe(constraints[k]))
        make_model(name, params)
        study.tell(trial, 0.0)


def test_rules_a_declaration_cannot_express_stay_in_validate():
    with pytest.raises(FusebenchError, match="divisible by n_heads"):
        make_model("fusion-transformer", {"embedding_size": 64, "n_heads": 3})
    with pytest.raises(FusebenchError, match="feat_embed_dim must equal embedding_size"):
        make_model("freedom", {"reg_weight": 1e-4, "feat_embed_dim": 32})
    with pytest.raises(FusebenchError, match="cannot nest itself"):
        make_model("hybrid-blend", {"cf": "hybrid-blend"})
    for name in ("content-knn", "feature-mf", "fusion-late", "lattice"):  # the spec's syntax, before any data
        with pytest.raises(FusebenchError, match="twice"):
            make_model(name, {"modalities": "text,text"})


def test_recbole_adapter_parameters_are_declared():
    pytest.importorskip("recbole")
    for name in ("recbole:BPR", "recbole:Pop"):
        cls = get_model_class(name)
        declared = cls.parameter_constraints()
        assert set(cls.param_names()) == set(declared)
        make_model(name)
        for param, constraints in declared.items():
            for bad in invalid_values(constraints):
                with pytest.raises(FusebenchError, match=re.escape(f"{name}: parameter {param} must be ")):
                    make_model(name, {param: bad})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    cls = get_model_class("recbole:BPR")
    for _ in range(20):
        trial = study.ask()
        make_model("recbole:BPR", cls.search_space(trial))
        study.tell(trial, 0.0)
    assert math.isclose(make_model("recbole:BPR", {"learning_rate": 5}).learning_rate, 5)


def test_cli_refuses_a_bad_value_before_tuning_storage_or_records_exist(tmp_path):
    """The entry point itself: exit 2, one line, and the (existing) results folder stays empty
    (no tuning.db, no failed trial, no record)."""
    import subprocess
    import sys
    from pathlib import Path

    results = tmp_path / "results"
    results.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark",
            "run",
            "--dataset",
            "ml-100k",
            "--model",
            "ease",
            "--param",
            "l2=-1",
            "--budget",
            "2",
            "--results",
            str(results),
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("ease: parameter l2 must be a real number > 0, got -1.0"), lines
    assert list(results.iterdir()) == []
