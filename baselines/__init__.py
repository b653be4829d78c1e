"""Classic recommenders and the one model contract.

Importing this package imports every module in it, which registers every baseline (a new
model module needs no edit here); `make_model(name, params)` builds one.
"""

import importlib
import pkgutil

from .base import (
    FAMILIES,
    FitData,
    Recommender,
    campaign_models,
    get_model_class,
    make_model,
    model_names,
    model_source,
    reads_content,
    register,
)

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = [
    "FAMILIES",
    "FitData",
    "Recommender",
    "get_model_class",
    "make_model",
    "campaign_models",
    "model_names",
    "model_source",
    "reads_content",
    "register",
]
