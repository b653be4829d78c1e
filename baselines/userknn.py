"""UserKNN: user-user cosine similarity with shrinkage, pruned to the k nearest neighbours.

Follows the formulation in Dacrema et al. (RecSys 2019, "Are we really making much
progress?"): sim(u, v) = <x_u, x_v> / (|x_u| |x_v| + shrink); every user keeps its `k` most
similar users and score(u, i) = sum_{v in N_k(u)} sim(u, v) x_vi. Defaults are the ones of
Dacrema's `UserKNNCFRecommender.fit` (topK=50, shrink=100).

The similarity is the column-wise top-k of ItemKNN's `topk_cosine` applied to the transposed
matrix (users as columns), computed in blocks of users so memory stays n_users x block.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .base import FitData, Recommender, register
from .itemknn import KNN_CONSTRAINTS, knn_space, topk_cosine


@register
class UserKNN(Recommender):
    """User-based kNN: shrunk cosine between users' training rows, k nearest neighbours each.

    sim(u, v) = <x_u, x_v> / (|x_u| |x_v| + shrink); every user keeps her `k` most similar
    users, and score(u, i) = sum over those neighbours v of sim(u, v) x_vi. The formulation and
    the defaults (topK=50, shrink=100) are those of Dacrema et al.'s `UserKNNCFRecommender`.

    Parameters
    ----------
    k : int, default 50
        Neighbours kept per user. Accepted: int >= 1. Tuned by `search_space`.
    shrink : float, default 100.0
        Shrinkage added to the cosine's denominator (damps similarities resting on few common
        items; 0: plain cosine). Accepted: real >= 0. Tuned by `search_space`.

    Attributes
    ----------
    W_ : scipy.sparse.csr_matrix of shape (n_users, n_users), float32
        Row u holds user u's neighbours and their similarities (at most `k` per row).

    References
    ----------
    Resnick, Iacovou, Suchak, Bergstrom, Riedl. GroupLens: An Open Architecture for
    Collaborative Filtering of Netnews. CSCW 1994.

    Ferrari Dacrema, Cremonesi, Jannach. Are We Really Making Much Progress? A Worrying
    Analysis of Recent Neural Recommendation Approaches. RecSys 2019. Reference
    implementation: github.com/MaurizioFD/RecSys2019_DeepLearning_Evaluation,
    `KNN/UserKNNCFRecommender.py`.
    """

    name = "userknn"
    seeded = False
    family = "baseline/cf"
    _parameter_constraints = KNN_CONSTRAINTS

    def __init__(self, k: int = 50, shrink: float = 100.0):
        self.k = k
        self.shrink = shrink

    @classmethod
    def search_space(cls, trial):
        return knn_space(trial)

    def fit(self, data: FitData) -> "UserKNN":
        self.validate()
        x = sp.csr_matrix(data.train, dtype=np.float32)
        # topk_cosine(x.T) keeps, in column u, the k users most similar to u: S[v, u].
        # Its transpose holds user u's neighbourhood in row u, so scores = W[users] @ X.
        self.W_ = topk_cosine(x.T.tocsr(), int(self.k), float(self.shrink)).T.tocsr()
        self.W_.sort_indices()
        self._train = x
        return self

    def score(self, users: np.ndarray, block: int = 1024) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        out = np.empty((len(users), self._train.shape[1]), dtype=np.float32)
        for start in range(0, len(users), block):
            sl = slice(start, start + block)
            out[sl] = (self.W_[users[sl]] @ self._train).toarray()
        return out

    def n_parameters(self) -> int:
        return int(self.W_.nnz)
