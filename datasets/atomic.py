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
            raise FusebenchError(f"{path.name}: header field {field!r} is not 'name:type' with type in {ATOMIC_TYPES}")
        names.append(name)
        types[name] = typ
    if len(set(names)) != len(names):
        raise FusebenchError(f"{path.name}: duplicate column names in header {header}")
    try:
        df = pd.read_csv(
            path,
            sep="\t",
            header=0,
            names=names,
            dtype=str,
            quoting=csv.QUOTE_NONE,
            keep_default_na=False,
            na_filter=False,
            encoding="utf-8",
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
                raise FusebenchError(
                    f"{path.name}: column {name!r} line {row}: {df[name].iloc[row - 2]!r} is not a number"
                )
            df[name] = col.astype(np.float64)
    df.attrs["types"] = types
    return df


def pick_column(
    df: pd.DataFrame, candidates: tuple[str, ...], what: str, source: str, required: bool = True
) -> str | None:
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
    u = np.searchsorted(
        user_ids.astype(str) if user_ids.dtype == object else user_ids,
        users.astype(str) if user_ids.dtype == object else users.astype(np.int64),
    )
    i = np.searchsorted(
        item_ids.astype(str) if item_ids.dtype == object else item_ids,
        items.astype(str) if item_ids.dtype == object else items.astype(np.int64),
    )
    n = len(users)
    df = pd.DataFrame(
        {
            "user": u.astype(np.int32),
            "item": i.astype(np.int32),
            "rating": (np.ones(n) if ratings is None else np.asarray(ratings, dtype=np.float64)).astype(np.float32),
            "timestamp": int64_timestamps(timestamps, n),
        }
    )
    return df, user_ids, item_ids


def int64_timestamps(timestamps: np.ndarray | None, n: int) -> np.ndarray:
    """int64 timestamps; missing (None or NaN) -> -1."""
    if timestamps is None:
        return np.full(n, -1, dtype=np.int64)
    ts = np.asarray(timestamps, dtype=np.float64)
    over = np.isfinite(ts) & (np.abs(ts) >= 2.0**63)
    if over.any():
        raise FusebenchError(
            f"timestamp {ts[over][0]:g} (row {int(np.flatnonzero(over)[0]) + 1}) does not fit 64-bit integers"
        )
    return np.where(np.isfinite(ts), ts, -1).astype(np.int64)


# --------------------------------------------------------------------------- whole folders
# Reading and writing a whole RecBole atomic dataset folder (`load_recbole_folder` backs
# ``datasets.load("recbole:PATH")``; `write_recbole_folder` backs ``datasets export --format
# recbole``).
#
# Folder layout: ``<name>.inter`` or, for a pre-split benchmark, ``<name>.train.inter``,
# ``<name>.valid.inter`` and ``<name>.test.inter`` (RecBole's ``benchmark_filename``; read as
# `given_split` 0/1/2, rows in part order); optional ``<name>.user`` and ``<name>.item``.
#
# Interaction columns (any order, any atomic type): ``user_id`` and ``item_id`` (required),
# ``rating`` (default 1.0), ``timestamp`` (default -1); other columns are ignored.
#
# Ids: the user (item) universe is the ids listed in ``<name>.user`` (``<name>.item``), in
# file order, followed by ids that occur only in the interactions, sorted (numerically when
# integers); without a ``.user``/``.item`` file it is the sorted ids of the interactions (as
# `densify`). Ids become int64 when every id is a canonical integer string. Duplicate rows
# of a ``.user``/``.item`` file keep the first (as RecBole does).
#
# Item columns of ``<name>.item``:
# - features: a ``float_seq`` column named after a modality becomes that modality: ``text``,
#   ``image``, ``audio``, ``video``, ``<root>_feat`` -> ``<root>``, and ``<root>_<enc>`` /
#   ``<root>-<enc>`` / ``<root>.<enc>`` -> ``<root>/<enc>`` (``audio_vggish`` ->
#   ``audio/vggish``). Every other ``float`` and ``float_seq`` column (numeric item metadata
#   such as ``price``) is concatenated, in header order, into one catch-all modality
#   ``text/atomic-float`` (numeric side information; the modality name must have one of the
#   roots text/image/audio/video and ``text`` is the root for item metadata). Missing values:
#   a ``float`` column takes its mean over items (RecBole's `_fill_nan`), a ``float_seq``
#   value that is empty or absent (item without a ``.item`` row) becomes zeros; a non-empty
#   ``float_seq`` value with another length than the column's is an error.
# - text: the ``item_text`` column (``token_seq`` or ``token``) when present, else every
#   ``token_seq`` column joined with spaces in header order; items without a row get "".
#   No ``token_seq`` column: no item text.

MODALITY_COLUMN_ROOTS = ("text", "image", "audio", "video")
CATCH_ALL_MODALITY = "text/atomic-float"


def _id_universe(listed: np.ndarray | None, seen: np.ndarray) -> np.ndarray:
    """File-ordered listed ids, then ids only seen in interactions (sorted); int64 when all
    ids are canonical integer strings."""
    seen_sorted = _sorted_unique(np.asarray(seen).astype(str))
    seen_str = np.asarray(seen_sorted).astype(str)
    if listed is None:
        ids = seen_str
    else:
        listed = pd.unique(np.asarray(listed).astype(str))
        extra = seen_str[~np.isin(seen_str, listed)]
        ids = np.concatenate([listed, extra]).astype(str)
    try:
        as_int = ids.astype(np.int64)
        if np.array_equal(as_int.astype(str), ids):
            return as_int
    except (ValueError, OverflowError):
        pass
    return ids.astype(object)


def _index_of(universe: np.ndarray, values: np.ndarray) -> np.ndarray:
    keys = pd.Index(np.asarray(universe).astype(str))
    return keys.get_indexer(np.asarray(values).astype(str)).astype(np.int64)


def _modality_of_column(col: str) -> str | None:
    if col in MODALITY_COLUMN_ROOTS:
        return col
    for root in MODALITY_COLUMN_ROOTS:
        if col == f"{root}_feat":
            return root
        for sep in ("_", "-", ".", "/"):
            if col.startswith(root + sep) and len(col) > len(root) + 1:
                return f"{root}/{col[len(root) + 1 :]}"
    return None


def _parse_float_seq(values: pd.Series, n_rows: int, column: str, source: str) -> np.ndarray:
    """(n_rows, d) float32 from space-separated strings; empty -> zeros."""
    parts = [s.split() for s in values.tolist()]
    lengths = {len(p) for p in parts if p}
    if not lengths:
        return np.zeros((n_rows, 0), dtype=np.float32)
    if len(lengths) > 1:
        raise FusebenchError(f"{source}: float_seq column {column!r} has rows of different lengths {sorted(lengths)}")
    d = lengths.pop()
    out = np.zeros((n_rows, d), dtype=np.float32)
    for r, p in enumerate(parts):
        if p:
            try:
                out[r] = np.asarray(p, dtype=np.float64)
            except ValueError:
                raise FusebenchError(
                    f"{source}: column {column!r} line {r + 2}: {values.iloc[r]!r} is not a list of numbers"
                ) from None
    return out


def _numeric(df: pd.DataFrame, col: str, source: str) -> np.ndarray:
    vals = pd.to_numeric(df[col].replace("", np.nan), errors="coerce")
    bad = vals.isna() & (df[col].astype(str) != "")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise FusebenchError(f"{source}: column {col!r} line {row + 2}: {df[col].iloc[row]!r} is not a number")
    return vals.to_numpy(dtype=np.float64)


def _find_token(folder: Path, name: str | None) -> str:
    if name is not None:
        return name
    stems = set()
    for p in folder.glob("*.inter"):
        stem = p.name[: -len(".inter")]
        for part in (".train", ".valid", ".test"):
            if stem.endswith(part):
                stem = stem[: -len(part)]
        stems.add(stem)
    if len(stems) != 1:
        raise FusebenchError(
            f"{folder}: expected the .inter file(s) of exactly one dataset, found {sorted(stems) or 'none'}; "
            "the folder should hold <name>.inter (or <name>.train/.valid/.test.inter)"
        )
    return stems.pop()


def load_recbole_folder(path: str | os.PathLike, name: str | None = None):
    """A `MultimodalDataset` from a RecBole atomic dataset folder (rules above)."""
    from .core import MultimodalDataset

    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FusebenchError(f"RecBole folder {folder} does not exist")
    token = _find_token(folder, name)
    whole = folder / f"{token}.inter"
    parts = [folder / f"{token}.{p}.inter" for p in ("train", "valid", "test")]
    given = None
    if whole.is_file():
        inter = read_atomic(whole)
        src = whole.name
    elif all(p.is_file() for p in parts):
        frames = [read_atomic(p) for p in parts]
        cols = [list(f.columns) for f in frames]
        if any(set(c) != set(cols[0]) for c in cols):
            raise FusebenchError(f"{folder}: {token}.train/.valid/.test.inter have different columns {cols}")
        given = np.concatenate([np.full(len(f), k, dtype=np.int8) for k, f in enumerate(frames)])
        inter = pd.concat(frames, ignore_index=True)
        src = f"{token}.train/valid/test.inter"
    else:
        raise FusebenchError(f"{folder}: no {token}.inter (nor {token}.train/.valid/.test.inter)")
    ucol = pick_column(inter, ("user_id",), "user id", src)
    icol = pick_column(inter, ("item_id",), "item id", src)
    rcol = pick_column(inter, ("rating",), "rating", src, required=False)
    tcol = pick_column(inter, ("timestamp",), "timestamp", src, required=False)
    if len(inter) == 0:
        raise FusebenchError(f"{src}: no interaction rows")
    users = inter[ucol].astype(str).to_numpy()
    items = inter[icol].astype(str).to_numpy()
    if (users == "").any() or (items == "").any():
        raise FusebenchError(f"{src}: empty user_id or item_id")

    user_file, item_file = folder / f"{token}.user", folder / f"{token}.item"
    ufeat = read_atomic(user_file) if user_file.is_file() else None
    ifeat = read_atomic(item_file) if item_file.is_file() else None
    listed_u = (
        ufeat[pick_column(ufeat, ("user_id",), "user id", user_file.name)].astype(str).to_numpy()
        if ufeat is not None
        else None
    )
    listed_i = (
        ifeat[pick_column(ifeat, ("item_id",), "item id", item_file.name)].astype(str).to_numpy()
        if ifeat is not None
        else None
    )
    user_ids = _id_universe(listed_u, users)
    item_ids = _id_universe(listed_i, items)

    ratings = _numeric(inter, rcol, src) if rcol else np.ones(len(inter))
    if rcol and np.isnan(ratings).any():
        raise FusebenchError(f"{src}: empty rating value")
    stamps = _numeric(inter, tcol, src) if tcol else None
    df = pd.DataFrame(
        {
            "user": _index_of(user_ids, users).astype(np.int32),
            "item": _index_of(item_ids, items).astype(np.int32),
            "rating": ratings.astype(np.float32),
            "timestamp": int64_timestamps(stamps, len(inter)),
        }
    )

    features: dict[str, np.ndarray] = {}
    item_text = None
    ignored = []
    if ifeat is not None:
        ifeat = ifeat.drop_duplicates(subset=["item_id"], keep="first")
        rows = _index_of(item_ids, ifeat["item_id"].astype(str).to_numpy())
        n_items, types = len(item_ids), ifeat.attrs.get("types", {})
        catch_all = []
        for col in ifeat.columns:
            typ = types.get(col)
            if col == "item_id":
                continue
            if typ == "float_seq":
                vals = pd.Series([""] * n_items, dtype=object)
                vals.iloc[rows] = ifeat[col].astype(str).to_numpy()
                mat = _parse_float_seq(vals, n_items, col, item_file.name)
                mod = _modality_of_column(col)
                if mod is None:
                    catch_all.append(mat)
                elif mod in features:
                    raise FusebenchError(f"{item_file.name}: two columns map to modality {mod!r}")
                elif mat.shape[1]:
                    features[mod] = mat
            elif typ == "float":
                col_vals = ifeat[col].to_numpy(dtype=np.float64)
                fill = np.nanmean(col_vals) if np.isfinite(col_vals).any() else 0.0
                full = np.full(n_items, fill)
                full[rows] = np.where(np.isfinite(col_vals), col_vals, fill)
                catch_all.append(full.astype(np.float32)[:, None])
            elif typ not in ("token_seq", "token"):
                ignored.append(col)
        catch_all = [m for m in catch_all if m.shape[1]]
        if catch_all:
            features[CATCH_ALL_MODALITY] = np.ascontiguousarray(np.concatenate(catch_all, axis=1), dtype=np.float32)
        text_cols = (
            ["item_text"] if "item_text" in ifeat.columns else [c for c in ifeat.columns if types.get(c) == "token_seq"]
        )
        if text_cols:
            joined = (
                ifeat[text_cols].astype(str).agg(" ".join, axis=1).to_numpy()
                if len(text_cols) > 1
                else ifeat[text_cols[0]].astype(str).to_numpy()
            )
            texts = np.full(n_items, "", dtype=object)
            texts[rows] = joined
            item_text = [str(t) for t in texts]
    meta = {
        "source": str(folder),
        "license": "unknown (user-provided RecBole atomic folder)",
        "citation": "",
        "rating_threshold": None,
        "features": {
            m: ("catch-all float item columns" if m == CATCH_ALL_MODALITY else f"{token}.item column") for m in features
        },
    }
    if ignored:
        meta["ignored_item_columns"] = ignored
    return MultimodalDataset(
        name=token,
        interactions=df,
        n_users=len(user_ids),
        n_items=len(item_ids),
        user_ids=user_ids,
        item_ids=item_ids,
        features=features,
        item_text=item_text,
        given_split=given,
        meta=meta,
    )


def _clean_token(value) -> str:
    """Atomic files are tab-separated lines: tabs and line breaks become spaces."""
    return str(value).replace("\t", " ").replace("\r", " ").replace("\n", " ")


def _fmt_floats(values: np.ndarray) -> list[str]:
    """%.9g: enough digits for float32 values to read back bit-identical."""
    return [f"{v:.9g}" for v in np.asarray(values, dtype=np.float64).tolist()]


def write_atomic(path: Path, columns: list[tuple[str, str, list[str]]]) -> None:
    """Write ``[(name, type, string values)]`` as one atomic file."""
    header = "\t".join(f"{n}:{t}" for n, t, _ in columns)
    n = len(columns[0][2]) if columns else 0
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(header + "\n")
        for r in range(n):
            fh.write("\t".join(c[2][r] for c in columns) + "\n")


def write_recbole_folder(ds, folder: Path, labels: np.ndarray | None = None) -> Path:
    """Write ``ds`` as a RecBole atomic folder ``folder/<name>.*`` (see datasets.export).

    ``labels`` (per interaction 0 train / 1 valid / 2 test / -1 not written) makes it a pre-split
    benchmark (``<name>.train.inter`` ...); default: the dataset's given split, if any."""
    folder.mkdir(parents=True, exist_ok=True)
    token = folder.name
    df = ds.interactions
    uid = np.asarray([_clean_token(x) for x in ds.user_ids], dtype=object)
    iid = np.asarray([_clean_token(x) for x in ds.item_ids], dtype=object)
    if len(set(uid)) != len(uid) or len(set(iid)) != len(iid):
        raise FusebenchError(f"dataset {ds.name!r}: original ids are not unique as strings")

    def inter_columns(rows: np.ndarray):
        sub = df.iloc[rows]
        cols = [
            ("user_id", "token", uid[sub["user"].to_numpy()].tolist()),
            ("item_id", "token", iid[sub["item"].to_numpy()].tolist()),
            ("rating", "float", _fmt_floats(sub["rating"].to_numpy())),
        ]
        if (df["timestamp"].to_numpy() != -1).any():
            cols.append(("timestamp", "float", [str(int(t)) for t in sub["timestamp"].to_numpy()]))
        return cols

    labels = ds.given_split if labels is None else labels
    if labels is None:
        write_atomic(folder / f"{token}.inter", inter_columns(np.arange(len(df))))
    else:
        for k, part in enumerate(("train", "valid", "test")):
            write_atomic(folder / f"{token}.{part}.inter", inter_columns(np.flatnonzero(labels == k)))
    write_atomic(folder / f"{token}.user", [("user_id", "token", uid.tolist())])
    icols = [("item_id", "token", iid.tolist())]
    if ds.item_text is not None:
        icols.append(("item_text", "token_seq", [_clean_token(t) for t in ds.item_text]))
    for mod in sorted(ds.features):
        col = mod.replace("/", "_", 1)
        mat = ds.features[mod]
        icols.append((col, "float_seq", [" ".join(_fmt_floats(row)) for row in mat]))
    write_atomic(folder / f"{token}.item", icols)
    return folder
