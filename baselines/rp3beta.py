"""RP3beta (Paudel et al., ACM TiiS 2017), as implemented by Dacrema et al. (RecSys 2019).

A three-step random walk user -> item -> user -> item re-weighted by item popularity:
P_ui is the row-normalised user-item matrix, P_iu the row-normalised item-user matrix (the
transposed binary matrix), both raised elementwise to `alpha`; the item-item weight is

    W[i, j] = (P_iu^alpha @ P_ui^alpha)[i, j] / pop(j)^beta,   W[i, i] = 0,

pruned to the `k` largest entries of every row i and, when `normalize` is set,
l1-normalised per row; score(u) = x_u @ W. Defaults are those of Dacrema's
`RP3betaRecommender.fit` (alpha=1, beta=0.6, topK=100, normalize_similarity=True).
(Dacrema's code additionally re-prunes the normalised matrix column-wise to topK; that
second pruning is not part of the method and is not reproduced here.)

W is computed in blocks of rows, so memory is block x n_items, never n_items^2.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .base import FitData, Recommender, register
from .params import NON_NEGATIVE, POSITIVE_INT


def _row_l1(x: sp.csr_matrix) -> sp.csr_matrix:
    sums = np.asarray(abs(x).sum(axis=1)).ravel()
    inv = np.divide(1.0, sums, out=np.zeros_like(sums, dtype=np.float64), where=sums != 0)
    return sp.csr_matrix(sp.diags(inv.astype(np.float32)) @ x)


def rp3beta_similarity(
    x: sp.csr_matrix, alpha: float, beta: float, k: int, normalize: bool, block: int = 512
) -> sp.csr_matrix:
    """Row-wise top-k of the RP3beta item-item matrix (see the module docstring)."""
    x = sp.csr_matrix(x, dtype=np.float32)
    n_items = x.shape[1]
    p_ui = _row_l1(x)
    x_bool = x.T.tocsr()
    x_bool.data = np.ones_like(x_bool.data)
    pop = np.asarray(x_bool.sum(axis=1)).ravel()
    degree = np.zeros(n_items, dtype=np.float32)
    degree[pop > 0] = np.power(pop[pop > 0], -beta)
    p_iu = _row_l1(x_bool)
    if alpha != 1.0:  # elementwise on the stored transition probabilities (alpha = 0 too)
        p_ui.data **= alpha
        p_iu.data **= alpha
    k = min(k, n_items - 1) if n_items > 1 else 0
    rows, cols, vals = [], [], []
    for start in range(0, n_items, block):
        stop = min(start + block, n_items)
        w = (p_iu[start:stop] @ p_ui).toarray()
        w *= degree[None, :]
        w[np.arange(stop - start), np.arange(start, stop)] = 0.0  # no self-loops
        if k <= 0:
            continue
        idx = np.argpartition(-w, k - 1, axis=1)[:, :k]
        val = np.take_along_axis(w, idx, axis=1)
        keep = val > 0
        rows.append(np.nonzero(keep)[0] + start)
        cols.append(idx[keep])
        vals.append(val[keep])
    if not rows:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    w = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_items, n_items),
        dtype=np.float32,
    )
    if normalize:
        w = _row_l1(w)
    w.sort_indices()
    return w


@register
class RP3beta(Recommender):
    """RP3beta: a three-step random walk user -> item -> user -> item, damped by popularity.

    The item-item weight is W[i, j] = (P_iu^alpha @ P_ui^alpha)[i, j] / pop(j)^beta with a zero
    diagonal, pruned to each row's `k` largest entries and, with `normalize`, l1-normalised per
    row; a user's scores are her training row times W (see the module docstring). Defaults are
    those of Dacrema et al.'s `RP3betaRecommender` (their second, column-wise pruning is not
    reproduced).

    Parameters
    ----------
    alpha : float, default 1.0
        Exponent applied elementwise to both transition matrices. Accepted: real >= 0.
        Tuned by `search_space`.
    beta : float, default 0.6
        Popularity penalty: the weight towards item j is divided by pop(j)^beta (0: plain
        P3alpha). Accepted: real >= 0. Tuned by `search_space`.
    k : int, default 100
        Entries kept per row of W. Accepted: int >= 1. Tuned by `search_space`.
    normalize : bool, default True
        l1-normalise every row of the pruned W. Tuned by `search_space`.

    Attributes
    ----------
    W_ : scipy.sparse.csr_matrix of shape (n_items, n_items), float32
        The pruned (and optionally normalised) item-item transition weights.

    References
    ----------
    Paudel, Christoffel, Newell, Bernstein. Updatable, Accurate, Diverse, and Scalable
    Recommendations for Interactive Applications. ACM TiiS 7(1), 2017.

    Ferrari Dacrema, Cremonesi, Jannach. Are We Really Making Much Progress? A Worrying
    Analysis of Recent Neural Recommendation Approaches. RecSys 2019. Reference
    implementation: github.com/MaurizioFD/RecSys2019_DeepLearning_Evaluation,
    `GraphBased/RP3betaRecommender.py`.
    """

    name = "rp3beta"
    seeded = False
    family = "baseline/cf"
    _parameter_constraints = {"alpha": [NON_NEGATIVE], "beta": [NON_NEGATIVE], "k": [POSITIVE_INT], "normalize": [bool]}

    def __init__(self, alpha: float = 1.0, beta: float = 0.6, k: int = 100, normalize: bool = True):
        self.alpha = alpha
        self.beta = beta
        self.k = k
        self.normalize = normalize

    @classmethod
    def search_space(cls, trial):
        return {
            "alpha": trial.suggest_float("alpha", 0.0, 2.0),
            "beta": trial.suggest_float("beta", 0.0, 2.0),
            "k": trial.suggest_int("k", 5, 1000, log=True),
            "normalize": trial.suggest_categorical("normalize", [True, False]),
        }

    def fit(self, data: FitData) -> "RP3beta":
        self.validate()
        self.W_ = rp3beta_similarity(data.train, float(self.alpha), float(self.beta), int(self.k), bool(self.normalize))
        self._train = sp.csr_matrix(data.train, dtype=np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.asarray((self._train[np.asarray(users, dtype=np.int64)] @ self.W_).toarray(), dtype=np.float32)

    def n_parameters(self) -> int:
        return int(self.W_.nnz)
