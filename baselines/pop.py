"""Most-popular: every user gets the items ranked by training popularity."""

from __future__ import annotations

import numpy as np

from .base import FitData, Recommender, register


@register
class Pop(Recommender):
    """Most-popular: every user gets the same ranking, items by their number of training interactions.

    The non-personalised floor every model on the leaderboard must beat: an item's score is
    its count in the training matrix (the "TopPop" baseline of Cremonesi et al.).

    Parameters
    ----------
    This model has no hyper-parameters.

    Attributes
    ----------
    item_counts_ : ndarray of shape (n_items,), float32
        Training interactions per item (the column sums of the training matrix).

    References
    ----------
    Cremonesi, Koren, Turrin. Performance of recommender algorithms on top-N recommendation
    tasks. RecSys 2010.
    """

    name = "pop"
    seeded = False
    family = "baseline/cf"

    def __init__(self):
        pass

    def fit(self, data: FitData) -> "Pop":
        self.item_counts_ = np.asarray(data.train.sum(axis=0), dtype=np.float32).ravel()
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.item_counts_, (len(users), len(self.item_counts_))).copy()
