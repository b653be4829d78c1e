"""The two data types every package shares: `MultimodalDataset` and `Split`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import FusebenchError

MODALITY_ROOTS = ("text", "image", "audio", "video")


# a dataset's name becomes a folder under results/runs/ and a heading of LEADERBOARD.md
_NAME_FORBIDDEN = set("/\\|<>`*[]")


def _bad_name(name) -> str | None:
    """Why `name` cannot name a dataset (None when it can)."""
    if not isinstance(name, str) or not name.strip():
        return "is empty"
    if name in (".", "..") or name.startswith("."):
        return "starts with a dot"
    if any(not c.isprintable() for c in name):
        return "holds a control character"
    bad = sorted(set(name) & _NAME_FORBIDDEN)
    return f"holds {' '.join(bad)} (a path or Markdown character)" if bad else None


@dataclass(frozen=True, eq=False)
class MultimodalDataset:
    """Interactions plus item-side content, with dense ids.

    `interactions` has columns user, item (int32, dense 0..n-1), rating (float32) and
    timestamp (int64, -1 when the source has none). `features` maps a modality name
    (`text`, `image`, `audio`, `video`, or `root/encoder` such as `audio/vggish`) to a
    float32 matrix with one row per item. `given_split` holds the source's own split label
    per interaction row (0 train, 1 valid, 2 test) when the source fixes one.

    `feature_masks` maps a modality to a bool vector (one entry per item), True where the
    item's feature is present and False where its content was missing or unreadable; those
    rows of the feature matrix are all-zero and mean "unknown", not "zero". A modality
    without a mask has every item present (`mask(mod)` always answers).
    """

    name: str
    interactions: pd.DataFrame
    n_users: int
    n_items: int
    user_ids: np.ndarray
    item_ids: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)
    item_text: list[str] | None = None
    given_split: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # modality name -> bool (n_items,), True where the item's feature is present; a modality
    # without an entry is present for every item; absent rows of the matrix are zeros
    feature_masks: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check the invariants; a violation is the user's (or the source file's) problem."""
        bad = _bad_name(self.name)
        if bad:
            raise FusebenchError(
                f'dataset name {self.name!r} {bad}; rename it (catalogue.json "name", the file) '
                "or load it as ALIAS=SPEC"
            )
        df = self.interactions
        missing = {"user", "item", "rating", "timestamp"} - set(df.columns)
        if missing:
            raise FusebenchError(f"dataset {self.name!r}: interactions lack columns {sorted(missing)}")
        if len(self.user_ids) != self.n_users or len(self.item_ids) != self.n_items:
            raise FusebenchError(f"dataset {self.name!r}: id maps do not match n_users/n_items")
        if len(df):
            if df["user"].min() < 0 or df["user"].max() >= self.n_users:
                raise FusebenchError(f"dataset {self.name!r}: user ids outside 0..{self.n_users - 1}")
            if df["item"].min() < 0 or df["item"].max() >= self.n_items:
                raise FusebenchError(f"dataset {self.name!r}: item ids outside 0..{self.n_items - 1}")
        for mod, mat in self.features.items():
            if mod.split("/")[0] not in MODALITY_ROOTS:
                raise FusebenchError(f"dataset {self.name!r}: modality {mod!r} must start with one of {MODALITY_ROOTS}")
            if mat.ndim != 2 or mat.shape[0] != self.n_items:
                raise FusebenchError(
                    f"dataset {self.name!r}: feature {mod!r} has shape {mat.shape}, "
                    f"expected ({self.n_items}, d): one row per item"
                )
            if mat.dtype != np.float32:
                raise FusebenchError(f"dataset {self.name!r}: feature {mod!r} must be float32")
            if not np.isfinite(mat).all():
                bad = int((~np.isfinite(mat)).any(axis=1).sum())
                raise FusebenchError(f"dataset {self.name!r}: feature {mod!r} has NaN/inf in {bad} item rows")
        for mod, mask in self.feature_masks.items():
            if mod not in self.features:
                raise FusebenchError(f"dataset {self.name!r}: feature mask for {mod!r}, which is not a modality")
            if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != (self.n_items,):
                raise FusebenchError(
                    f"dataset {self.name!r}: feature mask {mod!r} must be a bool array of shape ({self.n_items},)"
                )
            if (~mask).any() and self.features[mod][~mask].any():
                bad = int(self.features[mod][~mask].any(axis=1).sum())
                raise FusebenchError(
                    f"dataset {self.name!r}: feature {mod!r} has {bad} non-zero rows for items its mask marks missing"
                )
        if self.item_text is not None and len(self.item_text) != self.n_items:
            raise FusebenchError(
                f"dataset {self.name!r}: item_text has {len(self.item_text)} rows, expected {self.n_items}"
            )
        if self.given_split is not None:
            if len(self.given_split) != len(df):
                raise FusebenchError(f"dataset {self.name!r}: given_split length differs from interactions")
            if not np.isin(self.given_split, (0, 1, 2)).all():
                raise FusebenchError(f"dataset {self.name!r}: given_split labels must be 0, 1 or 2")

    @property
    def n_interactions(self) -> int:
        return len(self.interactions)

    @property
    def density(self) -> float:
        return self.n_interactions / max(1, self.n_users * self.n_items)

    @property
    def modalities(self) -> list[str]:
        return sorted(self.features)

    def mask(self, modality: str) -> np.ndarray:
        """bool (n_items,): True where ``modality``'s feature is present (all True without a mask)."""
        if modality not in self.features:
            raise FusebenchError(f"dataset {self.name!r} has no modality {modality!r}; it has {self.modalities}")
        m = self.feature_masks.get(modality)
        return np.ones(self.n_items, dtype=bool) if m is None else m

    def n_missing(self) -> dict[str, int]:
        """modality -> number of items whose feature is missing (0 for every unmasked modality)."""
        return {
            mod: int((~self.feature_masks[mod]).sum()) if mod in self.feature_masks else 0 for mod in self.modalities
        }

    def implicit(self, threshold: float | None) -> MultimodalDataset:
        """Keep interactions with rating >= threshold as positives (None keeps every rating).

        Ids, features and text stay as they are, so feature rows remain aligned.
        """
        if threshold is None:
            return self
        keep = self.interactions["rating"].to_numpy() >= threshold
        meta = {**self.meta, "rating_threshold": float(threshold)}
        return replace(
            self,
            interactions=self.interactions.loc[keep].reset_index(drop=True),
            given_split=None if self.given_split is None else self.given_split[keep],
            meta=meta,
        )

    def fingerprint(self) -> str:
        """sha256 over interactions, ids, features, masks and text: equal content, equal fingerprint."""
        h = hashlib.sha256()
        h.update(f"{self.n_users}|{self.n_items}".encode())
        for col in ("user", "item", "rating", "timestamp"):
            h.update(np.ascontiguousarray(self.interactions[col].to_numpy()).tobytes())
        h.update("\x1f".join(map(str, self.user_ids)).encode())
        h.update("\x1f".join(map(str, self.item_ids)).encode())
        for mod in sorted(self.features):
            h.update(mod.encode())
            h.update(np.ascontiguousarray(self.features[mod]).tobytes())
            mask = self.feature_masks.get(mod)
            if mask is not None and not mask.all():  # an all-True mask says nothing new
                h.update(b"mask:" + np.packbits(mask).tobytes())
        if self.item_text is not None:
            h.update("\x1f".join(self.item_text).encode())
        if self.given_split is not None:
            h.update(np.asarray(self.given_split, dtype=np.int8).tobytes())
        return h.hexdigest()

    def matrix(self, rows: np.ndarray | None = None) -> sp.csr_matrix:
        """Binary user x item CSR of the given interaction rows (all rows by default)."""
        df = self.interactions if rows is None else self.interactions.iloc[rows]
        return interactions_to_csr(df["user"].to_numpy(), df["item"].to_numpy(), self.n_users, self.n_items)


