"""Raw-content datasets: a catalogue folder of interactions plus item text, images, audio, video.

Load one with ``datasets.load("catalogue:PATH")``. The folder holds

```
interactions.csv | interactions.tsv   user, item [, rating] [, timestamp]   (required)
items.csv | items.tsv                 item, text  (item text; optional)
images/<item>.<jpg|jpeg|png|webp|bmp|gif|tif|tiff>   one file per item, named by item id
audio/<item>.<wav|flac|ogg|mp3|m4a|aac>
video/<item>.<mp4|webm|mkv|avi|mov|m4v>
catalogue.json                        optional: {"name", "text_column" (default "text") or
                                      "text_columns" (joined with spaces), "source",
                                      "license", "citation"}
features/                             written by `features extract` (see encoders/store.py)
```

Column aliases: ``user_id``/``userID`` and ``item_id``/``itemID``. Items are those that
occur in the interactions (as in every other loader), with dense ids in sorted original-id
order; an item absent from ``items.csv`` gets an empty text. Content is turned into
features by ``python -m benchmark features extract --dataset catalogue:PATH --encoder ENC``,
which writes ``features/`` and records the encoder there; from then on the dataset loads
with that modality, its missing-item mask and its encoder in ``meta["features"]``.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import densify
from .core import MultimodalDataset
from .errors import FusebenchError

CONTENT_DIRS = {"image": "images", "audio": "audio", "video": "video"}
EXTENSIONS = {
    "image": (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"),
    "audio": (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac"),
    "video": (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v"),
}
_ALIASES = {"user": ("user", "user_id", "userID", "userId"), "item": ("item", "item_id", "itemID", "itemId")}


def _table(folder: Path, stem: str, required: bool) -> tuple[pd.DataFrame | None, str]:
    for ext, sep in ((".csv", ","), (".tsv", "\t")):
        p = folder / f"{stem}{ext}"
        if p.is_file():
            try:
                _check_fields(p, sep)
                return pd.read_csv(p, sep=sep, dtype=str, keep_default_na=False, index_col=False), p.name
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, csv.Error) as exc:
                raise FusebenchError(f"{p}: malformed table ({' '.join(str(exc).split())})") from exc
    if required:
        raise FusebenchError(f"catalogue {folder}: needs {stem}.csv or {stem}.tsv")
    return None, ""


def _check_fields(path: Path, sep: str) -> None:
    """Every row has the header's number of fields: pandas would pad a short row with empty
    values and turn a long one's first field into an index, garbling the table silently."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f, delimiter=sep)
        header = next(rows, None)
        if header is None:
            return  # pandas reports the empty file
        for line, row in enumerate(rows, start=2):
            if row and len(row) != len(header):
                raise FusebenchError(f"{path}: line {line} has {len(row)} fields, the header {len(header)}")


def _col(df: pd.DataFrame, what: str, src: str) -> str:
    for c in _ALIASES[what]:
        if c in df.columns:
            return c
    raise FusebenchError(f"{src}: needs a {what} column ({' / '.join(_ALIASES[what])}); found {list(df.columns)}")


def _numeric(df: pd.DataFrame, col: str, src: str) -> np.ndarray:
    vals = pd.to_numeric(df[col], errors="coerce")
    if vals.isna().any():
        row = int(np.flatnonzero(vals.isna().to_numpy())[0])
        raise FusebenchError(f"{src}: column {col} line {row + 2}: {df[col].iloc[row]!r} is not a number")
    return vals.to_numpy(dtype=np.float64)


def read_config(folder: Path) -> dict:
    p = folder / "catalogue.json"
    if not p.is_file():
        return {}
    try:
        cfg = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FusebenchError(f"{p}: not valid JSON ({exc})") from exc
    if not isinstance(cfg, dict):
        raise FusebenchError(f"{p}: must hold a JSON object")
    return cfg


