"""RecBole adapter: ``--model recbole:NAME`` trains any RecBole *general* recommender on our
split and is scored by our metric core.

How it works
------------
- ``get_model_class("recbole:LightGCN")`` builds (once per name) a `Recommender` subclass
  named ``recbole:LightGCN``, family ``baseline/cf``. Names are matched case-insensitively
  against ``recbole.model.general_recommender``; sequential, context-aware and
  knowledge-aware models, and unknown names, raise `FusebenchError`.
- Data: our training matrix is written as RecBole atomic files in a temporary folder
  (``fusebench.train.inter`` plus empty ``.valid``/``.test`` parts, read with
  ``benchmark_filename``) together with ``fusebench.user`` / ``fusebench.item`` listing
  every dense user and item id, so users and items with no training interaction still get a
  RecBole id. RecBole's own filters are switched off (``filter_inter_by_user_or_item:
  False``, no interaction-count intervals, no duplicate removal). Tokens are our dense ids;
  RecBole re-indexes them (internal id 0 is its padding), and the adapter keeps the explicit
  maps ``user_map_`` / ``item_map_`` (our dense id -> RecBole internal id) from
  ``dataset.field2token_id``. Validation and test interactions are never given to RecBole.
- Training follows ``run_recbole`` step by step (Config, ``init_seed``, ``create_dataset``,
  ``dataset.build``, ``create_samplers``, the train ``get_dataloader``, ``init_seed`` again,
  model, ``get_trainer``), but the benchmark owns the epoch loop: `train_epoch` runs one
  ``trainer._train_epoch`` (what RecBole computes, unchanged; NCL's E-step and dynamic
  negative sampling are reproduced from the trainers' ``fit``) and returns the summed loss
  divided by the number of batches. Non-trainable models (``ModelType.TRADITIONAL``: Pop,
  ItemKNN, EASE, SLIMElastic, ADMMSLIM, ...; and general models whose ``calculate_loss``
  returns a dummy parameter, e.g. NCEPLRec) are one-shot: ``fit`` runs the single epoch
  RecBole's ``TraditionalTrainer`` runs.
- Scoring: ``model.full_sort_predict`` on an Interaction holding our users' RecBole ids; the
  columns are reordered back to our dense item order (float32, ``(len(users), n_items)``).
  Models without ``full_sort_predict`` (NeuMF, NNCF, ConvNCF) are scored with ``predict`` on
  every (user, item) pair, RecBole's own fallback.
- State: `get_state` is a deep copy of ``state_dict()`` plus RecBole's
  ``other_parameter()`` (e.g. LightGCN's cached embeddings), exactly what RecBole itself
  checkpoints.

Hyper-parameters: iterative models take ``embedding_size=64, learning_rate=0.001,
train_batch_size=2048, epochs=300`` (RecBole's defaults) and ``config``: a JSON object of
extra RecBole config keys (e.g. ``'{"n_layers": 3, "reg_weight": 1e-4}'``). One-shot models
take only ``config`` (e.g. ``'{"k": 50}'`` for ItemKNN). Keys that decide the data layout,
seed, device or files, and the constructor's own parameters, are refused in ``config``.

Workarounds for RecBole 1.2.1 on current libraries (none changes what it computes), all
scoped to the duration of a RecBole call (`_recbole_scope`):
- ``Config.compatibility_settings`` assigns ``np.float``/``np.int``/``np.bool``/... globally:
  the aliases are provided while RecBole runs and removed again afterwards (on numpy 2, where
  ``np.float_`` is gone and the method would crash, it is replaced by an equivalent that uses
  the surviving names);
- ``Config`` reads ``sys.argv`` (``--key=value`` would silently change the config) and sets
  ``CUDA_VISIBLE_DEVICES``: argv is emptied and the variable restored; the device comes from
  `resolve_device`;
- ``Trainer.__init__`` creates a tensorboard ``SummaryWriter`` under ``./log_tensorboard``:
  replaced by a no-op writer; ``checkpoint_dir`` points into the temporary folder and
  ``init_logger`` (which writes ``./log``) is never called; RecBole's (root-logger) messages
  up to WARNING and its deprecation warnings (``torch.cuda.amp.GradScaler``) are silenced;
- RecBole's ``torch.load`` calls (checkpoint resume, saved datasets/dataloaders, pretrained
  NeuMF/RaCT/ConvNCF/NAIS weights) are never reached by this adapter; the ``torch.load``
  ``weights_only`` default (torch >= 2.6) is therefore not patched;
- ``thop`` (FLOPs) and ``ray`` (hyper-parameter tuning) are never imported.

RecBole is imported lazily, only inside functions: this module imports fine without it and
the factory then raises `FusebenchError("recbole is not installed ...")`.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from datasets.errors import FusebenchError

from .base import FitData, Recommender, register_prefix
from .params import POSITIVE, POSITIVE_INT

PREFIX = "recbole"
DATASET_TOKEN = "fusebench"  # a name with no RecBole preset (never "ml-100k": RecBole has a yaml for it)

# config keys the adapter owns: data layout, filtering, seed, device and files
RESERVED_KEYS = frozenset(
    {
        "model",
        "dataset",
        "data_path",
        "benchmark_filename",
        "load_col",
        "unload_col",
        "unused_col",
        "additional_feat_suffix",
        "USER_ID_FIELD",
        "ITEM_ID_FIELD",
        "filter_inter_by_user_or_item",
        "user_inter_num_interval",
        "item_inter_num_interval",
        "val_interval",
        "rm_dup_inter",
        "alias_of_user_id",
        "alias_of_item_id",
        "seed",
        "reproducibility",
        "checkpoint_dir",
        "device",
        "gpu_id",
        "use_gpu",
        "save_dataset",
        "dataset_save_path",
        "save_dataloaders",
        "dataloaders_save_path",
        "show_progress",
        "log_wandb",
        "local_rank",
        "nproc",
        "world_size",
        "worker",
        "preload_weight",
        # keys that make RecBole torch.load a file of the user's choosing (a pickle can run code)
        "use_pretrain",
        "mf_pretrain_path",
        "mlp_pretrain_path",
        "pretrain_path",
        "pre_model_path",
        "warm_up",
    }
)

_NUMPY_ALIASES = {
    "bool": "bool_",
    "int": "int_",
    "float": "float64",
    "complex": "complex128",
    "object": "object_",
    "str": "str_",
    "long": "int_",
    "unicode": "str_",
}


def _require_recbole():
    try:
        import recbole  # noqa: F401
    except ImportError:
        raise FusebenchError(
            "recbole is not installed; `pip install recbole==1.2.1` (numpy<2, scipy<1.13) to use recbole:NAME models"
        ) from None
    return recbole


# --------------------------------------------------------------------------- scoped workarounds
class _NullWriter:
    """Stands in for tensorboard's SummaryWriter (RecBole creates one in ./log_tensorboard)."""

    def __getattr__(self, name):
        return lambda *a, **k: None


