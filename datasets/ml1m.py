"""MovieLens-1M (GroupLens ``ml-1m.zip``): 1,000,209 ratings, 6,040 users, 3,706 rated movies.

Files: ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``), ``movies.dat``
(``MovieID::Title::Genres``, genres separated by ``|``, ISO-8859-1) and ``users.dat``
(``UserID::Gender::Age::Occupation::Zip-code``) inside ``ml-1m.zip`` (folder ``ml-1m/``).

Where the files come from (`locate`), in order:

1. the mirror (``data_dir`` / ``$FUSEBENCH_DATA_DIR``): ``<mirror>/ml-1m.zip``,
   ``<mirror>/ml-1m/ml-1m.zip``, or the extracted folder ``<mirror>/ml-1m/`` holding the
   three ``.dat`` files;
2. the cache: ``<cache>/ml-1m/ml-1m.zip``;
3. a download of ``URL`` into the cache (unless ``FUSEBENCH_OFFLINE``).

Checksum. The zip is verified against the MD5 that GroupLens publishes next to it
(``ml-1m.zip.md5``: ``c4d9eecfca2ab87c1945afe126590906``; the same value appears in many
independent loaders). We could not fetch the zip from this project's build machines (no
network to grouplens.org), so its SHA-256 is not verified by us; the SHA-256 that one
public repository states for it is kept in ``ZIP_SHA256_UNVERIFIED`` for information only.
An extracted ``ml-1m/`` folder cannot be checked against a published checksum; it is
validated structurally (columns, ids, ratings 1-5) and marked ``"checksum": "none
(extracted folder)"`` in ``meta``.

Items are the movies with at least one rating (3,706 of the 3,883 in movies.dat, what
RecBole and every benchmark use); ``item_text`` is "title genres" (the title includes the
year), so ``features extract --dataset ml-1m --encoder text/minilm`` gives MiniLM text
features; the loader itself attaches no features (encoding 3,706 texts costs a minute or two
on two CPU cores, and the reproduced tables do not use them).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import densify
from .core import MultimodalDataset
from .download import DatasetUnavailable, cache_dir, download, mirror_dir, offline
from .errors import FusebenchError

NAME = "ml-1m"
URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
ZIP = "ml-1m.zip"
ZIP_MD5 = "c4d9eecfca2ab87c1945afe126590906"
# stated in a public repository's README; not verified by fusebench (see the module doc)
ZIP_SHA256_UNVERIFIED = "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"
MEMBERS = ("ratings.dat", "movies.dat", "users.dat")

LICENSE = (
    "GroupLens MovieLens terms: research use, non-commercial; no redistribution without "
    "permission; cite Harper & Konstan 2015."
)
CITATION = (
    "F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History and "
    "Context. ACM Transactions on Interactive Intelligent Systems (TiiS) 5, 4, Article 19. "
    "https://doi.org/10.1145/2827872"
)

_MD5_MEMO: dict[tuple[str, int, int], str] = {}


def md5_file(path: str | os.PathLike) -> str:
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _MD5_MEMO:
        h = hashlib.md5()
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _MD5_MEMO[key] = h.hexdigest()
    return _MD5_MEMO[key]


def _check_zip(path: Path, hint: str) -> Path:
    got = md5_file(path)
    if got != ZIP_MD5:
        raise FusebenchError(f"checksum mismatch for {path}: expected md5 {ZIP_MD5} (GroupLens), got {got}; {hint}")
    return path


def local_source(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The zip or extracted folder that `load_ml1m` would read, without downloading (None: absent)."""
    mirror = mirror_dir(data_dir)
    if mirror is not None:
        for cand in (mirror / ZIP, mirror / NAME / ZIP):
            if cand.is_file():
                return cand
        folder = mirror / NAME
        if folder.is_dir() and all((folder / m).is_file() for m in MEMBERS):
            return folder
    cached = cache_dir() / NAME / ZIP
    return cached if cached.is_file() else None


def missing_files(data_dir: str | os.PathLike | None = None) -> list[str]:
    """One line per file to provide, or [] when ml-1m is available locally or downloadable."""
    if local_source(data_dir) is not None or not offline():
        return []
    mirror = mirror_dir(data_dir)
    where = f"{mirror}/{ZIP}" if mirror is not None else f"$FUSEBENCH_DATA_DIR/{ZIP} (set FUSEBENCH_DATA_DIR)"
    return [f"{where}  <- {URL} (md5 {ZIP_MD5}), or the extracted folder ml-1m/ with {', '.join(MEMBERS)}"]


