"""Last.fm-2K with multimodal item features (Spillo et al., 2025), in MMRec format.

Files (SHA-256 verified; fetched through `datasets.download.fetch`: mirror, cache, download):

- ``lfm2k.inter``: userID, itemID, rating (all 1), x_label (0/1/2); 56,345 rows, 1,858 users,
  1,425 items (artists), no timestamps; ``x_label`` becomes ``given_split``;
- ``all-MiniLM-L6-v2.npy`` -> ``text`` (384-d), ``vggish.npy`` -> ``audio/vggish`` (128-d,
  stored float64, cast to float32), ``whisper.npy`` -> ``audio/whisper`` (512-d);
- ``lfm2k_og_ids.inter``: the same rows with the original HetRec user/artist ids; used to map
  each dense itemID to its HetRec artistID (the row alignment is verified);
- ``lfm2k_text.tsv``: artistID, text (the artist's tags); becomes ``item_text``.

The published ``text`` matrix is reproduced by fusebench's own ``text/minilm`` encoder on
``item_text`` (cosine >= 0.999 for every item; tests/test_encoders.py). An all-zero row in a
published matrix is taken as a missing feature (``feature_masks``); none has one today.

Canonical source: github.com/giuspillo/extending_sota_data_mm_feat (branch main), folders
``4_mmrec/data/lfm2k/`` (inter + features) and ``3_data_processing/hetrec2011-lastfm-2k/``
(text + original ids). The paths of the last two files inside that folder are an assumption
taken from the project's data README (the public index we could check lists only part of
the repository); a mirror folder (``FUSEBENCH_DATA_DIR`` / ``--data-dir``) always works.
"""

from __future__ import annotations

import csv
import os

import numpy as np
import pandas as pd

from .core import MultimodalDataset, with_zero_row_masks
from .download import fetch
from .errors import FusebenchError
from .mmrec import build_mmrec_dataset, read_mmrec_inter

NAME = "lfm2k"
REPO_RAW = "https://raw.githubusercontent.com/giuspillo/extending_sota_data_mm_feat/main"
MMREC_DIR = "4_mmrec/data/lfm2k"
PROC_DIR = "3_data_processing/hetrec2011-lastfm-2k"

# file -> (folder in the source repository, sha256)
FILES: dict[str, tuple[str, str]] = {
    "lfm2k.inter": (MMREC_DIR, "a555d4b0bfabe0a11d1758c667eb9a29e574a60bd563848a73f5a6fccda1b0f9"),
    "all-MiniLM-L6-v2.npy": (MMREC_DIR, "b21e98a91fc4ec11e879615f3c47b6f15bdb6e3b7c0d2a9cf0b8008ec83c46b0"),
    "vggish.npy": (MMREC_DIR, "50dfedcc27f88929006bc4f425c94c55aa4bce177749b2f93e55fb3d8ac4018c"),
    "whisper.npy": (MMREC_DIR, "2a2690ff74430711e5a9e22889b5b40cc1b931f6250f25501192d7d63cf98995"),
    "lfm2k_text.tsv": (PROC_DIR, "eeaefa481e6d0157b4c04db573203641b26dc05abe6f7d0d39c8af17ce7dedc5"),
    "lfm2k_og_ids.inter": (PROC_DIR, "59ceba4991b4769ee2cddd4f5528c1dcc3963779a8b6ab5e993e1c3cedb767a6"),
}

FEATURES = {
    "text": "all-MiniLM-L6-v2.npy",
    "audio/vggish": "vggish.npy",
    "audio/whisper": "whisper.npy",
}

LICENSE = (
    "Derived from HetRec 2011 Last.fm-2K, 'made available for non-commercial use'; the "
    "multimodal extension's repository has no license file, so fusebench downloads rather "
    "than ships these files."
)
CITATION = (
    "G. Spillo, A. Petruzzelli, C. Musto, M. de Gemmis, P. Lops, G. Semeraro. 2025. See the "
    "Movie, Hear the Song, Read the Book: Extending MovieLens-1M, Last.fm-2K, and DBbook with "
    "Multimodal Data (Zenodo record 15403972). | I. Cantador, P. Brusilovsky, T. Kuflik. 2011. "
    "2nd Workshop on Information Heterogeneity and Fusion in Recommender Systems (HetRec 2011), "
    "RecSys 2011."
)