@contextlib.contextmanager
def _recbole_scope():
    """Everything RecBole 1.2.1 needs on current libraries, undone on exit (see module doc)."""
    import recbole.trainer.trainer as rt
    from recbole.config import Config

    added = [a for a in _NUMPY_ALIASES if a not in np.__dict__]
    for alias in added:
        setattr(np, alias, getattr(np, _NUMPY_ALIASES[alias]))
    old_compat = Config.__dict__.get("compatibility_settings")
    Config.compatibility_settings = lambda self: None  # the aliases are already in place
    old_tb = rt.get_tensorboard
    rt.get_tensorboard = lambda logger: _NullWriter()
    old_argv = sys.argv
    sys.argv = old_argv[:1] if old_argv else ["fusebench"]
    old_cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    old_disable = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        logging.disable(old_disable)
        if old_cvd is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = old_cvd
        sys.argv = old_argv
        rt.get_tensorboard = old_tb
        if old_compat is not None:
            Config.compatibility_settings = old_compat
        for alias in added:
            np.__dict__.pop(alias, None)


# --------------------------------------------------------------------------- model lookup
_OTHER_KINDS = {
    "recbole.model.sequential_recommender": "a sequential",
    "recbole.model.context_aware_recommender": "a context-aware",
    "recbole.model.knowledge_aware_recommender": "a knowledge-aware",
    "recbole.model.exlib_recommender": "an external-library",
}


def _model_classes(module_name: str) -> dict[str, type]:
    import importlib

    try:
        mod = importlib.import_module(module_name)
    except ImportError:
        return {}
    from recbole.model.abstract_recommender import AbstractRecommender

    return {
        n: c
        for n, c in vars(mod).items()
        if isinstance(c, type) and issubclass(c, AbstractRecommender) and c.__module__.startswith(module_name)
    }


def general_model_names() -> list[str]:
    """RecBole's general recommenders (the names `recbole:NAME` accepts)."""
    _require_recbole()
    with _recbole_scope():
        return sorted(_model_classes("recbole.model.general_recommender"))


