"""Video encoder ``video/frames``: image features of uniformly sampled frames, pooled over time (2560-d).

Each file is decoded with PyAV (FFmpeg). ``n_frames`` (default 8) frames are taken at
uniformly spaced positions over the clip (the centres of ``n_frames`` equal segments of
the decoded frame sequence; a clip with fewer frames repeats frames), each frame goes through
the image encoder (``image/mobilenet_v2``: the ImageNet preprocessing and 1280-d pooled
features), and the per-frame features are pooled over time: ``[mean, max]`` = 2 x 1280.
Decoding is sequential (no seeking), so cost grows with clip length; frames are decoded at
most once. Files that cannot be decoded or have no video frame are masked.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import FusebenchError
from .base import Encoder, register, unreadable
from .image import MobileNetV2Image, preprocess_pil


def sample_positions(n_total: int, n_frames: int) -> np.ndarray:
    """Indices of ``n_frames`` uniformly spaced frames among ``n_total`` (segment centres)."""
    return np.minimum(((np.arange(n_frames) + 0.5) * n_total / n_frames).astype(np.int64), n_total - 1)


def decode_frames(path, n_frames: int) -> list:
    """``n_frames`` PIL images sampled uniformly over the clip (raises when undecodable)."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        frames = [f.to_image() for f in container.decode(stream)]
    if not frames:
        raise ValueError("no decodable video frame")
    return [frames[i] for i in sample_positions(len(frames), n_frames)]


@register
class FramesVideo(Encoder):
    name = "video/frames"
    version = "1"
    modality = "video"
    dim = 2560
    needs = "PyAV (av) for decoding + the image/mobilenet_v2 weights"
    requires = ("av", "torch", "PIL")
    default_batch_size = 4
    description = "8 uniformly sampled frames -> image/mobilenet_v2 -> mean and max over time"

    def __init__(
        self, batch_size: int | None = None, device: str | None = "auto", progress: bool = True, n_frames: int = 8
    ):
        super().__init__(batch_size, device, progress)
        if int(n_frames) < 1:
            raise FusebenchError(f"video/frames: n_frames must be >= 1, got {n_frames!r}")
        self.n_frames = int(n_frames)
        self.image = MobileNetV2Image(batch_size=32, device=device, progress=False)

    def settings(self) -> dict[str, Any]:
        return {
            "n_frames": self.n_frames,
            "image_encoder": f"{self.image.name}@{self.image.version}",
            **{f"image_{k}": v for k, v in self.image.settings().items()},
            "pool": "mean+max",
        }

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return super().unavailable_reason() or MobileNetV2Image.unavailable_reason()

    def _encode_batch(self, batch, device):
        rows = np.zeros((len(batch), self.dim), dtype=np.float32)
        errors: dict[int, str] = {}
        arrays, owner = [], []
        for j, path in enumerate(batch):
            try:
                arrs = [preprocess_pil(im) for im in decode_frames(path, self.n_frames)]
            except Exception as exc:  # noqa: BLE001 - any decoding failure masks the item
                errors[j] = unreadable("video", exc)
                continue
            arrays.extend(arrs)
            owner.extend([j] * len(arrs))
        if arrays:
            feats = self.image.embed_arrays(arrays, device)
            owner = np.asarray(owner)
            for j in np.unique(owner):
                f = feats[owner == j]
                rows[j] = np.concatenate([f.mean(0), f.max(0)])
        return rows, errors
