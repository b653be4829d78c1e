"""Multimodal fusion models: fusion strategies (concat, late, ...) and published models (VBPR, ...).

Importing this package imports every module in it, which registers every fusion model with
the `baselines` registry (a new model module needs no edit here); nothing else happens at
import time (no data is read, no torch state is touched).
"""

import importlib
import pkgutil

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