def _resolve(name: str) -> tuple[str, type]:
    """Canonical RecBole name and class of a general model (case-insensitive)."""
    with _recbole_scope():
        general = _model_classes("recbole.model.general_recommender")
        by_lower = {n.lower(): n for n in general}
        if name in general:
            return name, general[name]
        if name.lower() in by_lower:
            canon = by_lower[name.lower()]
            return canon, general[canon]
        for module, kind in _OTHER_KINDS.items():
            others = {n.lower(): n for n in _model_classes(module)}
            if name.lower() in others:
                raise FusebenchError(
                    f"recbole:{name}: {others[name.lower()]} is {kind} RecBole model; only general "
                    f"(collaborative-filtering) models are supported: {', '.join(sorted(general))}"
                )
    raise FusebenchError(f"unknown RecBole model {name!r}; general models: {', '.join(sorted(general))}")


def _is_trainable(rb_cls: type) -> bool:
    """False for models RecBole does not train by gradient: TRADITIONAL ones and general ones
    whose ``calculate_loss`` only returns a dummy parameter (RecBole's idiom, e.g. NCEPLRec)."""
    from recbole.utils import ModelType

    if getattr(rb_cls, "type", None) == ModelType.TRADITIONAL:
        return False
    try:
        src = inspect.getsource(rb_cls.calculate_loss)
    except (OSError, TypeError):
        return True
    body = [ln.strip() for ln in src.splitlines()[1:] if ln.strip() and not ln.strip().startswith(("#", '"', 'r"'))]
    return not (len(body) == 1 and body[0].replace(" ", "") == "returntorch.nn.Parameter(torch.zeros(1))")


# --------------------------------------------------------------------------- atomic files
def _write_train_files(folder: Path, train: sp.csr_matrix) -> None:
    """``fusebench.{train,valid,test}.inter`` (valid/test empty) plus ``.user``/``.item``
    listing every dense id (tokens = our dense ids as strings)."""
    folder.mkdir(parents=True, exist_ok=True)
    coo = train.tocoo()
    order = np.lexsort((coo.col, coo.row))
    users, items = coo.row[order], coo.col[order]
    header = "user_id:token\titem_id:token\n"
    with open(folder / f"{DATASET_TOKEN}.train.inter", "w", encoding="utf-8") as fh:
        fh.write(header)
        fh.writelines(f"{u}\t{i}\n" for u, i in zip(users.tolist(), items.tolist()))
    for part in ("valid", "test"):
        (folder / f"{DATASET_TOKEN}.{part}.inter").write_text(header, encoding="utf-8")
    (folder / f"{DATASET_TOKEN}.user").write_text(
        "user_id:token\n" + "".join(f"{u}\n" for u in range(train.shape[0])), encoding="utf-8"
    )
    (folder / f"{DATASET_TOKEN}.item").write_text(
        "item_id:token\n" + "".join(f"{i}\n" for i in range(train.shape[1])), encoding="utf-8"
    )


def _parse_config(config: str, own: set[str]) -> dict[str, Any]:
    if config is None or config == "":
        return {}
    if isinstance(config, dict):
        extra = dict(config)
    else:
        try:
            extra = json.loads(config)
        except (TypeError, json.JSONDecodeError) as exc:
            raise FusebenchError(f"config must be a JSON object of RecBole config keys: {exc}") from None
    if not isinstance(extra, dict):
        raise FusebenchError(f"config must be a JSON object of RecBole config keys, got {config!r}")
    bad = sorted(set(extra) & RESERVED_KEYS)
    if bad:
        raise FusebenchError(
            f"config keys {bad} are set by the adapter or load files (data layout, seed, device, "
            "files, pretrained weights)"
        )
    dup = sorted(set(extra) & own)
    if dup:
        raise FusebenchError(f"config keys {dup} are model parameters: pass them as parameters instead")
    return extra


