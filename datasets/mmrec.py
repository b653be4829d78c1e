"""Generic loader for MMRec-format folders.

An MMRec folder holds ``<name>.inter`` (tab-separated; columns ``userID``, ``itemID``,
optional ``rating``, optional ``timestamp``, optional ``x_label`` with 0/1/2 =
train/valid/test) and item feature matrices as ``.npy`` files, one row per itemID (row
order = itemID). MMRec's processed data already has dense ids ``0..n-1``, so ids are kept
as they are: ``n_users = max(userID) + 1`` and ``n_items = max(itemID) + 1``.

Default feature mapping (`default_feature_map`): ``text_feat.npy`` -> ``text``,
``image_feat.npy`` -> ``image`` (MMRec's names), ``audio_feat.npy`` -> ``audio``,
``video_feat.npy`` -> ``video``; any other ``<root>[_-.]<rest>.npy`` whose prefix is a
modality root becomes ``<root>/<rest>`` (``audio_vggish.npy`` -> ``audio/vggish``) and
``<root>.npy`` becomes ``<root>``. Any other ``.npy`` name (``vggish.npy``) is ambiguous:
the loader refuses and asks for an explicit ``features={"audio/vggish": "vggish.npy"}``.
An all-zero feature row (MMRec's filler for items without that content) is marked missing
in ``feature_masks`` by `load_mmrec_folder`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .atomic import int64_timestamps
from .core import MODALITY_ROOTS, MultimodalDataset, with_zero_row_masks
from .errors import FusebenchError

KNOWN_FEATURE_FILES = {
    "text_feat.npy": "text",
    "image_feat.npy": "image",
    "audio_feat.npy": "audio",
    "video_feat.npy": "video",
}


def read_mmrec_inter(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate an MMRec ``.inter`` file (integer ids >= 0, labels in 0/1/2)."""
    path = Path(path)
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_filter=False)
    except FileNotFoundError as exc:
        raise FusebenchError(f"MMRec interactions file {path} does not exist") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        msg = " ".join(str(exc).split())
        raise FusebenchError(f"{path.name}: malformed MMRec .inter file ({msg})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in ("userID", "itemID") if c not in df.columns]
    if missing:
        raise FusebenchError(
            f"{path.name}: missing column(s) {missing}; an MMRec .inter needs tab-separated "
            f"userID, itemID [, rating, timestamp, x_label] (found {list(df.columns)})"
        )
    if len(df) == 0:
        raise FusebenchError(f"{path.name}: no interaction rows")
    out = {}
    for col in ("userID", "itemID", "x_label"):
        if col in df.columns:
            vals = pd.to_numeric(df[col], errors="coerce")
            bad = vals.isna() | (vals < 0) | (vals != np.floor(vals))
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise FusebenchError(
                    f"{path.name}: column {col} line {row + 2}: {df[col].iloc[row]!r} is not a non-negative integer"
                )
            out[col] = vals.to_numpy().astype(np.int64)
    for col in ("rating", "timestamp"):
        if col in df.columns:
            vals = pd.to_numeric(df[col], errors="coerce")
            bad = vals.isna() | ~np.isfinite(vals.fillna(0).to_numpy(dtype=np.float64))
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise FusebenchError(f"{path.name}: column {col} line {row + 2}: {df[col].iloc[row]!r} is not a number")
            out[col] = vals.to_numpy().astype(np.float64)
    if "x_label" in out and not np.isin(out["x_label"], (0, 1, 2)).all():
        raise FusebenchError(f"{path.name}: x_label must be 0 (train), 1 (valid) or 2 (test)")
    return pd.DataFrame(out)


def default_feature_map(folder: str | os.PathLike) -> dict[str, str]:
    """modality name -> file name for the ``.npy`` files of ``folder`` (see module doc)."""
    folder = Path(folder)
    mapping: dict[str, str] = {}
    ambiguous = []
    for f in sorted(p.name for p in folder.glob("*.npy")):
        if f in KNOWN_FEATURE_FILES:
            mod = KNOWN_FEATURE_FILES[f]
        else:
            stem = f[: -len(".npy")]
            head, sep, rest = _split_stem(stem)
            if head in MODALITY_ROOTS and (rest or not sep):
                mod = f"{head}/{rest}" if rest else head
            else:
                ambiguous.append(f)
                continue
        if mod in mapping:
            raise FusebenchError(
                f"{folder}: both {mapping[mod]} and {f} map to modality {mod!r}; rename one "
                "(from Python: features=... maps them explicitly)"
            )
        mapping[mod] = f
    if ambiguous:
        raise FusebenchError(
            f"{folder}: cannot tell the modality of {ambiguous}; name each file after its modality "
            f"(image_feat.npy, text_feat.npy, audio_*.npy, video_*.npy; from Python: "
            f"features={{'audio/{ambiguous[0][:-4]}': '{ambiguous[0]}'}})"
        )
    return mapping


def _split_stem(stem: str) -> tuple[str, str, str]:
    m = re.match(r"^([^_\-.]+)([_\-.]?)(.*)$", stem)
    return (m.group(1), m.group(2), m.group(3)) if m else (stem, "", "")


def load_feature(path: str | os.PathLike, modality: str) -> np.ndarray:
    """A 2-D float32 matrix from a ``.npy`` file (1-D is rejected, higher dims too)."""
    path = Path(path)
    try:
        mat = np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise FusebenchError(f"feature file {path} for modality {modality!r} does not exist") from exc
    except (ValueError, OSError, EOFError) as exc:
        msg = " ".join(str(exc).split())
        raise FusebenchError(f"feature file {path.name} ({modality!r}) is not a readable .npy array ({msg})") from exc
    if not isinstance(mat, np.ndarray):  # np.load of an .npz archive, whatever its name
        mat.close()
        raise FusebenchError(f"feature file {path.name} ({modality!r}) is an .npz archive, not one .npy array")
    if np.iscomplexobj(mat):
        raise FusebenchError(f"feature file {path.name} ({modality!r}) holds complex numbers; features are real")
    if mat.ndim != 2 or not np.issubdtype(mat.dtype, np.number):
        raise FusebenchError(
            f"feature file {path.name} ({modality!r}) must be a 2-D numeric array, "
            f"got shape {mat.shape} dtype {mat.dtype}"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        return np.ascontiguousarray(mat, dtype=np.float32)


INT32_MAX = 2**31 - 1
SPARSE_IDS = 100  # an id space this many times larger than the ids in use is not MMRec's 0..n-1


def _id_space(ids: np.ndarray, col: str, path) -> int:
    """n for ids that must be 0..n-1 (MMRec's own processing makes them so): they size arrays,
    so an id far beyond the ids in use would allocate gigabytes for nothing."""
    top = int(ids.max())
    if top >= INT32_MAX:
        raise FusebenchError(
            f"{Path(path).name}: {col} {top} does not fit 32 bits; MMRec ids are 0..n-1 (re-index them)"
        )
    used = len(np.unique(ids))
    if top + 1 > SPARSE_IDS * used and top + 1 > 1_000_000:
        raise FusebenchError(
            f"{Path(path).name}: {col} runs to {top} but only {used:,} distinct ids are used; "
            "MMRec ids are 0..n-1 (re-index them)"
        )
    return top + 1


def build_mmrec_dataset(
    name: str,
    inter_path: str | os.PathLike,
    feature_paths: dict[str, str | os.PathLike],
    item_text: list[str] | None = None,
    meta: dict[str, Any] | None = None,
    user_ids: np.ndarray | None = None,
    item_ids: np.ndarray | None = None,
) -> MultimodalDataset:
    """Dataset from an MMRec ``.inter`` file and explicit feature files."""
    inter = read_mmrec_inter(inter_path)
    users = inter["userID"].to_numpy()
    items = inter["itemID"].to_numpy()
    n_users = _id_space(users, "userID", inter_path)
    n_items = _id_space(items, "itemID", inter_path)
    n = len(inter)
    df = pd.DataFrame(
        {
            "user": users.astype(np.int32),
            "item": items.astype(np.int32),
            "rating": (inter["rating"].to_numpy() if "rating" in inter else np.ones(n)).astype(np.float32),
            "timestamp": int64_timestamps(inter["timestamp"].to_numpy() if "timestamp" in inter else None, n),
        }
    )
    features = {}
    for mod, p in feature_paths.items():
        if mod.split("/")[0] not in MODALITY_ROOTS:
            raise FusebenchError(f"dataset {name!r}: modality {mod!r} must start with one of {MODALITY_ROOTS}")
        mat = load_feature(p, mod)
        if mat.shape[0] != n_items:
            raise FusebenchError(
                f"dataset {name!r}: {Path(p).name} ({mod!r}) has {mat.shape[0]} rows but the "
                f"interactions have {n_items} items (itemID 0..{n_items - 1}); one row per itemID is required"
            )
        features[mod] = mat
    meta = dict(meta or {})
    meta.setdefault("features", {m: Path(p).name for m, p in feature_paths.items()})
    meta.setdefault("rating_threshold", None)
    return MultimodalDataset(
        name=name,
        interactions=df,
        n_users=n_users,
        n_items=n_items,
        user_ids=np.arange(n_users, dtype=np.int64) if user_ids is None else user_ids,
        item_ids=np.arange(n_items, dtype=np.int64) if item_ids is None else item_ids,
        features=features,
        item_text=item_text,
        given_split=inter["x_label"].to_numpy().astype(np.int8) if "x_label" in inter else None,
        meta=meta,
    )


def load_mmrec_folder(
    path: str | os.PathLike,
    name: str | None = None,
    features: dict[str, str] | None = None,
) -> MultimodalDataset:
    """Load an MMRec-format folder (see module doc).

    ``name`` selects ``<name>.inter`` (default: the folder's only ``.inter`` file); a `path`
    naming an ``.inter`` file selects it too (``mmrec:DIR/NAME.inter``: the published Last.fm-2K
    and DBbook folders ship ``NAME.inter`` beside ``NAME_og_ids.inter``);
    ``features`` maps modality name -> file name (relative to the folder) or path.
    """
    folder = Path(path).expanduser()
    if folder.suffix == ".inter" and name is None:
        if not folder.is_file():
            raise FusebenchError(f"MMRec file {folder} does not exist")
        folder, name = folder.parent, folder.stem
    if not folder.is_dir():
        raise FusebenchError(f"MMRec folder {folder} does not exist")
    if name is None:
        inters = sorted(folder.glob("*.inter"))
        if len(inters) != 1:
            found = [p.name for p in inters] or "none"
            raise FusebenchError(
                f"{folder}: expected exactly one .inter file, found {found}; name the one to use, e.g. "
                f"mmrec:{folder / (inters[0].name if inters else 'NAME.inter')} (from Python: name=<name>)"
            )
        inter_path = inters[0]
        name = inter_path.stem
    else:
        inter_path = folder / f"{name}.inter"
        if not inter_path.is_file():
            raise FusebenchError(f"{folder}: no {name}.inter")
    mapping = default_feature_map(folder) if features is None else dict(features)
    paths = {m: (folder / f if not Path(f).is_absolute() else Path(f)) for m, f in mapping.items()}
    meta = {
        "source": str(folder),
        "license": "unknown (user-provided MMRec folder)",
        "citation": "",
        "features": {m: Path(f).name for m, f in mapping.items()},
    }
    # MMRec fills items without content with zero rows: mark them missing (feature_masks)
    return with_zero_row_masks(build_mmrec_dataset(name, inter_path, paths, meta=meta))
