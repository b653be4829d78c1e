"""The one model contract (`Recommender`), the data a model is fitted on, and the registry."""

from __future__ import annotations

import copy
import inspect
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, ClassVar

import numpy as np
import scipy.sparse as sp

from datasets.content_inputs import ItemContent
from datasets.errors import FusebenchError
from datasets.placebo import placebo_features, placebo_text

from .params import check_params

FAMILIES = ("baseline/cf", "baseline/content", "baseline/hybrid", "fusion")


# what each `Recommender.needs()` entry means, as `models list` and docs/models.md say it
INPUTS = {
    "features": "item feature matrices (extracted or shipped)",
    "text": "item text",
    "content": "raw item content: item text, a catalogue folder's images/, audio/, video/ files",
}


def reads_content(cls) -> bool:
    """Whether models of `cls` may read item content: every family but collaborative
    filtering. These are the models a placebo control applies to."""
    return cls.family != "baseline/cf"


_PARAM_NAMES: dict[type, tuple[str, ...]] = {}


@dataclass
class FitData:
    """What a model sees: the training matrix, item content, a seed and a device.

    Validation and test matrices are deliberately absent: the benchmark owns evaluation.
    """

    train: sp.csr_matrix
    features: dict[str, np.ndarray] = field(default_factory=dict)
    item_text: list[str] | None = None
    seed: int = 0
    device: str = "cpu"
    # modality name -> bool (n_items,), True where the item's feature is present; a modality
    # without an entry is present for every item (see MultimodalDataset.feature_masks)
    feature_masks: dict[str, np.ndarray] = field(default_factory=dict)
    # the raw item content (text, and a catalogue's files) the end-to-end models decode
    # themselves (datasets.content_inputs); None: only `features` and `item_text`
    content: ItemContent | None = None

    def __post_init__(self):
        # data built by hand with item text has that text as raw content too
        if self.content is None and self.item_text is not None:
            self.content = ItemContent(self.train.shape[1], list(self.item_text))

    @classmethod
    def from_split(cls, dataset, split, device: str = "cpu") -> FitData:
        """The one way a benchmark run hands a model its data: the split's training matrix
        and seed, the dataset's item content (never the split's validation or test part)."""
        return cls(
            train=split.train,
            features=dataset.features,
            item_text=dataset.item_text,
            seed=split.seed,
            device=device,
            feature_masks=dict(getattr(dataset, "feature_masks", None) or {}),
            content=ItemContent.of(dataset),
        )

    def placebo(self, kind: str | None) -> FitData:
        """This data with its item content replaced by the `kind` placebo (`datasets.placebo`:
        "shuffle" or "noise"), drawn from this data's seed; None: this data unchanged."""
        if kind is None:
            return self
        features, masks = placebo_features(self.features, self.feature_masks, kind, self.seed)
        return replace(
            self,
            features=features,
            feature_masks=masks,
            item_text=placebo_text(self.item_text, kind, self.seed),
            content=None if self.content is None else self.content.with_placebo(kind, self.seed),
        )

    @property
    def n_users(self) -> int:
        return self.train.shape[0]

    @property
    def n_items(self) -> int:
        return self.train.shape[1]


