"""Negative sampling shared by every pairwise-loss model (BPR-MF, LightGCN, fusion models)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class NegativeSampler:
    """Uniform negatives that exclude each user's training positives.

    Membership is checked on sorted linear keys (user * n_items + item) with searchsorted,
    so a batch of millions of candidates is vectorised; collisions are redrawn, and the rare
    ones left after `max_rounds` (users who interacted with most items) are drawn exactly
    from the user's complement. A user who interacted with every item gets any item.
    """

    def __init__(self, train: sp.csr_matrix, rng: np.random.Generator, max_rounds: int = 20):
        coo = train.tocoo()
        self.n_items = train.shape[1]
        self.train = train
        self.users = coo.row.astype(np.int64)
        self.items = coo.col.astype(np.int64)
        self._keys = np.sort(self.users * self.n_items + self.items)
        self.rng = rng
        self.max_rounds = max_rounds

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users.astype(np.int64) * self.n_items + items
        pos = np.searchsorted(self._keys, keys)
        pos[pos == len(self._keys)] = 0
        return self._keys[pos] == keys

    def negatives(self, users: np.ndarray) -> np.ndarray:
        neg = self.rng.integers(0, self.n_items, size=len(users))
        for _ in range(self.max_rounds):
            bad = np.flatnonzero(self.is_positive(users, neg))
            if len(bad) == 0:
                break
            neg[bad] = self.rng.integers(0, self.n_items, size=len(bad))
        else:
            for b in np.flatnonzero(self.is_positive(users, neg)):
                row = self.train.indices[self.train.indptr[users[b]] : self.train.indptr[users[b] + 1]]
                free = np.setdiff1d(np.arange(self.n_items), row, assume_unique=True)
                if len(free):
                    neg[b] = free[self.rng.integers(0, len(free))]
        return neg

    def epoch_triples(self, batch_size: int):
        """One pass over every training pair in random order, with one negative each."""
        order = self.rng.permutation(len(self.users))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            u = self.users[idx]
            yield u, self.items[idx], self.negatives(u)