def _download(dest: Path) -> Path:
    return download(URL, dest, ZIP_MD5, algorithm="md5")  # GroupLens publishes an MD5


def locate(data_dir: str | os.PathLike | None = None) -> Path:
    """A verified ml-1m.zip or an extracted ml-1m/ folder (mirror, cache, then download)."""
    src = local_source(data_dir)
    if src is not None:
        return src if src.is_dir() else _check_zip(src, "the local copy differs from GroupLens' file")
    how = f"put {ZIP} ({URL}) in FUSEBENCH_DATA_DIR or --data-dir"
    if offline():
        raise DatasetUnavailable(f"dataset 'ml-1m': {ZIP} is not in a mirror or the cache and downloads are off; {how}")
    try:
        return _download(cache_dir() / NAME / ZIP)
    except OSError as exc:
        reason = " ".join(str(getattr(exc, "reason", None) or exc).split())
        raise DatasetUnavailable(f"dataset 'ml-1m': cannot download {URL} ({reason}); {how}") from exc


def _read_member(src: Path, member: str) -> str:
    if src.is_dir():
        return (src / member).read_bytes().decode("latin-1")
    with zipfile.ZipFile(src) as zf:
        names = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == member]
        if not names:
            raise FusebenchError(f"{src.name} lacks {member}")
        return zf.read(names[0]).decode("latin-1")


def _read_dat(text: str, member: str, columns: tuple[str, ...]) -> pd.DataFrame:
    rows = [line.split("::") for line in text.splitlines() if line.strip()]
    bad = next((i for i, r in enumerate(rows) if len(r) != len(columns)), None)
    if bad is not None:
        raise FusebenchError(
            f"ml-1m {member} line {bad + 1}: expected {len(columns)} '::'-separated fields ({', '.join(columns)}), "
            f"got {len(rows[bad])}"
        )
    if not rows:
        raise FusebenchError(f"ml-1m {member} has no rows")
    return pd.DataFrame(rows, columns=list(columns))


def _ints(df: pd.DataFrame, col: str, member: str) -> np.ndarray:
    vals = pd.to_numeric(df[col], errors="coerce")
    if vals.isna().any():
        row = int(np.flatnonzero(vals.isna().to_numpy())[0])
        raise FusebenchError(f"ml-1m {member} line {row + 1}: {col} {df[col].iloc[row]!r} is not a number")
    return vals.to_numpy()


def load_ml1m(data_dir: str | os.PathLike | None = None) -> MultimodalDataset:
    src = locate(data_dir)
    ratings = _read_dat(_read_member(src, "ratings.dat"), "ratings.dat", ("user", "item", "rating", "timestamp"))
    movies = _read_dat(_read_member(src, "movies.dat"), "movies.dat", ("item", "title", "genres"))
    _read_dat(_read_member(src, "users.dat"), "users.dat", ("user", "gender", "age", "occupation", "zip"))
    users = _ints(ratings, "user", "ratings.dat").astype(np.int64)
    items = _ints(ratings, "item", "ratings.dat").astype(np.int64)
    rating = _ints(ratings, "rating", "ratings.dat")
    ts = _ints(ratings, "timestamp", "ratings.dat").astype(np.int64)
    if ((rating < 1) | (rating > 5)).any():
        raise FusebenchError("ml-1m ratings.dat: ratings must lie in 1..5")
    df, user_ids, item_ids = densify(users, items, rating, ts)
    genres = movies["genres"].str.replace("|", " ", regex=False)
    by_id = dict(zip(_ints(movies, "item", "movies.dat").astype(np.int64), movies["title"] + " " + genres))
    texts = [" ".join(str(by_id.get(int(i), "")).split()) for i in item_ids]
    meta = {
        "source": URL + (f" (extracted folder {src})" if src.is_dir() else f" ({src})"),
        "license": LICENSE,
        "citation": CITATION,
        "checksum": "none (extracted folder)" if src.is_dir() else f"md5 {ZIP_MD5}",
        "text_source": "title (year) + genres",
        "items": "movies with at least one rating",
        "features": {},
        "rating_threshold": None,
    }
    return MultimodalDataset(
        name=NAME,
        interactions=df,
        n_users=len(user_ids),
        n_items=len(item_ids),
        user_ids=user_ids,
        item_ids=item_ids,
        features={},
        item_text=texts,
        given_split=None,
        meta=meta,
    )
