"""Shared machinery for torch models: device choice, seeding, the epoch loop, state keeping.

A torch model subclasses `TorchRecommender`, builds its `nn.Module` in `build(data)`, and
defines `batch_loss(*batch)`; by default a batch is (users, positives, sampled negatives)
covering every training pair once per epoch, and a model with other batches (e.g. user rows
for an autoencoder) overrides `epoch_batches()`. The epoch loop, optimiser, sampling,
best-state snapshots and parameter counting live here once.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from datasets.errors import FusebenchError
from datasets.memory import require

from .base import FitData, Recommender
from .params import NON_NEGATIVE, POSITIVE, POSITIVE_INT
from .sampling import NegativeSampler


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when present, else CPU; anything else must name an available device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise FusebenchError(f"unknown device {device!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FusebenchError(f"device {device!r} requested but CUDA is not available")
    return dev


def seed_everything(seed: int) -> np.random.Generator:
    # Without this, CPU kernels such as the backward of `table[index]` (an accumulating
    # index_put) sum repeated rows in a thread-dependent order: with 2+ threads, two runs of one
    # seed differed in the last bits (lightgcn on ml-100k, measured). The deterministic kernels
    # give the single-thread results bit for bit at any thread count (measured), so records made
    # with one thread per worker are unchanged. warn_only: a CUDA op without a deterministic
    # kernel warns instead of stopping the run.
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return np.random.default_rng(seed)


def item_rows(fn, n_items: int, *idx: torch.Tensor, dim: int = 0) -> list[torch.Tensor]:
    """`fn(idx)` item vectors for each index tensor (items along axis `dim`), computed once per
    distinct item of the batch and gathered: a batch of thousands of (positive, negative) pairs
    repeats most items, and the item tower is the dearest part of a fusion model's step.
    `fn(None)` (every item, in order) is used when the batch holds the whole catalogue."""
    uniq, inv = torch.unique(torch.cat(idx), return_inverse=True)
    q = fn(None) if len(uniq) == n_items else fn(uniq)
    return list(q.index_select(dim, inv).split([len(i) for i in idx], dim))


def embedding_space(trial) -> dict:
    """The Optuna space shared by embedding models: size, learning rate, L2 weight decay."""
    return {
        "embedding_size": trial.suggest_categorical("embedding_size", [32, 64, 128]),
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-8, 1e-3, log=True),
    }


class TorchRecommender(Recommender):
    """Base for iterative torch models trained with sampled pairwise (BPR-style) batches."""

    iterative = True

    # subclasses set these in their constructors (they are hyper-parameters)
    epochs: int
    batch_size: int
    learning_rate: float
    # the training parameters every torch model shares, and the embedding width most have
    _parameter_constraints = {
        "epochs": [POSITIVE_INT],
        "batch_size": [POSITIVE_INT],
        "learning_rate": [POSITIVE],
        "weight_decay": [NON_NEGATIVE],
        "embedding_size": [POSITIVE_INT],
    }

    def build(self, data: FitData) -> torch.nn.Module:
        raise NotImplementedError

    def batch_loss(self, *batch: torch.Tensor) -> torch.Tensor:
        """Mean loss of one batch (tensors already on the model's device)."""
        raise NotImplementedError

    def epoch_batches(self):
        """One epoch of numpy batches; default: BPR triples (user, positive, negative)."""
        return self._sampler.epoch_triples(self.batch_size)

    def init(self, data: FitData) -> None:
        self.validate()
        self.device_ = resolve_device(data.device)
        self._rng = seed_everything(data.seed)
        self._sampler = NegativeSampler(data.train, self._rng)
        dim = getattr(self, "embedding_size", None)
        if isinstance(dim, int) and self.device_.type == "cpu":
            # user and item tables, their gradients and Adam's two moments: a floor, not the whole model
            require(
                4 * 4 * dim * (data.n_users + data.n_items),
                f"{self.name} with embedding_size={dim:,}",
                "choose a smaller embedding_size",
            )
        self.module_ = self.build(data).to(self.device_)
        # Adam's weight decay only for a model with a `weight_decay` parameter; the others (LightGCN
        # and the published models) regularise in their loss, as their reference code does
        decay = self.param("weight_decay", 0.0)
        self._optimizer = torch.optim.Adam(self.param_groups(), lr=self.learning_rate, weight_decay=decay)

    def param_groups(self):
        """What Adam optimises: the module's parameters, or groups of them with their own rates."""
        return self.module_.parameters()

    def train_epoch(self) -> float:
        self.module_.train()
        total, n = 0.0, 0
        for batch in self.epoch_batches():
            tensors = [torch.as_tensor(b).to(self.device_) for b in batch]
            loss = self.batch_loss(*tensors)
            self._optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._optimizer.step()
            total += float(loss.detach()) * len(batch[0])
            n += len(batch[0])
        return total / max(n, 1)

    @torch.no_grad()
    def score(self, users: np.ndarray) -> np.ndarray:
        self.module_.eval()
        out = self.score_tensor(torch.from_numpy(np.asarray(users, dtype=np.int64)).to(self.device_))
        return out.float().cpu().numpy()

    def score_tensor(self, users: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def get_state(self) -> Any:
        return copy.deepcopy(self.module_.state_dict())

    def set_state(self, state: Any) -> None:
        self.module_.load_state_dict(state)

    def n_parameters(self) -> int:
        return int(sum(p.numel() for p in self.module_.parameters()))


class CachedScoring:
    """Scoring from final embeddings that a pass over the whole graph (or catalogue) makes: the
    (user, item) embeddings are computed once per evaluation, not once per batch of users, and
    kept until the parameters change (every training epoch, a restored state). Mixed in before
    the torch base; subclasses implement `final_embeddings`."""

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(users (n_users, d), items (n_items, d)) as scoring uses them."""
        raise NotImplementedError

    def init(self, data: FitData) -> None:
        self._cache = None
        super().init(data)

    def train_epoch(self) -> float:
        self._cache = None
        return super().train_epoch()

    def set_state(self, state: Any) -> None:
        super().set_state(state)
        self._cache = None

    def score_tensor(self, users: torch.Tensor) -> torch.Tensor:
        if self._cache is None:
            self._cache = tuple(t.detach() for t in self.final_embeddings())
        u, i = self._cache
        return u[users] @ i.T