def url(filename: str, base: str = REPO_RAW) -> str:
    """The canonical download URL of one file."""
    folder, _ = FILES[filename]
    return f"{base.rstrip('/')}/{folder}/{filename}"


def fetch_all(data_dir: str | os.PathLike | None = None, base: str | None = None) -> dict[str, os.PathLike]:
    """Verified local paths of every lfm2k file (downloading into the cache if needed).

    ``base`` overrides the download root (``FUSEBENCH_LFM2K_URL`` too); each file's URL is
    ``<base>/<folder>/<file>`` with the source repository's folder layout.
    """
    base = base or os.environ.get("FUSEBENCH_LFM2K_URL") or REPO_RAW
    return {f: fetch(NAME, f, url(f, base), sha, data_dir) for f, (_, sha) in FILES.items()}


def _item_text(paths: dict[str, os.PathLike], n_users: int, n_items: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """item_text, original user ids and original artist ids by dense id (via lfm2k_og_ids.inter)."""
    dense = read_mmrec_inter(paths["lfm2k.inter"])
    og = read_mmrec_inter(paths["lfm2k_og_ids.inter"])
    if len(dense) != len(og) or not (
        np.array_equal(dense.get("x_label"), og.get("x_label"))
        and np.array_equal(dense.get("rating"), og.get("rating"))
    ):
        raise FusebenchError("lfm2k: lfm2k_og_ids.inter rows do not align with lfm2k.inter")
    pairs = pd.DataFrame({"d": dense["itemID"], "o": og["itemID"]}).drop_duplicates()
    upairs = pd.DataFrame({"d": dense["userID"], "o": og["userID"]}).drop_duplicates()
    for p, what in ((pairs, "item"), (upairs, "user")):
        if p["d"].duplicated().any() or p["o"].duplicated().any():
            raise FusebenchError(
                f"lfm2k: lfm2k_og_ids.inter is not a row-aligned copy of lfm2k.inter ({what} ids are not one-to-one)"
            )
    artist = np.full(n_items, -1, dtype=np.int64)
    artist[pairs["d"].to_numpy()] = pairs["o"].to_numpy()
    users = np.full(n_users, -1, dtype=np.int64)
    users[upairs["d"].to_numpy()] = upairs["o"].to_numpy()
    try:
        text = pd.read_csv(
            paths["lfm2k_text.tsv"],
            sep="\t",
            dtype={"artistID": np.int64, "text": str},
            keep_default_na=False,
            quoting=csv.QUOTE_NONE,
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise FusebenchError(f"lfm2k_text.tsv is malformed ({' '.join(str(exc).split())})") from exc
    if not {"artistID", "text"} <= set(text.columns):
        raise FusebenchError(f"lfm2k_text.tsv needs columns artistID, text (found {list(text.columns)})")
    by_artist = dict(zip(text["artistID"].to_numpy(), text["text"].astype(str)))
    return [by_artist.get(int(a), "") for a in artist], users, artist


def load_lfm2k(data_dir: str | os.PathLike | None = None) -> MultimodalDataset:
    paths = fetch_all(data_dir)
    inter = read_mmrec_inter(paths["lfm2k.inter"])
    n_users, n_items = int(inter["userID"].max()) + 1, int(inter["itemID"].max()) + 1
    texts, user_ids, artist_ids = _item_text(paths, n_users, n_items)
    meta = {
        "source": f"{REPO_RAW}/{MMREC_DIR}/ (Zenodo record 15403972)",
        "license": LICENSE,
        "citation": CITATION,
        "features": {"text": "all-MiniLM-L6-v2", "audio/vggish": "vggish", "audio/whisper": "whisper"},
        "item_ids": "original HetRec artistID",
        "user_ids": "original HetRec userID",
        "files": {f: sha for f, (_, sha) in FILES.items()},
    }
    ds = build_mmrec_dataset(
        NAME,
        paths["lfm2k.inter"],
        {m: paths[f] for m, f in FEATURES.items()},
        item_text=texts,
        meta=meta,
        user_ids=user_ids,
        item_ids=artist_ids,
    )
    return with_zero_row_masks(ds)  # no lfm2k file has an all-zero row today
