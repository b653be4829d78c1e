"""Raw item content decoded once into compact input tensors, for the end-to-end models.

`ItemContent` is what a dataset holds in raw form: the item text (every dataset with text)
and, for a catalogue folder (`datasets.catalogue`), one image, audio and video file per item.
`ItemContent.inputs(modality, **settings)` decodes one modality for every item into one array:

- ``text``: the MiniLM WordPiece token ids (the vocabulary of all-MiniLM-L6-v2, lower-cased,
  no [CLS]/[SEP]), int32 (n, max_tokens), 0 = padding; an empty text is missing;
- ``image``: RGB, shorter side resized to ``size`` and centre-cropped, uint8 (n, 3, size, size);
- ``audio``: the 64-band log-mel spectrogram in dB of the first ``max_seconds`` (22.05 kHz mono,
  n_fft 2048, hop 512, as ``audio/logmel``), averaged over ``steps`` equal time segments,
  float16 (n, steps, 64): a fixed-length frame sequence for a recurrent encoder;
- ``video``: ``frames`` frames sampled uniformly over the clip (as ``video/frames``), each
  resized like an image, uint8 (n, frames, 3, size, size).

An item without content, or whose file cannot be decoded, gets a zero row and a False mask
entry, with the reason in ``problems`` (as the frozen encoders report it). Decoding is done
once per content and setting: the arrays are kept in ``<cache>/inputs/<modality>/KEY.npz``
(``$FUSEBENCH_CACHE``), keyed by the settings and the content fingerprint of
`encoders.cache` (the texts, or the bytes of every file), written whole or not at all.

A placebo control (`datasets.placebo`) is applied after decoding, so a seed's placebo costs
no new decoding: ``shuffle`` permutes the rows and the mask, ``noise`` draws each position
from a Gaussian with the present rows' mean and variance there (text: the ``noise`` placebo
of the raw text, then tokenised).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .download import atomic_write, cache_dir
from .encoders import cache as _cache
from .errors import FusebenchError
from .placebo import check_placebo, placebo_features, placebo_text

RAW_MODALITIES = ("text", "image", "audio", "video")
INPUT_VERSION = "1"  # bump when a decoder's output changes
DEFAULTS: dict[str, dict[str, Any]] = {
    "text": {"max_tokens": 64},
    "image": {"size": 32},
    "audio": {"steps": 32, "max_seconds": 30.0, "n_mels": 64, "sample_rate": 22050},
    "video": {"frames": 8, "size": 32},
}


@dataclass
class Inputs:
    """One modality decoded for every item."""

    array: np.ndarray  # (n_items, ...) as described in the module notes
    mask: np.ndarray  # bool (n_items,), True where the item has this content
    problems: dict[int, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n_missing(self) -> int:
        return int((~self.mask).sum())


@dataclass
class ItemContent:
    """An item's raw content: text and file paths (None where an item has none), in item order."""

    n_items: int
    text: list[str] | None = None
    files: dict[str, list[Path | None]] = field(default_factory=dict)  # "image" | "audio" | "video"
    placebo: tuple[str, int] | None = None  # (kind, seed), applied to the decoded inputs

    @classmethod
    def of(cls, dataset) -> ItemContent:
        """The raw content of a loaded dataset: its item text and, for a catalogue folder, the
        files of its images/, audio/ and video/ folders."""
        from .catalogue import CONTENT_DIRS, content_paths

        files: dict[str, list[Path | None]] = {}
        folder = (dataset.meta or {}).get("catalogue")
        if folder:
            for modality, sub in CONTENT_DIRS.items():
                if (Path(folder) / sub).is_dir():
                    files[modality] = content_paths(Path(folder) / sub, modality, dataset.item_ids)
        return cls(dataset.n_items, dataset.item_text, files)

    def available(self) -> list[str]:
        """The raw modalities at least one item has, in the order of RAW_MODALITIES."""
        out = []
        if self.text is not None and any(str(t).strip() for t in self.text):
            out.append("text")
        out += [m for m in RAW_MODALITIES[1:] if any(p is not None for p in self.files.get(m, []))]
        return out

    def with_placebo(self, kind: str | None, seed: int) -> ItemContent:
        return self if kind is None else replace(self, placebo=(check_placebo(kind), int(seed)))

    def inputs(self, modality: str, use_cache: bool = True, **settings) -> Inputs:
        """`modality` decoded for every item with `settings` (defaults in DEFAULTS), the
        placebo (if any) applied."""
        if modality not in RAW_MODALITIES:
            raise FusebenchError(f"unknown raw modality {modality!r}; raw modalities: {', '.join(RAW_MODALITIES)}")
        unknown = set(settings) - set(DEFAULTS[modality])
        if unknown:
            raise FusebenchError(f"{modality} inputs have no setting {', '.join(sorted(unknown))}")
        s = {**DEFAULTS[modality], **settings}
        for k, v in s.items():  # every setting is a count, except the duration
            ok = v > 0 if k == "max_seconds" else isinstance(v, int) and v >= 1
            if not ok:
                raise FusebenchError(
                    f"{modality} inputs: {k} must be {'> 0' if k == 'max_seconds' else 'an int >= 1'}, got {v!r}"
                )
        if modality == "text":
            if self.text is None:
                raise FusebenchError("the dataset has no item text")
            texts = self.text
            if self.placebo is not None:  # the text placebo acts on words, before tokenising
                texts = placebo_text(texts, *self.placebo)
            return _cached("text", s, _cache.text_fingerprint(texts), lambda: decode_text(texts, **s), use_cache)
        paths = self.files.get(modality)
        if paths is None:
            raise FusebenchError(f"the dataset has no {modality} files (a catalogue folder's {modality} folder)")
        fp = _cache.file_fingerprint(paths)
        out = _cached(modality, s, fp, lambda: decode_files(modality, paths, s), use_cache)
        return out if self.placebo is None else placebo_inputs(out, modality, *self.placebo)