class Recommender:
    """Base class: hyper-parameters are constructor arguments, learned state ends in `_`.

    One-shot models implement `fit`. Iterative models set `iterative = True` and implement
    `init(data)` and `train_epoch() -> float`, plus `get_state()`/`set_state()` so the
    benchmark's loop can keep the best epoch; their `fit` trains a fixed number of epochs.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    iterative: ClassVar[bool] = False
    # iterative models: the constructor parameter that bounds the epochs (the benchmark's
    # protocols set it to their maximum; patience on validation stops training)
    epochs_param: ClassVar[str | None] = "epochs"
    # False: the fitted model does not depend on FitData.seed (no random initialisation,
    # sampling or dropout), so two seeds on the same split give the same record and the
    # pipeline trains it once (benchmark.model_plan). True unless a class says otherwise: a model
    # from outside may draw from any generator
    seeded: ClassVar[bool] = True
    # parameter name -> accepted values (see baselines.params); each class declares its own
    # parameters and the declarations merge along the MRO, so a shared one is written once
    _parameter_constraints: ClassVar[dict[str, list]] = {}

    # --- scikit-learn style parameter handling -------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        # read per training batch (`param`): the constructor's signature is inspected once per class
        names = _PARAM_NAMES.get(cls)
        if names is None:
            names = _PARAM_NAMES[cls] = tuple(cls.defaults())
        return list(names)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        sig = inspect.signature(cls.__init__)
        # object.__init__'s *args/**kwargs (a class without a constructor) are no hyper-parameters
        return {
            k: p.default
            for k, p in sig.parameters.items()
            if k != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.param_names()}

    def param(self, name: str, fixed: Any) -> Any:
        """Hyper-parameter `name`, or `fixed` for a model that has no such parameter: code shared
        by models with and without it reads it here, so no class attribute is a hidden default."""
        return getattr(self, name) if name in self.param_names() else fixed

    @classmethod
    def parameter_constraints(cls) -> dict[str, list]:
        """Constructor parameter -> its declared constraints, merged along the MRO (a subclass's
        declaration wins); a parameter without one is absent and not checked."""
        merged: dict[str, list] = {}
        for klass in reversed(cls.__mro__):
            merged.update(vars(klass).get("_parameter_constraints", {}))
        return {k: merged[k] for k in cls.param_names() if k in merged}

    @classmethod
    def needs(cls, params: dict[str, Any] | None = None) -> set[str]:
        """What the model reads besides interactions (keys of INPUTS): "features" (item feature
        matrices; every model with a `modalities` parameter), "text" (item text), "content"
        (raw content, decoded by the model). `run --all` skips a model whose needs a dataset
        cannot meet, instead of failing the campaign on it."""
        return {"features"} if "modalities" in cls.param_names() else set()

    @classmethod
    def search_space(cls, trial) -> dict[str, Any]:
        """The model's Optuna space: one place per model. Empty when nothing is tuned."""
        return {}

    # --- the contract ---------------------------------------------------------------------
    def validate(self) -> None:
        """Check the hyper-parameters, without data: `make_model` calls it, so a value the
        model cannot take stops a command before anything is written (and fit/init call it
        again for a model built by hand). Every declared constraint is checked here; a
        subclass overrides this only for rules a declaration cannot express (between two
        parameters, a spec to parse), calling super().validate() first."""
        constraints = self.parameter_constraints()
        check_params(self.name or type(self).__qualname__, constraints, {k: getattr(self, k) for k in constraints})

    def fit(self, data: FitData) -> Recommender:
        if not self.iterative:
            raise NotImplementedError
        self.init(data)
        for _ in range(self.epochs):
            self.train_epoch()
        return self

    def init(self, data: FitData) -> None:
        raise NotImplementedError

    def train_epoch(self) -> float:
        raise NotImplementedError

    def score(self, users: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def get_state(self) -> Any:
        """A snapshot of the learned state (iterative models: to restore the best epoch)."""
        return copy.deepcopy({k: v for k, v in vars(self).items() if k.endswith("_")})

    def set_state(self, state: Any) -> None:
        for k, v in state.items():
            setattr(self, k, v)

    def uses_seed(self) -> bool:
        """Whether this configuration's fit depends on the run's seed (`seeded` for most models;
        a model built from others asks them)."""
        return self.seeded

    def used_modalities(self) -> list[str]:
        """Feature sets the fitted model actually used (recorded with every run)."""
        return []

    def n_parameters(self) -> int:
        """Number of learned scalars used at scoring time (reported next to accuracy)."""
        total = 0
        for k, v in vars(self).items():
            if not k.endswith("_"):
                continue
            if isinstance(v, np.ndarray):
                total += v.size
            elif sp.issparse(v):
                total += v.nnz
        return total


_REGISTRY: dict[str, type[Recommender]] = {}
# "prefix:NAME" families of models made on demand (e.g. "recbole:LightGCN"): prefix -> factory
_PREFIXES: dict[str, Callable[[str], type[Recommender]]] = {}
# models from outside the package (baselines.external): registry name -> where their code is
_SOURCES: dict[str, dict[str, Any]] = {}
# name -> class or None, tried for a name nothing registered (e.g. "path/model.py:Class")
_RESOLVERS: list[Callable[[str], type[Recommender] | None]] = []
# run once before the names are listed or a name is missed (installed packages' entry points)
_DISCOVERIES: list[Callable[[], None]] = []
_discovered = False


def register_prefix(prefix: str, factory) -> None:
    """Let `factory(rest)` build the class for model names of the form 'prefix:rest'."""
    _PREFIXES[prefix] = factory


def register_resolver(resolver: Callable[[str], type[Recommender] | None]) -> None:
    _RESOLVERS.append(resolver)


def register_discovery(discover: Callable[[], None]) -> None:
    _DISCOVERIES.append(discover)


# a registry name ends up in folder names (results/runs/DATASET/MODEL) and on the leaderboard
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
_PACKAGES = ("baselines", "fusion_models")  # where the built-in models live


def _builtin_class(cls: type) -> bool:
    return cls.__module__.split(".")[0] in _PACKAGES


def register(cls: type[Recommender]) -> type[Recommender]:
    """Class decorator: make a model of fusebench's packages available by its registry name
    (a class from outside is registered by loading it: `--model FILE.py:Class`)."""
    if not cls.name or cls.family not in FAMILIES:
        raise TypeError(f"{cls.__qualname__} needs a name and a family in {FAMILIES}")
    held = _REGISTRY.get(cls.name)
    if held is not None and held is not cls and (_builtin_class(held) or _builtin_class(cls)):
        raise TypeError(f"model name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def builtin_model(name: str) -> bool:
    """Whether `name` is a model of fusebench's own packages (not one loaded from outside)."""
    return name in _REGISTRY and _builtin_class(_REGISTRY[name]) and name not in _SOURCES


def register_external(cls: type[Recommender], source: dict[str, Any]) -> None:
    """Register a class loaded from outside the package (a newer version of the same source
    replaces the older one; a built-in name is refused by the loader before this)."""
    held = _SOURCES.get(cls.name)
    if held is not None and held["canonical"] != source["canonical"]:
        raise FusebenchError(f"model name {cls.name!r} of {source['spec']} is already taken by {held['spec']}")
    _REGISTRY[cls.name] = cls
    _SOURCES[cls.name] = source


def registered_sources() -> list[dict[str, Any]]:
    return list(_SOURCES.values())


def model_source(name: str) -> dict[str, Any] | None:
    """Where a model from outside the package comes from: {"spec", "path", "sha256", ...}; None
    for fusebench's own models."""
    src = _SOURCES.get(name)
    return None if src is None else {k: v for k, v in src.items() if k != "canonical"}


def _discover() -> None:
    global _discovered
    if not _discovered:
        _discovered = True
        for discover in _DISCOVERIES:
            discover()


def model_names() -> list[str]:
    """Every registered name: fusebench's models, installed packages' (entry points) and any
    loaded in this process from a file or module."""
    _discover()
    return sorted(_REGISTRY)


def campaign_models() -> list[str]:
    """What `run --all` runs without --models: fusebench's own models and installed packages'
    (not a file loaded earlier in the same process, e.g. by a notebook's previous call)."""
    _discover()
    return sorted(n for n in _REGISTRY if builtin_model(n) or (_SOURCES.get(n) or {}).get("entry_point"))


def get_model_class(name: str) -> type[Recommender]:
    """The class of a registered name, of 'prefix:NAME' (RecBole's models) or of a model spec
    ('path/to/file.py:Class', 'package.module:Class', which is imported and registered)."""
    prefix, sep, rest = name.partition(":")
    if sep and prefix in _PREFIXES:
        return _PREFIXES[prefix](rest)  # the factory raises FusebenchError for unknown names
    if name in _REGISTRY:
        return _REGISTRY[name]
    _discover()
    if name in _REGISTRY:
        return _REGISTRY[name]
    for resolve in _RESOLVERS:
        cls = resolve(name)
        if cls is not None:
            return cls
    raise FusebenchError(
        f"unknown model {name!r}; available: {', '.join(model_names())} "
        "(or your own: path/to/file.py:Class, package.module:Class)"
    )


def make_model(name: str, params: dict[str, Any] | None = None) -> Recommender:
    """Instantiate a registered model; an unknown parameter name is a user error."""
    cls = get_model_class(name)
    params = dict(params or {})
    unknown = set(params) - set(cls.param_names())
    if unknown:
        raise FusebenchError(
            f"model {name!r} has no parameter {', '.join(sorted(unknown))}; "
            f"its parameters: {', '.join(cls.param_names()) or '(none)'}"
        )
    model = cls(**params)
    model.validate()
    return model