def load_catalogue(path: str | os.PathLike, extracted: bool = True) -> MultimodalDataset:
    """The catalogue folder's interactions and item text, plus its extracted features
    (``features/``) unless ``extracted`` is False."""
    from .encoders.store import attach

    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise FusebenchError(f"catalogue folder {folder} does not exist")
    cfg = read_config(folder)
    inter, src = _table(folder, "interactions", required=True)
    if len(inter) == 0:
        raise FusebenchError(f"{src}: no interaction rows")
    ucol, icol = _col(inter, "user", src), _col(inter, "item", src)
    for col in (ucol, icol):
        empty = (inter[col].str.strip() == "").to_numpy()
        if empty.any():
            raise FusebenchError(f"{src}: line {int(np.flatnonzero(empty)[0]) + 2}: empty {col}")
    ratings = _numeric(inter, "rating", src) if "rating" in inter.columns else None
    stamps = _numeric(inter, "timestamp", src) if "timestamp" in inter.columns else None
    df, user_ids, item_ids = densify(
        inter[ucol].str.strip().to_numpy(), inter[icol].str.strip().to_numpy(), ratings, stamps
    )
    items, isrc = _table(folder, "items", required=False)
    texts = None
    if items is not None:
        icol2 = _col(items, "item", isrc)
        cols = cfg.get("text_columns") or [cfg.get("text_column", "text")]
        missing = [c for c in cols if c not in items.columns]
        if missing:
            raise FusebenchError(f"{isrc}: text column(s) {missing} not found; found {list(items.columns)}")
        joined = items[cols].astype(str).agg(" ".join, axis=1).str.split().str.join(" ")
        keys = items[icol2].str.strip()
        if keys.duplicated().any():
            raise FusebenchError(f"{isrc}: item {keys[keys.duplicated()].iloc[0]!r} appears twice")
        by_id = dict(zip(keys, joined))
        texts = [by_id.get(str(i), "") for i in item_ids]
    meta = {
        "source": cfg.get("source", str(folder)),
        "license": cfg.get("license", "unknown (user-provided catalogue)"),
        "citation": cfg.get("citation", ""),
        "catalogue": str(folder),
        "content": {m: (folder / d).is_dir() for m, d in CONTENT_DIRS.items()},
        "features": {},
        "rating_threshold": None,
    }
    ds = MultimodalDataset(
        name=str(cfg.get("name") or folder.name),
        interactions=df,
        n_users=len(user_ids),
        n_items=len(item_ids),
        user_ids=user_ids,
        item_ids=item_ids,
        features={},
        item_text=texts,
        meta=meta,
    )
    return attach(ds, folder / "features") if extracted else ds


def content_paths(folder: str | os.PathLike, modality: str, item_ids) -> list[Path | None]:
    """One file per item from ``folder`` (named ``<item id>.<ext>``); None where there is none.

    Two files for one item (``7.jpg`` and ``7.png``) are an error: which one is meant is unclear.
    """
    root = modality.split("/")[0]
    if root not in EXTENSIONS:
        raise FusebenchError(f"no content files for modality {modality!r}; file modalities: {sorted(EXTENSIONS)}")
    folder = Path(folder)
    if not folder.is_dir():
        raise FusebenchError(f"content folder {folder} does not exist")
    exts = EXTENSIONS[root]
    by_stem: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in exts:
            if p.stem in by_stem:
                raise FusebenchError(
                    f"{folder}: two {root} files for item {p.stem!r}: {by_stem[p.stem].name}, {p.name}"
                )
            by_stem[p.stem] = p
    return [by_stem.get(str(i)) for i in item_ids]


def catalogue_content_dir(folder: str | os.PathLike, modality: str) -> Path:
    root = modality.split("/")[0]
    if root not in CONTENT_DIRS:
        raise FusebenchError(f"modality {modality!r} has no content folder (text comes from items.csv)")
    return Path(folder) / CONTENT_DIRS[root]
