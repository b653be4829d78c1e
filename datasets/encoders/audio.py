"""Audio encoder ``audio/logmel``: log-mel spectrogram and MFCC statistics over time (168-d).

Each file is decoded with librosa (soundfile; audioread as fallback), mixed to mono and
resampled to 22,050 Hz, and at most its first 30 s are used. From a 64-band mel power
spectrogram (n_fft 2048, hop 512, in dB with ref 1.0) and its first 20 MFCCs the feature is

    [mean over time of the 64 log-mel bands, their std, mean of the 20 MFCCs, their std]

= 64 + 64 + 20 + 20 = 168 dimensions. A hand-crafted, model-free baseline: it knows timbre
and pitch range, not genre. Files that cannot be decoded, or hold no samples, are masked.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import FusebenchError
from .base import Encoder, register, unreadable


def logmel(y: np.ndarray, sr: int, n_mels: int = 64, n_fft: int = 2048, hop_length: int = 512) -> np.ndarray:
    """(n_mels, frames) mel power spectrogram of a mono signal in dB (ref 1.0, no top_db clip)."""
    import librosa

    s = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, power=2.0)
    return librosa.power_to_db(s, ref=1.0, amin=1e-10, top_db=None)


class EmptyAudio(ValueError):
    """A file that decodes but holds no usable samples (its message is the reason)."""


def audio_error(exc: BaseException) -> str:
    """The one-line reason an item's audio is masked."""
    return str(exc) if isinstance(exc, EmptyAudio) else unreadable("audio", exc)


def load_audio(path, sample_rate: int, max_seconds: float) -> np.ndarray:
    """The mono signal of a file at ``sample_rate``, its first ``max_seconds`` (raises when it
    cannot be decoded, holds no samples or has NaN/inf samples)."""
    import warnings

    import librosa

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # audioread fallback / short-signal notices
        y, _ = librosa.load(path, sr=sample_rate, mono=True, duration=max_seconds)
    if y.size == 0:
        raise EmptyAudio("audio file holds no samples")
    if not np.isfinite(y).all():
        raise EmptyAudio("audio has NaN/inf samples")
    return y


def logmel_stats(
    y: np.ndarray, sr: int, n_mels: int = 64, n_mfcc: int = 20, n_fft: int = 2048, hop_length: int = 512
) -> np.ndarray:
    """float32 (2 * n_mels + 2 * n_mfcc,) statistics of a mono signal (see the module doc)."""
    import librosa

    logs = logmel(y, sr, n_mels, n_fft, hop_length)
    mfcc = librosa.feature.mfcc(S=logs, n_mfcc=n_mfcc)
    return np.concatenate([logs.mean(1), logs.std(1), mfcc.mean(1), mfcc.std(1)]).astype(np.float32)


@register
class LogMelAudio(Encoder):
    name = "audio/logmel"
    version = "1"
    modality = "audio"
    dim = 168
    needs = "librosa (+ soundfile) for decoding and the spectrogram; no model weights"
    requires = ("librosa", "soundfile")
    default_batch_size = 16
    description = "64-band log-mel + 20 MFCC, mean and std over time, 22.05 kHz mono, first 30 s"

    def __init__(
        self,
        batch_size: int | None = None,
        device: str | None = "auto",
        progress: bool = True,
        sample_rate: int = 22050,
        n_mels: int = 64,
        n_mfcc: int = 20,
        max_seconds: float = 30.0,
    ):
        super().__init__(batch_size, device, progress)
        if sample_rate < 1000 or n_mels < 1 or n_mfcc < 1 or n_mfcc > n_mels or max_seconds <= 0:
            raise FusebenchError("audio/logmel: need sample_rate >= 1000, 1 <= n_mfcc <= n_mels, max_seconds > 0")
        self.sample_rate, self.n_mels, self.n_mfcc = int(sample_rate), int(n_mels), int(n_mfcc)
        self.max_seconds = float(max_seconds)

    def output_dim(self) -> int:
        return 2 * self.n_mels + 2 * self.n_mfcc

    def settings(self) -> dict[str, Any]:
        return {
            "sr": self.sample_rate,
            "n_mels": self.n_mels,
            "n_mfcc": self.n_mfcc,
            "n_fft": 2048,
            "hop": 512,
            "max_seconds": self.max_seconds,
        }

    def requires_torch(self) -> bool:
        return False

    def _encode_batch(self, batch, device):
        rows = np.zeros((len(batch), self.output_dim()), dtype=np.float32)
        errors: dict[int, str] = {}
        for j, path in enumerate(batch):
            try:
                y = load_audio(path, self.sample_rate, self.max_seconds)
                rows[j] = logmel_stats(y, self.sample_rate, self.n_mels, self.n_mfcc)
            except Exception as exc:  # noqa: BLE001 - any decoding failure masks the item
                errors[j] = audio_error(exc)
        return rows, errors