def placebo_inputs(inp: Inputs, name: str, kind: str, seed: int) -> Inputs:
    """`inp` under the `kind` placebo: `placebo_features` on the flattened rows, cast back."""
    flat = inp.array.reshape(len(inp.array), -1).astype(np.float32)
    feats, masks = placebo_features({name: flat}, {name: inp.mask}, kind, seed)
    x = feats[name]
    if np.issubdtype(inp.array.dtype, np.integer):
        info = np.iinfo(inp.array.dtype)
        x = np.clip(np.rint(x), info.min, info.max)
    return replace(inp, array=x.astype(inp.array.dtype).reshape(inp.array.shape), mask=masks[name], problems={})


def _cached(modality: str, settings: dict, fp: str, decode, use_cache: bool) -> Inputs:
    key = json.dumps({"v": INPUT_VERSION, "modality": modality, "settings": settings, "content": fp}, sort_keys=True)
    path = cache_dir() / "inputs" / modality / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"
    if use_cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                problems = {int(k): v for k, v in json.loads(str(z["problems"])).items()}
                return Inputs(z["array"], z["mask"].astype(bool), problems, settings)
        except _cache.DAMAGED:
            pass  # a damaged entry is decoded again, never trusted
    array, mask, problems = decode()
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({str(k): v for k, v in problems.items()})
        atomic_write(path, lambda fh: np.savez(fh, array=array, mask=mask, problems=np.array(payload)))
    return Inputs(array, mask, problems, settings)


def decode_text(texts: list[str], max_tokens: int) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    from .encoders.text import load_tokenizer

    tok = load_tokenizer()
    ids = np.zeros((len(texts), max_tokens), dtype=np.int32)
    enc = tok([str(t) for t in texts], add_special_tokens=False, truncation=True, max_length=max_tokens)
    for i, row in enumerate(enc["input_ids"]):
        ids[i, : len(row)] = row
    mask = ids.any(axis=1)
    return ids, mask, {int(i): "empty text" for i in np.flatnonzero(~mask)}


def _image(im, size: int) -> np.ndarray:
    from .encoders.image import resize_crop

    return np.asarray(resize_crop(im, size, size), dtype=np.uint8).transpose(2, 0, 1)


def _decode_one(modality: str, path: Path, s: dict) -> np.ndarray:
    if modality == "image":
        from PIL import Image

        with Image.open(path) as im:
            return _image(im, s["size"])
    if modality == "video":
        from .encoders.video import decode_frames

        return np.stack([_image(im, s["size"]) for im in decode_frames(path, s["frames"])])
    from .encoders.audio import load_audio, logmel

    frames = logmel(load_audio(path, s["sample_rate"], s["max_seconds"]), s["sample_rate"], s["n_mels"])
    # mean over `steps` equal segments of the frames (a short clip repeats frames)
    edges = np.linspace(0, frames.shape[1], s["steps"] + 1)
    lo = np.minimum(edges[:-1].astype(int), frames.shape[1] - 1)
    hi = np.maximum(edges[1:].astype(int), lo + 1)
    return np.stack([frames[:, a:b].mean(axis=1) for a, b in zip(lo, hi)]).astype(np.float16)


def _shape(modality: str, s: dict) -> tuple[int, ...]:
    if modality == "image":
        return (3, s["size"], s["size"])
    if modality == "video":
        return (s["frames"], 3, s["size"], s["size"])
    return (s["steps"], s["n_mels"])


def decode_files(modality: str, paths: list[Path | None], s: dict) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Every item's file decoded (see the module notes); a missing or unreadable one masked."""
    from .encoders.audio import audio_error
    from .encoders.base import file_problem, unreadable

    array = np.zeros((len(paths), *_shape(modality, s)), dtype=np.float16 if modality == "audio" else np.uint8)
    mask = np.zeros(len(paths), dtype=bool)
    problems: dict[int, str] = {}
    for i, p in enumerate(paths):
        why = file_problem(p)
        if why is None:
            try:
                array[i] = _decode_one(modality, Path(p), s)
                mask[i] = True
            except Exception as exc:  # noqa: BLE001 - any decoding failure masks the item
                why = audio_error(exc) if modality == "audio" else unreadable(modality, exc)
        if why is not None:
            problems[i] = why
    return array, mask, problems
