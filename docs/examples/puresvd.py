"""PureSVD (Cremonesi, Koren and Turrin, "Performance of recommender algorithms on top-N
recommendation tasks", RecSys 2010): the training matrix's top `factors` right singular
vectors Q; a user's scores are her training row projected onto them and back, r Q Q^T.

A model written outside fusebench, as a user would write one (README, "Adding your own model").
Check it and benchmark it next to the tuned built-in models:

    python -c "from baselines.checks import check_recommender; \
        from baselines.external import load; check_recommender(load('docs/examples/puresvd.py:PureSVD'))"
    python -m benchmark run --dataset ml-100k --model docs/examples/puresvd.py:PureSVD --seed 0
    python -m benchmark run --all --models ease,docs/examples/puresvd.py:PureSVD
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.extmath import randomized_svd

from baselines import FitData, Recommender
from baselines.params import Interval


class PureSVD(Recommender):
    """Truncated SVD of the binary training matrix.

    Parameters
    ----------
    factors : int
        Number of singular vectors kept (clipped to the matrix's smaller side minus one).
    n_iter : int
        Power iterations of the randomized SVD (more: closer to the exact SVD).

    Attributes
    ----------
    item_factors_ : ndarray of shape (n_items, factors)
        The right singular vectors Q.

    References
    ----------
    Cremonesi, Koren, Turrin. Performance of recommender algorithms on top-N recommendation
    tasks. RecSys 2010.
    """

    name = "puresvd"  # the registry name: records, leaderboard rows and --model use it
    family = "baseline/cf"
    _parameter_constraints = {"factors": [Interval(int, 1, None)], "n_iter": [Interval(int, 0, None)]}

    def __init__(self, factors: int = 64, n_iter: int = 7):
        self.factors = factors  # stored unchanged: get_params() and tuning read them back
        self.n_iter = n_iter

    @classmethod
    def search_space(cls, trial) -> dict:
        return {"factors": trial.suggest_int("factors", 8, 512, log=True)}

    def fit(self, data: FitData) -> PureSVD:
        self.validate()
        k = max(1, min(self.factors, min(data.train.shape) - 1))
        # seeded: the same seed gives the same factors (the contract's determinism property)
        _, _, vt = randomized_svd(data.train, k, n_iter=self.n_iter, random_state=data.seed)
        self.item_factors_ = np.ascontiguousarray(vt.T, dtype=np.float32)
        self._train = data.train  # read at scoring time; not learned state (no trailing _)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        projected = self._train[users] @ self.item_factors_
        return np.asarray(projected @ self.item_factors_.T, dtype=np.float32)
