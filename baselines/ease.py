"""EASE (Steck, WWW 2019): a closed-form item-item linear autoencoder with zero diagonal."""

from __future__ import annotations

import sys

import numpy as np
import scipy.linalg

from datasets.memory import require

from .base import FitData, Recommender, register
from .params import POSITIVE

# from this many items on, EASE says it will be slow: its time grows with the cube of the items
SLOW_ITEMS = 10_000
_WARNED: set[int] = set()


@register
class EASE(Recommender):
    """EASE: a closed-form item-item linear autoencoder with a zero diagonal.

    The item-item weights B minimise ||X - X B||^2 + l2 ||B||^2 subject to diag(B) = 0, whose
    solution is B = -P / diag(P) off the diagonal with P = (X^T X + l2 I)^-1 (computed through
    a Cholesky factorisation); a user's scores are her training row times B. Memory grows with
    the square of the items and time with the cube: a catalogue of 10,000 items or more prints
    a note.

    Parameters
    ----------
    l2 : float, default 500.0
        L2 penalty added to the Gram matrix's diagonal (it must stay positive definite).
        Accepted: real > 0. Tuned by `search_space`.

    Attributes
    ----------
    B_ : ndarray of shape (n_items, n_items), float32
        The item-item weights, zero on the diagonal.

    References
    ----------
    Steck. Embarrassingly Shallow Autoencoders for Sparse Data. WWW 2019.
    """

    name = "ease"
    seeded = False
    family = "baseline/cf"
    _parameter_constraints = {"l2": [POSITIVE]}  # the Gram matrix + l2 I must be positive definite

    def __init__(self, l2: float = 500.0):
        self.l2 = l2

    @classmethod
    def search_space(cls, trial):
        return {"l2": trial.suggest_float("l2", 1.0, 1e4, log=True)}

    def fit(self, data: FitData) -> "EASE":
        self.validate()
        x = data.train
        n = x.shape[1]  # the Gram matrix, its inverse and the weights: three dense n x n float64
        require(
            3 * 8 * n * n,
            f"ease on {n:,} items",
            "EASE's cost grows with the square of the items "
            "(and its time with the cube): use itemknn or rp3beta, or fewer items",
        )
        if n >= SLOW_ITEMS and n not in _WARNED:  # fits in memory, but the cube of n is minutes of CPU
            _WARNED.add(n)
            print(
                f"note: ease on {n:,} items factors a {n:,} x {n:,} matrix (about {n**3 / 1e12:.1f}e12 "
                "floating-point operations: minutes on a few CPU cores, per trial and per seed)",
                file=sys.stderr,
            )
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.l2
        # P = G^-1 through Cholesky: G is symmetric positive definite once l2 > 0, and
        # potri is about twice as fast as a general inverse.
        c, lower = scipy.linalg.cho_factor(gram, overwrite_a=True, check_finite=False)
        p = scipy.linalg.lapack.dpotri(c, lower=lower, overwrite_c=True)[0]
        p = np.triu(p) + np.triu(p, 1).T if not lower else np.tril(p) + np.tril(p, -1).T
        b = p / (-np.diag(p))
        b[np.diag_indices_from(b)] = 0.0
        self.B_ = b.astype(np.float32)
        self._train = x
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self._train[users] @ self.B_, dtype=np.float32)

    def n_parameters(self) -> int:
        return int(self.B_.size)
