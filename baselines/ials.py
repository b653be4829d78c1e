"""iALS: implicit-feedback ALS (Hu, Koren & Volinsky, ICDM 2008) with the conjugate-gradient
inner solver of Takács, Pilászy & Tikk (RecSys 2011), as in the `implicit` library.

Every observed pair (u, i) has preference 1 and confidence c_ui = 1 + alpha * r_ui; every
unobserved pair has preference 0 and confidence 1. The loss is

    sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + regularization * (|X|^2 + |Y|^2).

With Y fixed, user u's optimum solves (Y^T C_u Y + reg I) x_u = Y^T C_u p_u, where
Y^T C_u Y = Y^T Y + sum_{i in I_u} (c_ui - 1) y_i y_i^T is applied to vectors without ever
being formed. `cg_steps` conjugate-gradient steps, warm-started from the current x_u, give
an approximate solve (implicit's `least_squares_cg`, default 3 steps); one `train_epoch` is one
sweep over users then items, and returns the loss above divided by the total confidence
(implicit's `calculate_loss` normalisation).

Defaults: 64 factors; alpha = 40 (Hu et al.); cg_steps = 3 and initial factors uniform in
[0, 0.01) (`implicit`'s defaults); 15 sweeps (`implicit`'s default iteration count) for a
plain `fit`; under the benchmark's protocols one sweep is one epoch and patience on validation
stops it. Hu et al. give no value for the regularisation (they tune it); `implicit`'s 0.01
is far too weak at alpha = 40, so the default here, 100, was chosen on *validation* splits
(the comparison is in docs/models.md).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import njit, prange

from .base import FitData, Recommender, register
from .params import NON_NEGATIVE, POSITIVE_INT


@njit(parallel=True, cache=True)
def cg_sweep(indptr, indices, conf, X, Y, gram, cg_steps):  # pragma: no cover - numba
    """Update every row of X in place by `cg_steps` CG steps on its normal equations.

    `gram` is Y^T Y + reg I; `conf` holds c_ui for the stored entries of the CSR (indptr,
    indices) whose rows are X's rows and columns are Y's rows.
    """
    n, f = X.shape
    for u in prange(n):
        x = X[u].copy()
        r = np.empty(f, dtype=X.dtype)
        ap = np.empty(f, dtype=X.dtype)
        # r = Y^T C_u p_u - (Y^T C_u Y + reg I) x
        for a in range(f):
            s = 0.0
            for b in range(f):
                s += gram[a, b] * x[b]
            r[a] = -s
        for idx in range(indptr[u], indptr[u + 1]):
            i = indices[idx]
            c = conf[idx]
            yx = 0.0
            for a in range(f):
                yx += Y[i, a] * x[a]
            t = c - (c - 1.0) * yx
            for a in range(f):
                r[a] += t * Y[i, a]
        p = r.copy()
        rsold = 0.0
        for a in range(f):
            rsold += r[a] * r[a]
        if rsold < 1e-20:
            continue
        for _ in range(cg_steps):
            # ap = (Y^T C_u Y + reg I) p
            for a in range(f):
                s = 0.0
                for b in range(f):
                    s += gram[a, b] * p[b]
                ap[a] = s
            for idx in range(indptr[u], indptr[u + 1]):
                i = indices[idx]
                yp = 0.0
                for a in range(f):
                    yp += Y[i, a] * p[a]
                t = (conf[idx] - 1.0) * yp
                for a in range(f):
                    ap[a] += t * Y[i, a]
            pap = 0.0
            for a in range(f):
                pap += p[a] * ap[a]
            if pap <= 0.0:
                break
            step = rsold / pap
            rsnew = 0.0
            for a in range(f):
                x[a] += step * p[a]
                r[a] -= step * ap[a]
                rsnew += r[a] * r[a]
            if rsnew < 1e-20:
                break
            ratio = rsnew / rsold
            for a in range(f):
                p[a] = r[a] + ratio * p[a]
            rsold = rsnew
        X[u] = x


@njit(parallel=True, cache=True)
def _loss_terms(indptr, indices, conf, X, Y, gram):  # pragma: no cover - numba
    """Per-row sum_i c_ui (p_ui - x_u . y_i)^2 (gram = Y^T Y, no regularisation)."""
    n, f = X.shape
    out = np.zeros(n, dtype=np.float64)
    for u in prange(n):
        s = 0.0
        for a in range(f):  # x^T (Y^T Y) x: every item at confidence 1, preference 0
            t = 0.0
            for b in range(f):
                t += gram[a, b] * X[u, b]
            s += t * X[u, a]
        for idx in range(indptr[u], indptr[u + 1]):
            i = indices[idx]
            c = conf[idx]
            yx = 0.0
            for a in range(f):
                yx += Y[i, a] * X[u, a]
            s += c * (1.0 - yx) ** 2 - yx * yx  # replace the confidence-1, preference-0 term
        out[u] = s
    return out


def ials_loss(cui: sp.csr_matrix, X: np.ndarray, Y: np.ndarray, regularization: float) -> float:
    """Full iALS loss divided by the total confidence over all user-item pairs."""
    gram = Y.T.astype(np.float64) @ Y.astype(np.float64)
    terms = _loss_terms(cui.indptr, cui.indices, cui.data, X, Y, gram)
    reg = regularization * (float(np.sum(X.astype(np.float64) ** 2)) + float(np.sum(Y.astype(np.float64) ** 2)))
    total_conf = float(cui.data.sum()) + cui.shape[0] * cui.shape[1] - cui.nnz
    return (float(terms.sum()) + reg) / total_conf


@register
class IALS(Recommender):
    """iALS: implicit-feedback matrix factorisation by alternating least squares.

    Observed pairs have preference 1 and confidence 1 + alpha * r_ui, all others preference 0
    and confidence 1; one epoch (`train_epoch`) is one sweep that updates every user's factors
    then every item's by `cg_steps` warm-started conjugate-gradient steps on their normal
    equations, never forming Y^T C_u Y, and returns the loss divided by the total confidence
    (see the module docstring). The inner solver and the loss normalisation follow the
    `implicit` library; score(u, i) = <x_u, y_i>. Iterative: `iterations` is the epoch cap.

    Parameters
    ----------
    factors : int, default 64
        Latent dimension. Accepted: int >= 1. Tuned by `search_space`.
    regularization : float, default 100.0
        L2 penalty on both factor matrices (Hu et al. give no value; chosen on validation
        splits, see docs/models.md). Accepted: real >= 0. Tuned by `search_space`.
    alpha : float, default 40.0
        Confidence scale, c_ui = 1 + alpha * r_ui (Hu et al.'s value). Accepted: real >= 0.
        Tuned by `search_space`.
    iterations : int, default 15
        ALS sweeps (`implicit`'s default); the benchmark's epoch cap (`epochs_param`).
        Accepted: int >= 1.
    cg_steps : int, default 3
        Conjugate-gradient steps per row and sweep (`implicit`'s default). Accepted: int >= 1.

    Attributes
    ----------
    user_factors_ : ndarray of shape (n_users, factors), float32
        User factors X (initially uniform in [0, 0.01)).
    item_factors_ : ndarray of shape (n_items, factors), float32
        Item factors Y (initially uniform in [0, 0.01)).

    References
    ----------
    Hu, Koren, Volinsky. Collaborative Filtering for Implicit Feedback Datasets. ICDM 2008.

    Takács, Pilászy, Tikk. Applications of the Conjugate Gradient Method for Implicit Feedback
    Collaborative Filtering. RecSys 2011.

    The `implicit` library: github.com/benfred/implicit, `implicit/cpu/_als.pyx`
    (`least_squares_cg`, `calculate_loss`).
    """

    name = "ials"
    family = "baseline/cf"
    iterative = True
    _parameter_constraints = {
        "factors": [POSITIVE_INT],
        "regularization": [NON_NEGATIVE],
        "alpha": [NON_NEGATIVE],
        "iterations": [POSITIVE_INT],
        "cg_steps": [POSITIVE_INT],
    }

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 100.0,
        alpha: float = 40.0,
        iterations: int = 15,
        cg_steps: int = 3,
    ):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.cg_steps = cg_steps

    epochs_param = "iterations"

    @property
    def epochs(self) -> int:
        """The benchmark's epoch cap: one epoch is one ALS sweep."""
        return self.iterations

    @classmethod
    def search_space(cls, trial):
        return {
            "factors": trial.suggest_categorical("factors", [32, 64, 128, 256]),
            "regularization": trial.suggest_float("regularization", 1e-3, 1e3, log=True),
            "alpha": trial.suggest_float("alpha", 0.1, 100.0, log=True),
        }

    def init(self, data: FitData) -> None:
        self.validate()
        x = sp.csr_matrix(data.train, dtype=np.float32)
        x.sum_duplicates()
        cui = x.copy()
        cui.data = (1.0 + float(self.alpha) * cui.data).astype(np.float32)
        self._cui = cui
        self._ciu = cui.T.tocsr()
        f = int(self.factors)
        rng = np.random.default_rng(data.seed)
        self.user_factors_ = (rng.random((data.n_users, f), dtype=np.float32) * 0.01).astype(np.float32)
        self.item_factors_ = (rng.random((data.n_items, f), dtype=np.float32) * 0.01).astype(np.float32)

    def _gram(self, y: np.ndarray) -> np.ndarray:
        g = (y.T @ y).astype(np.float32)
        g[np.diag_indices_from(g)] += np.float32(self.regularization)
        return g

    def train_epoch(self) -> float:
        steps = int(self.cg_steps)
        X, Y = self.user_factors_, self.item_factors_
        cg_sweep(self._cui.indptr, self._cui.indices, self._cui.data, X, Y, self._gram(Y), steps)
        cg_sweep(self._ciu.indptr, self._ciu.indices, self._ciu.data, Y, X, self._gram(X), steps)
        return ials_loss(self._cui, X, Y, float(self.regularization))

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors_[np.asarray(users, dtype=np.int64)] @ self.item_factors_.T
