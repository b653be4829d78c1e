"""RecBole atomic files (``.inter``, ``.item``, ``.user``) and raw-id -> dense-id conversion.

An atomic file is tab-separated with a header of ``name:type`` fields, where type is one
of ``token``, ``token_seq``, ``float``, ``float_seq`` (RecBole's lingua franca). `read_atomic`
returns a DataFrame whose columns are the bare names; ``float`` columns are parsed as
float64, everything else stays a string. `densify` turns raw (user, item, rating,
timestamp) rows into the dense int32 ids `MultimodalDataset` wants.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import FusebenchError

ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")


def read_atomic(path: str | os.PathLike) -> pd.DataFrame:
    """Read one RecBole atomic file; ``df.attrs["types"]`` maps column -> atomic type."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            header = fh.readline().rstrip("\r\n").split("\t")
    except OSError as exc:
        raise FusebenchError(f"cannot read atomic file {path}: {exc.strerror or exc}") from exc
    names, types = [], {}
    for field in header:
        name, sep, typ = field.partition(":")
        if not sep or typ not in ATOMIC_TYPES or not name:
            raise FusebenchError(
                f"{path.name}: header field {field!r} is not 'name:type' with type in {ATOMIC_TYPES}"
            )
        names.append(name)
        types[name] = typ
    if len(set(names)) != len(names):
        raise FusebenchError(f"{path.name}: duplicate column names in header {header}")
    try:
        df = pd.read_csv(
            path, sep="\t", header=0, names=names, dtype=str, quoting=csv.QUOTE_NONE,
            keep_default_na=False, na_filter=False, encoding="utf-8",
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        msg = " ".join(str(exc).split())
        raise FusebenchError(f"{path.name}: malformed atomic file ({msg})") from exc
    for name, typ in types.items():
        if typ == "float":
            col = pd.to_numeric(df[name].replace("", np.nan), errors="coerce")
            bad = col.isna() & (df[name] != "")
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0]) + 2
                raise FusebenchError(f"{path.name}: column {name!r} line {row}: {df[name].iloc[row - 2]!r} is not a number")
            df[name] = col.astype(np.float64)
    df.attrs["types"] = types
    return df


def pick_column(df: pd.DataFrame, candidates: tuple[str, ...], what: str, source: str, required: bool = True) -> str | None:
    """The first of ``candidates`` present in ``df``; FusebenchError if required and absent."""
    for c in candidates:
        if c in df.columns:
            return c
    if required:
        raise FusebenchError(
            f"{source}: no {what} column (expected one of {list(candidates)}, found {list(df.columns)})"
        )
    return None


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """Unique original ids, numerically sorted when they are all integers."""
    uniq = pd.unique(values)
    try:
        as_int = np.asarray(uniq).astype(np.int64)
        if np.array_equal(as_int.astype(str), np.asarray(uniq).astype(str)):
            return np.sort(as_int)
    except (ValueError, TypeError, OverflowError):
        pass
    return np.sort(np.asarray(uniq).astype(str)).astype(object)


def densify(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray | None = None,
    timestamps: np.ndarray | None = None,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Dense-id interaction frame plus the original user and item ids (index = dense id).

    Users and items are those that occur in the rows, sorted by original id (numerically
    when the ids are integers). Rows keep their source order.
    """
    users = np.asarray(users)
    items = np.asarray(items)
    user_ids = _sorted_unique(users)
    item_ids = _sorted_unique(items)
    u = np.searchsorted(user_ids.astype(str) if user_ids.dtype == object else user_ids,
                        users.astype(str) if user_ids.dtype == object else users.astype(np.int64))
    i = np.searchsorted(item_ids.astype(str) if item_ids.dtype == object else item_ids,
                        items.astype(str) if item_ids.dtype == object else items.astype(np.int64))
    n = len(users)
    df = pd.DataFrame({
        "user": u.astype(np.int32),
        "item": i.astype(np.int32),
        "rating": (np.ones(n) if ratings is None else np.asarray(ratings, dtype=np.float64)).astype(np.float32),
        "timestamp": _timestamps(timestamps, n),
    })
    return df, user_ids, item_ids


def _timestamps(timestamps: np.ndarray | None, n: int) -> np.ndarray:
    """int64 timestamps; missing (None or NaN) -> -1."""
    if timestamps is None:
        return np.full(n, -1, dtype=np.int64)
    ts = np.asarray(timestamps, dtype=np.float64)
    return np.where(np.isfinite(ts), ts, -1).astype(np.int64)
