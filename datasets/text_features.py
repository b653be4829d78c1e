"""Cheap, deterministic text features for items: TF-IDF followed by truncated SVD (LSA).

The registered encoder ``text/tfidf-svd`` (`datasets.encoders.text`) wraps `tfidf_svd` with
the encoder cache and missing-text masks; the MovieLens datasets' default text modality is
``text/minilm`` since the encoders landed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import FusebenchError


def encoder_name(dim: int = 64) -> str:
    """The name recorded in ``meta["features"]["text"]``."""
    return f"tfidf-svd-{dim}"


def tfidf_svd(texts: Sequence[str], dim: int = 64, seed: int = 0) -> np.ndarray:
    """float32 ``(len(texts), dim)`` LSA embedding with L2-normalised rows.

    TF-IDF (sublinear tf, English stop words, terms in at least 2 items when there are
    enough items) followed by ``TruncatedSVD(dim, random_state=seed)``; each component's
    sign is fixed so that its largest-magnitude loading is positive, which makes the output
    independent of the SVD solver's sign choice. Items whose text is empty (or has no
    kept term) get an all-zero row. When the vocabulary is smaller than ``dim`` the trailing
    columns are zero.
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    if dim < 1:
        raise FusebenchError(f"text feature dim must be >= 1, got {dim}")
    texts = ["" if t is None else str(t) for t in texts]
    n = len(texts)
    out = np.zeros((n, dim), dtype=np.float32)
    if n == 0 or not any(t.strip() for t in texts):
        return out
    min_df = 2 if n >= 50 else 1
    vec = TfidfVectorizer(sublinear_tf=True, stop_words="english", min_df=min_df, dtype=np.float64)
    try:
        x = vec.fit_transform(texts)
    except ValueError:  # empty vocabulary (only stop words / too rare terms)
        if min_df == 1:
            return out
        vec = TfidfVectorizer(sublinear_tf=True, stop_words="english", min_df=1, dtype=np.float64)
        try:
            x = vec.fit_transform(texts)
        except ValueError:
            return out
    k = min(dim, x.shape[1] - 1, n - 1)
    if k < 1:
        z = x.toarray()[:, :dim]
    else:
        svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=7, random_state=seed)
        z = svd.fit_transform(x)
        # deterministic signs: largest |loading| of each component positive
        comp = svd.components_
        signs = np.sign(comp[np.arange(k), np.abs(comp).argmax(axis=1)])
        signs[signs == 0] = 1.0
        z = z * signs
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    z = np.divide(z, norms, out=np.zeros_like(z), where=norms > 1e-12)
    out[:, : z.shape[1]] = z.astype(np.float32)
    return out
