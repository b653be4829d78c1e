"""`baselines.checks.check_recommender` over every registered model: the contract the
benchmark relies on holds for each built-in model, whatever ran before (the registry is filled
by importing both model packages here, not by other tests)."""

import pytest

import baselines
import fusion_models  # noqa: F401  (registers the fusion models)
from baselines.base import builtin_model, get_model_class
from baselines.checks import check_recommender

BUILTIN = [m for m in baselines.model_names() if builtin_model(m)]


def test_the_registry_holds_both_packages():
    families = {get_model_class(m).family for m in BUILTIN}
    assert {"baseline/cf", "baseline/content", "baseline/hybrid", "fusion"} <= families
    assert len(BUILTIN) >= 23


@pytest.mark.parametrize("name", BUILTIN)
def test_every_registered_model_keeps_the_contract(name):
    check_recommender(get_model_class(name))
