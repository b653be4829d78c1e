"""Trainable modality encoders over raw inputs (`datasets.content_inputs`), for the e2e- models.

Each tower is a body (trained with the ranking loss, or frozen) and the fusion models' usual
projection head to the common width, so a frozen body is exactly a frozen feature extractor
under the same head:

- `TextTower`: token embeddings (all-MiniLM-L6-v2's input embeddings of the tokens the
  catalogue uses, or random), mean-pooled over the non-padding tokens, or first passed
  through one Transformer encoder layer with learned positions;
- `ImageTower`: a small CNN, three stride-2 3x3 convolutions (16, 32, 64 channels) with
  ReLU, global average pooling;
- `AudioTower`: a one-layer GRU over the log-mel frame sequence (bands standardised with the
  catalogue's statistics), its last hidden state;
- `VideoTower`: a (2+1)D CNN (Tran et al., CVPR 2018): two blocks of a spatial 1x3x3
  stride-2 convolution and a temporal 3x1x1 one, global average pooling over time and space.

`ContentEncoders` holds every selected modality's inputs (non-persistent buffers: input data,
like the frozen features of `layers.ModalityEncoders`), its presence mask and its tower, with
the interface of `ModalityEncoders`, so every fusion strategy runs on it unchanged. A training
step encodes only the items of its batch (the strategies ask for the distinct items,
`torch_base.item_rows`); out of training every item is encoded once, in chunks, and kept until
the weights change (the next training step or a restored state). A frozen body is run once,
at construction, and only its head trains.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from datasets.content_inputs import Inputs
from datasets.errors import FusebenchError

from .layers import MaskedModalities

TEXT_POOLING = ("mean", "transformer")
TEXT_INIT = ("minilm", "random")
CHUNK = 512  # items per forward pass when every item is encoded


class TextTower(nn.Module):
    def __init__(self, ids: np.ndarray, init: str, pooling: str, width: int):
        super().__init__()
        # a compact vocabulary of the ids the catalogue uses (0 stays padding): the full 30,522
        # rows would cost Adam's step on rows no item can ever reach
        ids = ids[:, : max(int((ids > 0).sum(axis=1).max(initial=0)), 1)]  # no all-padding columns
        vocab, compact = np.unique(ids, return_inverse=True)
        if vocab[0] != 0:
            vocab, compact = np.concatenate([[0], vocab]), compact + 1
        self.compact = compact.reshape(ids.shape).astype(np.int64)
        if init == "minilm":
            from datasets.encoders.text import minilm_token_embeddings

            table = minilm_token_embeddings()[vocab]
            table[0] = 0.0
            self.embed = nn.Embedding.from_pretrained(torch.from_numpy(table), freeze=False, padding_idx=0)
        else:
            self.embed = nn.Embedding(len(vocab), width, padding_idx=0)
            nn.init.normal_(self.embed.weight, std=width**-0.5)
            with torch.no_grad():
                self.embed.weight[0] = 0.0
        self.out_dim = self.embed.embedding_dim
        self.layer = None
        if pooling == "transformer":
            d = self.out_dim
            heads = next(h for h in (8, 4, 2, 1) if d % h == 0)
            self.position = nn.Parameter(torch.zeros(ids.shape[1], d))
            self.layer = nn.TransformerEncoderLayer(d, heads, 2 * d, dropout=0.0, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer is None:
            # the mean over non-padding tokens without materialising (n, tokens, width)
            return F.embedding_bag(x, self.embed.weight, mode="mean", padding_idx=0)
        keep = x > 0
        pad = ~keep
        pad[:, 0] = False  # an item without tokens is masked by the model; keep one position visible
        e = self.layer(self.embed(x) + self.position, src_key_padding_mask=pad)
        w = keep.unsqueeze(-1).to(e.dtype)
        return (e * w).sum(1) / w.sum(1).clamp(min=1.0)


class ImageTower(nn.Module):
    out_dim = 64

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, 2, 1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float() / 127.5 - 1.0)


class AudioTower(nn.Module):
    out_dim = 64

    def __init__(self, frames: np.ndarray, mask: np.ndarray):
        super().__init__()
        present = frames[mask].astype(np.float64) if mask.any() else np.zeros((1, *frames.shape[1:]))
        self.register_buffer("mean", torch.from_numpy(present.mean(axis=(0, 1)).astype(np.float32)))
        self.register_buffer("std", torch.from_numpy(present.std(axis=(0, 1)).astype(np.float32) + 1e-3))
        self.rnn = nn.GRU(frames.shape[2], self.out_dim, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn((x.float() - self.mean) / self.std)
        return out.mean(1)


class VideoTower(nn.Module):
    out_dim = 32

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv3d(3, 16, (1, 3, 3), (1, 2, 2), (0, 1, 1)),
            nn.ReLU(),
            nn.Conv3d(16, 16, (3, 1, 1), 1, (1, 0, 0)),
            nn.ReLU(),
            nn.Conv3d(16, 32, (1, 3, 3), (1, 2, 2), (0, 1, 1)),
            nn.ReLU(),
            nn.Conv3d(32, 32, (3, 1, 1), 1, (1, 0, 0)),
            nn.ReLU(),
            nn.AdaptiveAvgPool3d(1),
            nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (n, frames, 3, h, w) uint8 -> (n, 3, frames, h, w) in [-1, 1]
        return self.net(x.float().permute(0, 2, 1, 3, 4) / 127.5 - 1.0)


def build_tower(modality: str, inputs: Inputs, text_init: str, text_pooling: str, width: int) -> nn.Module:
    if modality == "text":
        return TextTower(inputs.array, text_init, text_pooling, width)
    if modality == "image":
        return ImageTower()
    if modality == "audio":
        return AudioTower(inputs.array, inputs.mask)
    if modality == "video":
        return VideoTower()
    raise FusebenchError(f"no trainable encoder for modality {modality!r}")


class ContentEncoders(MaskedModalities):
    """Trainable towers over raw inputs with the interface of `layers.ModalityEncoders`."""

    def __init__(
        self,
        inputs: dict[str, Inputs],
        dim: int,
        freeze: bool = False,
        text_init: str = "minilm",
        text_pooling: str = "mean",
        width: int = 64,
    ):
        super().__init__()
        if not inputs:
            raise FusebenchError("ContentEncoders needs at least one modality")
        self.names = list(inputs)
        self.n_items = len(next(iter(inputs.values())).mask)
        self.freeze = bool(freeze)
        self.bodies = nn.ModuleList()
        self.heads = nn.ModuleList()
        self._cache: dict[int, torch.Tensor] = {}
        for i, (name, inp) in enumerate(inputs.items()):
            tower = build_tower(name, inp, text_init, text_pooling, width)
            x = tower.compact if name == "text" else inp.array  # text: ids in the compact vocabulary
            self.register_mask(i, np.asarray(inp.mask, dtype=bool))
            head = nn.Linear(tower.out_dim, dim)
            nn.init.xavier_normal_(head.weight)
            nn.init.zeros_(head.bias)
            self.heads.append(head)
            if self.freeze:
                # the frozen body's output is a fixed feature matrix: computed once, not kept as weights
                self.register_buffer(
                    f"input{i}", _encode_all(tower, torch.from_numpy(np.ascontiguousarray(x))), persistent=False
                )
                self.bodies.append(nn.Identity())
            else:
                self.register_buffer(f"input{i}", torch.from_numpy(np.ascontiguousarray(x)), persistent=False)
                self.bodies.append(tower)

    # ---- the weights change (a training step follows, or a state is loaded): the all-item
    # encodings are stale; switching to eval mode (every `score` call) keeps them
    def train(self, mode: bool = True):
        if mode:
            self._cache.clear()
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs):
        self._cache.clear()
        return super()._load_from_state_dict(*args, **kwargs)

    def _project(self, m: int, x: torch.Tensor) -> torch.Tensor:
        return self.heads[m](self.bodies[m](x))

    def encode(self, m: int, idx: torch.Tensor | None = None) -> torch.Tensor:
        """(len(idx) or n_items, dim): modality `m` through its tower; zero where it is missing."""
        x = getattr(self, f"input{m}")
        if self.training or self.freeze:
            z = self._project(m, x if idx is None else x[idx])
        else:
            if m not in self._cache:
                self._cache[m] = _encode_all(lambda b: self._project(m, b), x)
            z = self._cache[m] if idx is None else self._cache[m][idx]
        mask = self.present(m, idx)
        return z if mask is None else z * mask


@torch.no_grad()
def _encode_all(fn, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([fn(x[s : s + CHUNK]) for s in range(0, len(x), CHUNK)])
