"""Most-popular: every user gets the items ranked by training popularity."""

from __future__ import annotations

import numpy as np

from .base import FitData, Recommender, register


@register
class Pop(Recommender):
    name = "pop"
    family = "baseline/cf"

    def __init__(self):
        pass

    def fit(self, data: FitData) -> "Pop":
        self.item_counts_ = np.asarray(data.train.sum(axis=0), dtype=np.float32).ravel()
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.item_counts_, (len(users), len(self.item_counts_))).copy()