def with_zero_row_masks(ds: MultimodalDataset) -> MultimodalDataset:
    """``ds`` with every all-zero feature row marked missing in ``feature_masks``.

    Published feature files (MMRec's, Last.fm-2K's) fill items without content with zeros;
    read as a mask, such a row means "unknown" rather than "a zero vector". Modalities
    without an all-zero row keep no mask.
    """
    masks = {m: x.any(axis=1) for m, x in ds.features.items() if not x.any(axis=1).all()}
    if not masks:
        return ds
    merged = {**ds.feature_masks}
    for m, present in masks.items():
        merged[m] = present & merged[m] if m in merged else present
    return replace(ds, feature_masks=merged)


def interactions_to_csr(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary float32 CSR; duplicate (user, item) pairs collapse to one."""
    m = sp.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (np.asarray(users), np.asarray(items))),
        shape=(n_users, n_items),
        dtype=np.float32,
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    m.sort_indices()
    return m


@dataclass(frozen=True, eq=False)
class Split:
    """Train/valid/test as binary float32 CSR matrices of shape (n_users, n_items)."""

    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix
    protocol: str
    params: dict[str, Any]
    seed: int

    @property
    def n_users(self) -> int:
        return self.train.shape[0]

    @property
    def n_items(self) -> int:
        return self.train.shape[1]

    def same_interactions(self, other: Split) -> bool:
        """Whether both splits hold the same train, valid and test pairs (e.g. a given split
        under two seeds)."""
        return all(
            a.shape == b.shape and (a != b).nnz == 0
            for a, b in ((self.train, other.train), (self.valid, other.valid), (self.test, other.test))
        )

    def describe(self) -> dict[str, Any]:
        """What a run record stores about the split."""
        return {
            "protocol": self.protocol,
            "params": dict(self.params),
            "seed": self.seed,
            "n_train": int(self.train.nnz),
            "n_valid": int(self.valid.nnz),
            "n_test": int(self.test.nnz),
        }
