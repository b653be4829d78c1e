"""The encoder contract, its result type and the registry (``text/minilm``, ``image/mobilenet_v2``...).

An encoder turns one item's raw content (a text, or the path of an image, audio or video
file) into a fixed-size float32 vector. `Encoder.encode(contents)` does the shared work:

- the content fingerprint and the disk cache (`cache.py`): a second run on the same content
  with the same encoder name, version and settings is read back, not recomputed;
- missing content (``None``, an empty text, a file that does not exist) and unreadable
  content (a corrupt image, an undecodable video) are *reported*, not fatal: the item's row
  stays zero and its mask entry is False, with the reason in ``problems``;
- batching, a progress bar (tqdm; quiet when not on a terminal), and the device: CUDA when
  present (``device="auto"``), else CPU.

Subclasses set ``name``, ``version`` (bump it whenever the output changes), ``modality``,
``dim``, ``needs`` (what must be installed) and implement ``_encode_batch``; corpus-level
encoders (TF-IDF + SVD) override ``_encode_present`` instead.
"""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from ..errors import FusebenchError
from . import cache as _cache


class EncoderUnavailable(FusebenchError):
    """An encoder's package or weights are not installed."""


@dataclass
class EncodeResult:
    """What `Encoder.encode` returns: features, presence mask, problems and provenance."""

    features: np.ndarray  # float32 (n, dim); rows of missing items are zero
    mask: np.ndarray  # bool (n,), True where the item's feature is present
    problems: dict[int, str]  # row -> why the item has no feature
    encoder: str  # registry name, e.g. "text/minilm"
    version: str
    settings: dict[str, Any]
    content_fingerprint: str
    cached: bool = False
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_missing(self) -> int:
        return int((~self.mask).sum())

    def provenance(self) -> dict[str, Any]:
        """What a dataset's metadata records about this feature matrix."""
        return {
            "encoder": self.encoder,
            "version": self.version,
            "settings": dict(self.settings),
            "dim": int(self.features.shape[1]),
            "content_fingerprint": self.content_fingerprint,
            "n_missing": self.n_missing,
            **self.extra,
        }


def file_problem(path: Any) -> str | None:
    """Why an item's content file cannot be read before decoding it (None when it can)."""
    if path is None:
        return "no file"
    p = Path(path)
    if not p.is_file():
        return f"file not found: {p.name}"
    if p.stat().st_size == 0:
        return f"empty file: {p.name}"
    return None


def unreadable(what: str, exc: BaseException) -> str:
    """The one-line reason a file that exists could not be decoded."""
    return f"unreadable {what} ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"


