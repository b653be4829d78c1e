"""Placebo content: item features that keep their distribution but carry no item information.

A model trained on placebo content with the hyper-parameters and seeds of its real run tells
whether the real run used the content at all (the content lift on the leaderboard):

- ``shuffle``: each modality's rows permuted across items (one seeded permutation per
  modality), its presence mask permuted with it. Every marginal distribution is kept exactly;
  only the link between an item and its content is broken. Shuffled content misleads a model
  that trusts it.
- ``noise``: each modality replaced by Gaussian noise with the column means and variances
  (the covariance's diagonal) of the real rows that are present; the presence mask is permuted
  as under ``shuffle``, because which items lack a feature is item information too. Noise of
  full rank can act as a second, free item-id embedding, so a model can beat its shuffled
  placebo and still gain nothing from the content over an extra id: it is said to use its
  content only where it beats both.

Raw item text (``item_text``, read by text models) is permuted under ``shuffle``; under
``noise`` each item gets as many words as a randomly chosen item's text, drawn from the pooled
words of every text (their unigram distribution).

Each draw is seeded by (run seed, placebo, modality name), so a modality's placebo does not
depend on which other modalities a dataset has, and every seed of a campaign draws a new one.
"""

from __future__ import annotations

import zlib

import numpy as np

from .errors import FusebenchError

PLACEBOS = ("shuffle", "noise")


def _rng(seed: int, kind: str, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), PLACEBOS.index(kind), zlib.crc32(name.encode())])


def check_placebo(kind: str | None) -> str | None:
    """`kind` if it names a placebo (or is None), else a one-line user error."""
    if kind is not None and kind not in PLACEBOS:
        raise FusebenchError(f"unknown placebo {kind!r}; available: {', '.join(PLACEBOS)}")
    return kind


def placebo_features(
    features: dict[str, np.ndarray], masks: dict[str, np.ndarray], kind: str, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(features, masks) with every modality replaced by its `kind` placebo (new arrays; the
    inputs are not modified). A modality without a mask stays without one."""
    check_placebo(kind)
    out_f, out_m = {}, {}
    for name, x in features.items():
        x = np.asarray(x)
        n = x.shape[0]
        rng = _rng(seed, kind, name)
        perm = rng.permutation(n)
        mask = masks.get(name)
        if mask is not None:
            out_m[name] = np.asarray(mask, dtype=bool)[perm]
        if kind == "shuffle":
            out_f[name] = np.ascontiguousarray(x[perm])
            continue
        present = np.ones(n, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        rows = x[present].astype(np.float64) if present.any() else np.zeros((1, x.shape[1]))
        mean, std = rows.mean(axis=0), rows.std(axis=0)
        noise = rng.standard_normal(x.shape) * std + mean
        if mask is not None:
            noise[~out_m[name]] = 0.0  # a missing feature reads as zeros, as in the loaders
        out_f[name] = noise.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32)
    for name, mask in masks.items():  # a mask without features (none today) is kept as is
        out_m.setdefault(name, mask)
    return out_f, out_m


def placebo_text(texts: list[str] | None, kind: str, seed: int) -> list[str] | None:
    """Raw item text under the `kind` placebo (see the module notes); None stays None."""
    check_placebo(kind)
    if texts is None:
        return None
    rng = _rng(seed, kind, "item_text")
    perm = rng.permutation(len(texts))
    if kind == "shuffle":
        return [texts[i] for i in perm]
    words = [w for t in texts for w in str(t).split()]
    if not words:
        return [""] * len(texts)
    lengths = [len(str(texts[i]).split()) for i in perm]
    draws = rng.integers(0, len(words), size=sum(lengths))
    out, at = [], 0
    for n in lengths:
        out.append(" ".join(words[j] for j in draws[at : at + n]))
        at += n
    return out
