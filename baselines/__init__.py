"""Classic recommenders and the one model contract.

Importing this package registers every baseline; `make_model(name, params)` builds one.
"""

from .base import FAMILIES, FitData, Recommender, get_model_class, make_model, model_names, register
from . import bpr, ease, itemknn, pop  # noqa: F401  (registration side effects)

__all__ = ["FAMILIES", "FitData", "Recommender", "get_model_class", "make_model", "model_names", "register"]
