"""fusebench datasets: loaders -> MultimodalDataset, split protocols -> Split.

    >>> import datasets
    >>> ds = datasets.load("ml-latest-small")
    >>> sp = datasets.split(ds, "random", seed=0)

Item features from raw content: `datasets.encoders` (``get_encoder("text/minilm")``) and
raw-content catalogue folders (``datasets.load("catalogue:PATH")``, `datasets.catalogue`).
"""

from .core import MultimodalDataset, Split, interactions_to_csr
from .download import DatasetUnavailable
from .errors import FusebenchError
from .registry import available, load, resolve_name
from .splits import PROTOCOLS, default_protocol, split
from .summary import describe

__all__ = [
    "MultimodalDataset",
    "Split",
    "FusebenchError",
    "DatasetUnavailable",
    "interactions_to_csr",
    "load",
    "available",
    "resolve_name",
    "split",
    "PROTOCOLS",
    "default_protocol",
    "describe",
]