# --------------------------------------------------------------------------- the model classes
class RecBoleRecommender(Recommender):
    """Base of the generated ``recbole:NAME`` classes (see module doc)."""

    family = "baseline/cf"
    recbole_model: ClassVar[str] = ""
    _recbole_keys: ClassVar[tuple[str, ...]] = ()  # constructor params passed to RecBole as is
    # config: a JSON object (str) or a dict of extra RecBole keys; its keys are checked in validate
    _parameter_constraints = {"config": [str, dict, None]}

    def _config_dict(self, data: FitData, tmp: Path, device) -> dict[str, Any]:
        extra = _parse_config(self.config, set(self.param_names()))
        cfg = {
            **extra,
            "data_path": str(tmp),
            "benchmark_filename": ["train", "valid", "test"],
            "load_col": {"inter": ["user_id", "item_id"], "user": ["user_id"], "item": ["item_id"]},
            "USER_ID_FIELD": "user_id",
            "ITEM_ID_FIELD": "item_id",
            "filter_inter_by_user_or_item": False,
            "user_inter_num_interval": None,
            "item_inter_num_interval": None,
            "val_interval": None,
            "rm_dup_inter": None,
            "seed": int(data.seed),
            "reproducibility": True,
            "checkpoint_dir": str(tmp / "saved"),
            "save_dataset": False,
            "save_dataloaders": False,
            "show_progress": False,
            "log_wandb": False,
            "worker": 0,
            "use_gpu": device.type == "cuda",
            "gpu_id": "" if device.type != "cuda" else str(device.index or 0),
        }
        for k in self._recbole_keys:
            cfg[k] = getattr(self, k)
        return cfg

    def validate(self) -> None:
        super().validate()
        _parse_config(self.config, set(self.param_names()))  # reserved or file-loading keys: refused now

    def init(self, data: FitData) -> None:
        _require_recbole()
        from .torch_base import resolve_device

        self.validate()
        device = resolve_device(data.device)
        tmp = Path(tempfile.mkdtemp(prefix="fusebench-recbole-"))
        try:
            _write_train_files(tmp / DATASET_TOKEN, data.train)
            with _recbole_scope():
                try:
                    self._init_recbole(data, tmp, device)
                except ImportError as exc:  # e.g. NCL needs faiss
                    raise FusebenchError(f"{self.name} needs a package that is not installed: {exc}") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.n_users_, self.n_items_ = data.n_users, data.n_items
        self.epoch_ = 0

    def _init_recbole(self, data: FitData, tmp: Path, device) -> None:
        from recbole.config import Config
        from recbole.data import create_dataset
        from recbole.data.utils import create_samplers, get_dataloader
        from recbole.utils import get_model, get_trainer, init_seed

        cfg = self._config_dict(data, tmp, device)
        old_cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
        try:
            config = Config(model=self.recbole_model, dataset=DATASET_TOKEN, config_dict=cfg)
        except (ValueError, KeyError, TypeError, NotImplementedError) as exc:
            raise FusebenchError(f"{self.name}: RecBole rejected the config: {exc}") from None
        finally:  # Config sets CUDA_VISIBLE_DEVICES: undo before anything initialises CUDA
            if old_cvd is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = old_cvd
        config["device"] = device
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config)
        built = dataset.build()
        try:
            train_sampler, _, _ = create_samplers(config, dataset, built)
        except ValueError as exc:  # e.g. a user interacted with every item: no negative to sample
            raise FusebenchError(f"{self.name}: RecBole cannot sample negatives here: {exc}") from None
        self._train_data = get_dataloader(config, "train")(config, built[0], train_sampler, shuffle=config["shuffle"])
        # our dense id -> RecBole internal id (0 is RecBole's padding id)
        u_tok, i_tok = dataset.field2token_id["user_id"], dataset.field2token_id["item_id"]
        self.user_map_ = np.array([u_tok[str(u)] for u in range(data.n_users)], dtype=np.int64)
        self.item_map_ = np.array([i_tok[str(i)] for i in range(data.n_items)], dtype=np.int64)
        init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
        self.module_ = get_model(config["model"])(config, self._train_data._dataset).to(device)
        self._trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, self.module_)
        if config["train_neg_sample_args"].get("dynamic", False):
            self._train_data.get_model(self.module_)
        self._config = config
        self.device_ = device

    def train_epoch(self) -> float:
        with _recbole_scope():
            m_step = getattr(self._trainer, "num_m_step", None)  # NCLTrainer.fit's E-step
            try:
                if m_step and self.epoch_ % m_step == 0 and hasattr(self.module_, "e_step"):
                    self.module_.e_step()
                loss = self._trainer._train_epoch(self._train_data, self.epoch_, show_progress=False)
            except ImportError as exc:  # e.g. NCL's E-step imports faiss
                raise FusebenchError(f"{self.name} needs a package that is not installed: {exc}") from None
        self.epoch_ += 1
        if isinstance(loss, tuple):
            loss = sum(loss)
        n_batches = max(1, len(self._train_data))
        return float(loss if loss is not None else 0.0) / n_batches

    def score(self, users: np.ndarray) -> np.ndarray:
        import torch
        from recbole.data.interaction import Interaction

        users = np.asarray(users, dtype=np.int64)
        with _recbole_scope(), torch.no_grad():
            self.module_.eval()
            rb_users = torch.from_numpy(self.user_map_[users])
            try:
                scores = self.module_.full_sort_predict(Interaction({"user_id": rb_users}).to(self.device_))
                scores = scores.view(len(users), -1)
                out = scores[:, torch.from_numpy(self.item_map_).to(scores.device)]
            except NotImplementedError:
                # no full_sort_predict (NeuMF, NNCF, ConvNCF): `predict` on every (user, item)
                # pair, as RecBole's Trainer._full_sort_batch_eval falls back to
                out = self._predict_pairs(rb_users, torch.from_numpy(self.item_map_))
            return out.detach().float().cpu().numpy()

    def _predict_pairs(self, rb_users, rb_items, max_pairs: int = 1 << 20):
        import torch
        from recbole.data.interaction import Interaction

        rows = []
        step = max(1, max_pairs // max(1, len(rb_items)))
        for lo in range(0, len(rb_users), step):
            u = rb_users[lo : lo + step]
            inter = Interaction(
                {
                    "user_id": u.repeat_interleave(len(rb_items)),
                    "item_id": rb_items.repeat(len(u)),
                }
            ).to(self.device_)
            rows.append(self.module_.predict(inter).view(len(u), len(rb_items)))
        return torch.cat(rows, dim=0)

    def get_state(self) -> Any:
        return copy.deepcopy({"state_dict": self.module_.state_dict(), "other": self.module_.other_parameter()})

    def set_state(self, state: Any) -> None:
        self.module_.load_state_dict(state["state_dict"])
        self.module_.load_other_parameter(copy.deepcopy(state["other"]))

    def n_parameters(self) -> int:
        """Trainable parameters (RecBole's dummy parameters of non-trainable models excluded);
        non-trainable models add the size of the state RecBole keeps for scoring
        (``other_parameter``: tensors/arrays by size, sparse matrices by stored entries)."""
        total = sum(p.numel() for n, p in self.module_.named_parameters() if n not in ("fake_loss", "dummy_param"))
        if not self.iterative:
            for v in (self.module_.other_parameter() or {}).values():
                if sp.issparse(v):
                    total += v.nnz
                elif hasattr(v, "numel"):
                    total += int(v.numel())
                elif isinstance(v, np.ndarray):
                    total += v.size
        return int(total)


class RecBoleIterative(RecBoleRecommender):
    iterative = True
    _recbole_keys = ("embedding_size", "learning_rate", "train_batch_size", "epochs")
    _parameter_constraints = {
        "embedding_size": [POSITIVE_INT],
        "learning_rate": [POSITIVE],
        "train_batch_size": [POSITIVE_INT],
        "epochs": [POSITIVE_INT],
    }

    def __init__(
        self,
        embedding_size: int = 64,
        learning_rate: float = 0.001,
        train_batch_size: int = 2048,
        epochs: int = 300,
        config: str = "",
    ):
        self.embedding_size = embedding_size
        self.learning_rate = learning_rate
        self.train_batch_size = train_batch_size
        self.epochs = epochs
        self.config = config

    @classmethod
    def search_space(cls, trial) -> dict[str, Any]:
        return {
            "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
            "embedding_size": trial.suggest_categorical("embedding_size", [32, 64, 128]),
        }


class RecBoleOneShot(RecBoleRecommender):
    """RecBole models computed in one pass (TraditionalTrainer runs exactly one epoch)."""

    iterative = False

    def __init__(self, config: str = ""):
        self.config = config

    def fit(self, data: FitData) -> RecBoleOneShot:
        self.init(data)
        self.train_epoch()
        return self


_CLASSES: dict[str, type[RecBoleRecommender]] = {}


def recbole_model_class(name: str) -> type[RecBoleRecommender]:
    """The `Recommender` class for RecBole general model ``name`` (built once, then cached)."""
    _require_recbole()
    if not name:
        raise FusebenchError("recbole: needs a RecBole model name, e.g. recbole:LightGCN")
    if name in _CLASSES:
        return _CLASSES[name]
    canon, rb_cls = _resolve(name)
    if canon not in _CLASSES:
        with _recbole_scope():
            base = RecBoleIterative if _is_trainable(rb_cls) else RecBoleOneShot
        _CLASSES[canon] = type(
            f"RecBole{canon}",
            (base,),
            {
                "name": f"{PREFIX}:{canon}",
                "recbole_model": canon,
                "__module__": __name__,
                "__doc__": f"RecBole's {canon} ({rb_cls.__module__}) trained on our split, scored by our metric core.",
            },
        )
    _CLASSES[name] = _CLASSES[canon]
    return _CLASSES[canon]


register_prefix(PREFIX, recbole_model_class)
