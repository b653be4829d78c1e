"""MovieLens loaders: ML-100K (from the installed RecBole package) and ml-latest-small (vendored).

Both keep explicit ratings (1-5, or 0.5-5 in half stars) and Unix timestamps; the item side
is the movies that have at least one rating (what RecBole, MMRec and Cornac do), and the
``text`` modality is the ``text/minilm`` encoding (all-MiniLM-L6-v2, 384-d, L2-normalised,
stored at float16 precision) of the item text:

- ml-100k: title + release year + genres, from RecBole's ``ml-100k.item``;
- ml-latest-small: title + genres (pipes as spaces) + the movie's user tags from ``tags.csv``.

ml-100k's encoding is computed on first load and then served from the encoder cache
(``<cache>/encoders/``; ~1,700 short texts). ml-latest-small's 9,724 texts take minutes on
two CPU cores, so its matrix is vendored (``datasets/data/ml-latest-small-minilm.npz``,
SHA-256 checked, made by `write_vendored_minilm`) and used when its recorded content
fingerprint and encoder version match the texts being loaded; otherwise the texts are
encoded. Both paths round to float16, so they give the same matrix. The former TF-IDF + SVD
text features are one command away: ``features extract --dataset NAME --encoder text/tfidf-svd``.

ML-100K may not be redistributed, so it is read in place from ``recbole/dataset_example``
and never copied; `recbole` itself is not imported (only located with ``find_spec``).
"""

from __future__ import annotations

import importlib.util
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import densify, pick_column, read_atomic
from .core import MultimodalDataset
from .download import DatasetUnavailable, verify
from .errors import FusebenchError

TEXT_ENCODER = "text/minilm"
TEXT_DIM = 384
MLS_MINILM = Path(__file__).resolve().parent / "data" / "ml-latest-small-minilm.npz"
MLS_MINILM_SHA256 = "2f74dfa26a8f3bf54e4468a35c5961e5a34cfca55816532a496ae6cc6e670b2d"

ML_LICENSE = (
    "GroupLens MovieLens terms: research use, non-commercial; no redistribution without "
    "permission (ml-latest-small may be redistributed, with transformations, under the same "
    "conditions); cite Harper & Konstan 2015."
)
ML_CITATION = (
    "F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History and "
    "Context. ACM Transactions on Interactive Intelligent Systems (TiiS) 5, 4, Article 19. "
    "https://doi.org/10.1145/2827872"
)

MLS_ZIP = Path(__file__).resolve().parent / "data" / "ml-latest-small.zip"
MLS_SHA256 = "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436"
MLS_URL = "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"


def _vendored_minilm(encoder, texts: list[str]):
    """(features, mask) from the vendored ml-latest-small matrix when it matches ``texts``, else None."""
    if not MLS_MINILM.is_file() or MLS_MINILM_SHA256 is None:
        return None
    verify(MLS_MINILM, MLS_MINILM_SHA256, hint="the vendored MiniLM matrix is damaged; reinstall fusebench")
    with np.load(MLS_MINILM, allow_pickle=False) as z:
        info = json.loads(str(z["info"]))
        if info.get("cache_key") != encoder.cache_key() or info.get("content_fingerprint") != encoder.fingerprint(
            texts
        ):
            return None
        return z["features"].astype(np.float32), z["mask"].astype(bool)


def minilm_text(texts: list[str], vendored: bool = False) -> tuple[np.ndarray, np.ndarray, dict]:
    """float32 (n, 384) MiniLM features rounded to float16 precision, presence mask, provenance."""
    from .encoders import EncoderUnavailable, get_encoder

    enc = get_encoder(TEXT_ENCODER)
    hit = _vendored_minilm(enc, texts) if vendored else None
    if hit is not None:
        feats, mask = hit
        source = f"vendored {MLS_MINILM.name}"
    else:
        try:
            res = enc.encode(texts)
        except EncoderUnavailable as exc:
            raise DatasetUnavailable(f"{exc} (the default text features of the MovieLens datasets)") from exc
        feats = res.features.astype(np.float16).astype(np.float32)
        mask = res.mask
        source = "encoder cache" if res.cached else "encoded at load"
    prov = {
        "encoder": enc.name,
        "version": enc.version,
        "settings": enc.settings(),
        "content_fingerprint": enc.fingerprint(texts),
        "precision": "float16",
        "source": source,
        "n_missing": int((~mask).sum()),
    }
    return feats, mask, prov


