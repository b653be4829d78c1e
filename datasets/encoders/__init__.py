"""Named, versioned encoders that turn raw item content into feature matrices.

    >>> from datasets.encoders import get_encoder
    >>> res = get_encoder("text/minilm").encode(["a song", "", "a film"])
    >>> res.features.shape, res.mask          # (3, 384), [True, False, True]

Registry names (``python -m benchmark features list``): ``text/minilm``,
``text/tfidf-svd``, ``image/mobilenet_v2``, ``image/resnet50`` (torchvision only),
``audio/logmel``, ``video/frames``. Heavy libraries (transformers, librosa, av) are
imported only when an encoder runs.
"""

# each module registers its encoders when imported (they import their heavy libraries only
# when an encoder runs); here, so that the registry's module never imports them back
from . import audio, image, text, video  # noqa: E402,F401
from .base import (
    ENCODERS,
    Encoder,
    EncodeResult,
    EncoderUnavailable,
    encoder_names,
    get_encoder,
    get_encoder_class,
    register,
    resolve_device,
)

__all__ = [
    "ENCODERS",
    "EncodeResult",
    "Encoder",
    "EncoderUnavailable",
    "encoder_names",
    "get_encoder",
    "get_encoder_class",
    "register",
    "resolve_device",
]
