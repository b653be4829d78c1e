"""Text profile: TF-IDF over the items' raw text, users as the mean of their items' vectors.

Every item's text (`FitData.item_text`) becomes an L2-normalised TF-IDF vector (scikit-learn's
`TfidfVectorizer`, fitted on the text of *all* items: item content is known for every item, only
interactions are held out, so cold-start items are scored like any other). A user's profile is
the weighted mean of the vectors of the items in their training row, with item j weighted by
pop_j ** -popularity_damping (pop_j = j's number of training interactions; 0 = plain mean,
1 = each item counts inversely to its popularity). score(u, i) = cosine(profile_u, tfidf_i).
Users with no training item get all-zero scores; items with empty text score 0.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from datasets.errors import FusebenchError

from .base import FitData, Recommender, register
from .params import NON_NEGATIVE, POSITIVE_INT, Interval


@register
class TextProfile(Recommender):
    """Text profile: TF-IDF over the items' raw text; a user is the mean of her items' vectors.

    Every item's text becomes an L2-normalised TF-IDF vector (scikit-learn's
    `TfidfVectorizer`, fitted on the text of all items, so cold-start items are scored like any
    other); a user's profile is the mean of her training items' vectors, item j weighted by
    pop_j ** -popularity_damping, and score(u, i) = cosine(profile_u, tfidf_i). Needs
    `item_text`; users without training items score 0 everywhere.

    Parameters
    ----------
    min_df : int, default 1
        Terms in fewer documents (items) than this are dropped. Accepted: int >= 1. Tuned by
        `search_space`.
    max_df : float, default 0.9
        Terms in a larger share of the documents than this are dropped. Accepted: real in
        (0, 1]. Tuned by `search_space`.
    max_features : int, default 50000
        Vocabulary size cap (the most frequent terms are kept). Accepted: int >= 1.
    ngram_max : int, default 1
        Longest n-gram in the vocabulary (1: words only). Accepted: int >= 1. Tuned by
        `search_space`.
    sublinear_tf : bool, default True
        Use 1 + log(tf) instead of the raw term frequency. Tuned by `search_space`.
    stop_words : bool, default True
        Drop scikit-learn's English stop words.
    popularity_damping : float, default 0.0
        Exponent of the profile weights pop_j ** -popularity_damping (0: plain mean; 1: each
        item counts inversely to its popularity). Accepted: real >= 0. Tuned by `search_space`.

    Attributes
    ----------
    tfidf_ : scipy.sparse.csr_matrix of shape (n_items, vocabulary_size_), float32
        The items' L2-normalised TF-IDF vectors.
    vocabulary_size_ : int
        Number of terms the vectorizer kept.

    References
    ----------
    Salton, Buckley. Term-weighting approaches in automatic text retrieval. Information
    Processing & Management 24(5), 1988.

    Pazzani, Billsus. Content-Based Recommendation Systems. The Adaptive Web, LNCS 4321, 2007.
    """

    name = "text-profile"
    seeded = False
    family = "baseline/content"
    # min_df a document count (TfidfVectorizer reads an int so); max_df a share of documents
    _parameter_constraints = {
        "min_df": [POSITIVE_INT],
        "max_df": [Interval("real", 0, 1, closed="right")],
        "max_features": [POSITIVE_INT],
        "ngram_max": [POSITIVE_INT],
        "sublinear_tf": [bool],
        "stop_words": [bool],
        "popularity_damping": [NON_NEGATIVE],
    }

    @classmethod
    def needs(cls, params=None) -> set[str]:
        return {"text"}

    def __init__(
        self,
        min_df: int = 1,
        max_df: float = 0.9,
        max_features: int = 50000,
        ngram_max: int = 1,
        sublinear_tf: bool = True,
        stop_words: bool = True,
        popularity_damping: float = 0.0,
    ):
        self.min_df = min_df
        self.max_df = max_df
        self.max_features = max_features
        self.ngram_max = ngram_max
        self.sublinear_tf = sublinear_tf
        self.stop_words = stop_words
        self.popularity_damping = popularity_damping

    @classmethod
    def search_space(cls, trial):
        return {
            "min_df": trial.suggest_int("min_df", 1, 5),
            "max_df": trial.suggest_float("max_df", 0.2, 1.0),
            "ngram_max": trial.suggest_int("ngram_max", 1, 2),
            "sublinear_tf": trial.suggest_categorical("sublinear_tf", [True, False]),
            "popularity_damping": trial.suggest_float("popularity_damping", 0.0, 1.0),
        }

    def fit(self, data: FitData) -> "TextProfile":
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.validate()
        if data.item_text is None:
            raise FusebenchError("text-profile needs item text, but the dataset has none (item_text is None)")
        if len(data.item_text) != data.n_items:
            raise FusebenchError(f"item_text has {len(data.item_text)} entries but there are {data.n_items} items")
        texts = ["" if t is None else str(t) for t in data.item_text]
        if not any(t.strip() for t in texts):
            raise FusebenchError("text-profile needs item text, but every item's text is empty")
        vec = TfidfVectorizer(
            min_df=int(self.min_df),
            max_df=float(self.max_df),
            max_features=int(self.max_features),
            ngram_range=(1, int(self.ngram_max)),
            sublinear_tf=bool(self.sublinear_tf),
            stop_words="english" if self.stop_words else None,
            dtype=np.float32,
        )
        try:
            self.tfidf_ = vec.fit_transform(texts).tocsr()
        except ValueError as exc:  # e.g. "empty vocabulary; perhaps the documents only contain stop words"
            raise FusebenchError(f"text-profile: TF-IDF over item_text failed: {exc}") from None
        self.vocabulary_size_ = len(vec.vocabulary_)
        train = data.train.tocsr().astype(np.float32)
        train.data[:] = 1.0
        pop = np.asarray(train.sum(axis=0)).ravel()
        w = np.where(pop > 0, np.maximum(pop, 1.0) ** -float(self.popularity_damping), 0.0).astype(np.float32)
        self._weighted = (train @ sp.diags(w)).tocsr()  # user x item weights of the profile mean
        return self

    def profiles(self, users: np.ndarray) -> np.ndarray:
        """Dense L2-normalised profiles (len(users), vocabulary); the mean's scale cancels in
        the cosine, so the weighted sum is normalised directly."""
        p = (self._weighted[users] @ self.tfidf_).toarray()
        norms = np.linalg.norm(p, axis=1, keepdims=True)
        return np.divide(p, norms, out=np.zeros_like(p), where=norms > 0)

    def score(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        p = self.profiles(users)
        # (tfidf @ p.T).T: sparse x dense, fast for any number of items
        return np.ascontiguousarray((self.tfidf_ @ p.T).T, dtype=np.float32)

    def used_modalities(self) -> list[str]:
        return ["item_text"] if hasattr(self, "tfidf_") else []

    def n_parameters(self) -> int:
        return int(self.tfidf_.nnz)