def write_vendored_minilm(path: str | Path = MLS_MINILM) -> str:
    """Encode ml-latest-small's item texts with text/minilm and write the vendored matrix
    (float16 features, mask, encoder key and content fingerprint); returns its SHA-256."""
    from .download import sha256_file
    from .encoders import get_encoder

    texts = load_ml_latest_small(_text=False).item_text
    enc = get_encoder(TEXT_ENCODER)
    res = enc.encode(texts)
    info = {
        "dataset": "ml-latest-small",
        "cache_key": enc.cache_key(),
        "encoder": enc.name,
        "version": enc.version,
        "settings": enc.settings(),
        "content_fingerprint": res.content_fingerprint,
        "n_items": len(texts),
        "precision": "float16",
    }
    np.savez_compressed(path, features=res.features.astype(np.float16), mask=res.mask, info=np.array(json.dumps(info)))
    return sha256_file(path)


def _with_text(
    df, user_ids, item_ids, texts, name, meta, vendored: bool = False, text: bool = True
) -> MultimodalDataset:
    feats, masks, encoders = {}, {}, {}
    if text:
        x, mask, prov = minilm_text(list(texts), vendored=vendored)
        feats["text"] = x
        if not mask.all():
            masks["text"] = mask
        encoders["text"] = f"{prov['encoder']}@{prov['version']} (all-MiniLM-L6-v2)"
        meta = {**meta, "feature_provenance": {"text": prov}}
    meta = {**meta, "features": encoders, "rating_threshold": None}
    return MultimodalDataset(
        name=name,
        interactions=df,
        n_users=len(user_ids),
        n_items=len(item_ids),
        user_ids=user_ids,
        item_ids=item_ids,
        features=feats,
        item_text=list(texts),
        given_split=None,
        meta=meta,
        feature_masks=masks,
    )


