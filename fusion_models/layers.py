"""Shared building blocks of the fusion models.

`prepare_features` turns the selected modalities into float32 matrices ready for a model (each
block optionally centred and L2-normalised per item, like `baselines.modalities.stack_features`
but kept per modality). `ModalityEncoders` holds those matrices as buffers (they move with
`.to(device)` but stay out of the state dict and the parameter count: they are input data) and
one projection head per modality to a common dimension. `FusionRecommender` is the common base
of the fusion models (modality selection, validation, `used_modalities`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from baselines.base import FitData
from baselines.modalities import l2_normalize_rows, select_features
from baselines.torch_base import TorchRecommender
from datasets.errors import FusebenchError


def prepare_features(selected: dict[str, np.ndarray], normalize: bool = True, center: bool = False) -> dict[str, np.ndarray]:
    """Per modality: optionally centred (column means removed), then optionally L2-normalised
    per item; float32, C-contiguous; the selection order is kept."""
    if not selected:
        raise FusebenchError("no feature set selected")
    out = {}
    for name, x in selected.items():
        x = np.asarray(x, dtype=np.float64)
        if center:
            x = x - x.mean(axis=0, keepdims=True)
        x = l2_normalize_rows(x) if normalize else x.astype(np.float32)
        out[name] = np.ascontiguousarray(x, dtype=np.float32)
    return out


class ModalityEncoders(nn.Module):
    """One head per modality: Linear(d_m, dim) [+ LeakyReLU] [+ dropout].

    `forward(idx)` returns a (n_modalities, len(idx), dim) tensor; `idx=None` means all items.
    Works for any number of modalities of any dimension (all with the same number of rows).
    """

    def __init__(self, features: dict[str, np.ndarray], dim: int, activation: bool = False,
                 dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if not features:
            raise FusebenchError("ModalityEncoders needs at least one modality")
        if not dropout >= 0 or not dropout < 1:
            raise FusebenchError(f"dropout must be in [0, 1), got {dropout!r}")
        self.names = list(features)
        rows = {np.asarray(x).shape[0] for x in features.values()}
        if len(rows) != 1:
            raise FusebenchError(f"feature sets have different numbers of rows: {sorted(rows)}")
        self.n_items = rows.pop()
        self.heads = nn.ModuleList()
        for i, (name, x) in enumerate(features.items()):
            x = np.ascontiguousarray(x, dtype=np.float32)
            if x.ndim != 2 or x.shape[1] == 0:
                raise FusebenchError(f"feature set {name!r} must be a 2-D (n_items, d) array, got shape {x.shape}")
            # buffers by position: modality names may contain '/' (not allowed in buffer names)
            self.register_buffer(f"feat{i}", torch.from_numpy(x), persistent=False)
            layers: list[nn.Module] = [nn.Linear(x.shape[1], dim, bias=bias)]
            nn.init.xavier_normal_(layers[0].weight)
            if bias:
                nn.init.zeros_(layers[0].bias)
            if activation:
                layers.append(nn.LeakyReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            self.heads.append(nn.Sequential(*layers))

    def __len__(self) -> int:
        return len(self.names)

    def feature(self, m: int) -> torch.Tensor:
        return getattr(self, f"feat{m}")

    def encode(self, m: int, idx: torch.Tensor | None = None) -> torch.Tensor:
        """(len(idx) or n_items, dim): modality `m` projected."""
        f = self.feature(m)
        return self.heads[m](f if idx is None else f[idx])

    def forward(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        return torch.stack([self.encode(m, idx) for m in range(len(self.names))])


class FusionRecommender(TorchRecommender):
    """Common face of the feature-reading fusion models: modality selection and validation at
    the top of `init`, the selected names recorded in `modalities_`, `used_modalities()`.

    Subclasses set `embedding_size`, `modalities`, `normalize_features` (and the usual
    TorchRecommender hyper-parameters) in their constructors, may extend `validate()`, and read
    the prepared per-modality matrices from `self._features` in `build`.
    """

    family = "fusion"
    modalities: str = "all"
    normalize_features: bool = True
    embedding_size: int = 64

    def validate(self) -> None:
        self._check_positive(embedding_size=self.embedding_size)
        if isinstance(self.embedding_size, bool) or int(self.embedding_size) != self.embedding_size:
            raise FusebenchError(f"parameter embedding_size must be an integer, got {self.embedding_size!r}")

    def init(self, data: FitData) -> None:
        # parameter and feature validation first, before any state is built
        self.validate()
        selected = select_features(data.features, self.modalities, n_items=data.n_items)
        self._features = prepare_features(selected, normalize=bool(self.normalize_features))
        self.modalities_ = list(selected)
        super().init(data)

    def used_modalities(self) -> list[str]:
        return list(getattr(self, "modalities_", []))