def resolve_device(device: str | None = "auto") -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; anything else as given."""
    if device in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def progress_bar(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="item", disable=None, dynamic_ncols=True, leave=False)


class Encoder:
    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    modality: ClassVar[str] = ""  # text | image | audio | video
    dim: ClassVar[int] = 0
    needs: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()  # importable modules the encoder needs
    default_batch_size: ClassVar[int] = 32
    description: ClassVar[str] = ""

    def __init__(self, batch_size: int | None = None, device: str | None = "auto", progress: bool = True):
        bs = self.default_batch_size if batch_size is None else int(batch_size)
        if bs < 1:
            raise FusebenchError(f"encoder {self.name}: batch_size must be >= 1, got {batch_size!r}")
        self.batch_size = bs
        self.device = device
        self.progress = progress

    # ------------------------------------------------------------------ description
    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when the encoder can run here, else what is missing (one line)."""
        missing = [m for m in cls.requires if importlib.util.find_spec(m) is None]
        if missing:
            return f"Python package(s) not installed: {', '.join(missing)}"
        return None

    def settings(self) -> dict[str, Any]:
        """The settings that change the output (part of the cache key and the provenance)."""
        return {}

    def output_dim(self) -> int:
        return int(self.dim)

    def cache_key(self) -> str:
        items = ",".join(f"{k}={v}" for k, v in sorted(self.settings().items()))
        return f"{self.name}@{self.version}|{items}"

    # ------------------------------------------------------------------ content
    def is_file_encoder(self) -> bool:
        return self.modality != "text"

    def fingerprint(self, contents: Sequence[Any]) -> str:
        if self.is_file_encoder():
            return _cache.file_fingerprint([None if c is None else c for c in contents])
        return _cache.text_fingerprint([None if c is None else str(c) for c in contents])

    def _precheck(self, content: Any) -> str | None:
        """Why an item has no usable content before encoding (None when it has)."""
        if self.is_file_encoder():
            return file_problem(content)
        if content is None:
            return "no content"
        if not str(content).strip():
            return "empty text"
        return None

    # ------------------------------------------------------------------ encoding
    def encode(
        self, contents: Sequence[Any], use_cache: bool = True, cache_root: str | os.PathLike | None = None
    ) -> EncodeResult:
        """Encode one content per item (text, or file path; ``None`` = missing).

        Returns an `EncodeResult`; never raises for a missing or unreadable item.
        """
        reason = self.unavailable_reason()
        if reason:
            raise EncoderUnavailable(f"encoder {self.name}: {reason}")
        contents = list(contents)
        t0 = time.perf_counter()
        fp = self.fingerprint(contents)
        root = None if cache_root is None else Path(cache_root)
        path = _cache.entry_path(self.cache_key(), self.name, fp, root)
        if use_cache:
            hit = _cache.load_entry(path)
            if hit is not None and hit[0].shape == (len(contents), self.output_dim()):
                feats, mask, problems, info = hit
                return EncodeResult(
                    feats,
                    mask,
                    problems,
                    self.name,
                    self.version,
                    self.settings(),
                    fp,
                    cached=True,
                    seconds=time.perf_counter() - t0,
                    extra={k: v for k, v in info.items() if k == "device"},
                )
        n = len(contents)
        feats = np.zeros((n, self.output_dim()), dtype=np.float32)
        mask = np.zeros(n, dtype=bool)
        problems: dict[int, str] = {}
        present = []
        for i, c in enumerate(contents):
            why = self._precheck(c)
            if why is None:
                present.append(i)
            else:
                problems[i] = why
        device = resolve_device(self.device) if self.requires_torch() else "cpu"
        if present:
            rows, errs = self._encode_present([contents[i] for i in present], device)
            for j, i in enumerate(present):
                if j in errs:
                    problems[i] = errs[j]
                    continue
                row = rows[j]
                if not np.isfinite(row).all():
                    problems[i] = "encoder produced NaN/inf"
                    continue
                feats[i] = row
                mask[i] = True
        seconds = time.perf_counter() - t0
        info = {
            "encoder": self.name,
            "version": self.version,
            "settings": self.settings(),
            "content_fingerprint": fp,
            "device": device,
            "seconds": round(seconds, 3),
        }
        if use_cache:
            _cache.save_entry(path, feats, mask, problems, info)
        return EncodeResult(
            feats,
            mask,
            problems,
            self.name,
            self.version,
            self.settings(),
            fp,
            cached=False,
            seconds=seconds,
            extra={"device": device},
        )

    def requires_torch(self) -> bool:
        return True

    def _encode_present(self, contents: list[Any], device: str) -> tuple[np.ndarray, dict[int, str]]:
        """(rows (len(contents), dim), {position: error}) for items whose content exists."""
        out = np.zeros((len(contents), self.output_dim()), dtype=np.float32)
        errors: dict[int, str] = {}
        bar = progress_bar(len(contents), self.name) if self.progress else None
        try:
            for s in range(0, len(contents), self.batch_size):
                batch = contents[s : s + self.batch_size]
                rows, errs = self._encode_batch(batch, device)
                out[s : s + len(batch)] = rows
                errors.update({s + j: e for j, e in errs.items()})
                if bar is not None:
                    bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()
        return out, errors

    def _encode_batch(self, batch: list[Any], device: str) -> tuple[np.ndarray, dict[int, str]]:
        raise NotImplementedError


# ---------------------------------------------------------------------- registry
ENCODERS: dict[str, type[Encoder]] = {}


def register(cls: type[Encoder]) -> type[Encoder]:
    root = cls.name.split("/")[0]
    if root not in ("text", "image", "audio", "video") or "/" not in cls.name:
        raise ValueError(f"encoder name {cls.name!r} must look like 'text/minilm'")
    if cls.name in ENCODERS and ENCODERS[cls.name] is not cls:
        raise ValueError(f"encoder {cls.name!r} registered twice")
    ENCODERS[cls.name] = cls
    return cls


def encoder_names() -> list[str]:
    return sorted(ENCODERS)


def get_encoder_class(name: str) -> type[Encoder]:
    try:
        return ENCODERS[name]
    except KeyError:
        raise FusebenchError(f"unknown encoder {name!r}; available: {', '.join(sorted(ENCODERS))}") from None


def get_encoder(name: str, **kwargs) -> Encoder:
    """An encoder instance by registry name (``batch_size``, ``device``, ``progress`` and the
    encoder's own settings as keyword arguments)."""
    return get_encoder_class(name)(**kwargs)