# --------------------------------------------------------------------------- ML-100K
def recbole_ml100k_dir() -> Path:
    """The ``dataset_example/ml-100k`` folder of the installed recbole (not imported)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetUnavailable(
            "dataset 'ml-100k': the recbole package that ships its files is not installed; "
            "pip install recbole==1.2.1 (MovieLens-100K may not be redistributed by fusebench)"
        )
    for loc in spec.submodule_search_locations:
        d = Path(loc) / "dataset_example" / "ml-100k"
        if (d / "ml-100k.inter").is_file():
            return d
    raise DatasetUnavailable(
        f"dataset 'ml-100k': recbole is installed at {list(spec.submodule_search_locations)} "
        "but lacks dataset_example/ml-100k/ml-100k.inter; reinstall recbole==1.2.1"
    )


def load_ml100k() -> MultimodalDataset:
    folder = recbole_ml100k_dir()
    inter = read_atomic(folder / "ml-100k.inter")
    src = "ml-100k.inter"
    ucol = pick_column(inter, ("user_id",), "user", src)
    icol = pick_column(inter, ("item_id",), "item", src)
    rcol = pick_column(inter, ("rating",), "rating", src, required=False)
    tcol = pick_column(inter, ("timestamp",), "timestamp", src, required=False)
    df, user_ids, item_ids = densify(
        inter[ucol].to_numpy(),
        inter[icol].to_numpy(),
        None if rcol is None else inter[rcol].to_numpy(),
        None if tcol is None else inter[tcol].to_numpy(),
    )
    text_by_id: dict[str, str] = {}
    item_file = folder / "ml-100k.item"
    if item_file.is_file():
        items = read_atomic(item_file)
        cols = [c for c in ("movie_title", "release_year", "class") if c in items.columns]
        joined = items[cols].astype(str).agg(" ".join, axis=1).str.split().str.join(" ")
        text_by_id = dict(zip(items["item_id"].astype(str), joined))
    texts = [text_by_id.get(str(i), "") for i in item_ids]
    meta = {
        "source": f"https://grouplens.org/datasets/movielens/100k/ (read from the installed recbole package: {folder})",
        "license": ML_LICENSE,
        "citation": ML_CITATION,
        "text_source": "title + release year + genres",
        "items": "movies with at least one rating",
    }
    return _with_text(df, user_ids, item_ids, texts, "ml-100k", meta)


# --------------------------------------------------------------------------- ml-latest-small
def _read_zip_csv(zf: zipfile.ZipFile, member: str) -> pd.DataFrame:
    names = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == member]
    if not names:
        raise FusebenchError(f"ml-latest-small.zip lacks {member}")
    with zf.open(names[0]) as fh:
        return pd.read_csv(io.TextIOWrapper(fh, encoding="utf-8"), keep_default_na=False)


def load_ml_latest_small(zip_path: str | Path | None = None, _text: bool = True) -> MultimodalDataset:
    """ml-latest-small from the vendored zip (checksum-verified).

    Items are the 9,724 rated movies (the 18 movies of movies.csv without any rating are
    left out, as every benchmark does).
    """
    zip_path = Path(zip_path) if zip_path is not None else MLS_ZIP
    if not zip_path.is_file():
        raise DatasetUnavailable(
            f"dataset 'ml-latest-small': {zip_path} is missing; reinstall fusebench or download {MLS_URL}"
        )
    if zip_path == MLS_ZIP:
        verify(zip_path, MLS_SHA256, hint="the vendored zip is damaged; reinstall fusebench")
    with zipfile.ZipFile(zip_path) as zf:
        ratings = _read_zip_csv(zf, "ratings.csv")
        movies = _read_zip_csv(zf, "movies.csv")
        tags = _read_zip_csv(zf, "tags.csv")
    for frame, need, member in (
        (ratings, ("userId", "movieId", "rating", "timestamp"), "ratings.csv"),
        (movies, ("movieId", "title", "genres"), "movies.csv"),
        (tags, ("movieId", "tag"), "tags.csv"),
    ):
        missing = [c for c in need if c not in frame.columns]
        if missing:
            raise FusebenchError(f"ml-latest-small {member}: missing columns {missing}")
    df, user_ids, item_ids = densify(
        ratings["userId"].to_numpy(),
        ratings["movieId"].to_numpy(),
        ratings["rating"].to_numpy(),
        ratings["timestamp"].to_numpy(),
    )
    genres = (
        movies["genres"]
        .astype(str)
        .str.replace("(no genres listed)", "", regex=False)
        .str.replace("|", " ", regex=False)
    )
    base = dict(zip(movies["movieId"].astype(np.int64), (movies["title"].astype(str) + " " + genres)))
    tag_text = tags.assign(tag=tags["tag"].astype(str)).groupby("movieId")["tag"].agg(" ".join)
    tag_by_id = dict(zip(tag_text.index.astype(np.int64), tag_text.to_numpy()))
    texts = [" ".join(f"{base.get(int(i), '')} {tag_by_id.get(int(i), '')}".split()) for i in item_ids]
    meta = {
        "source": MLS_URL + " (vendored in datasets/data/)",
        "license": ML_LICENSE,
        "citation": ML_CITATION,
        "text_source": "title + genres + user tags",
        "items": "movies with at least one rating (9,724 of the 9,742 in movies.csv)",
    }
    return _with_text(df, user_ids, item_ids, texts, "ml-latest-small", meta, vendored=zip_path == MLS_ZIP, text=_text)
