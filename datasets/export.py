"""Export a `MultimodalDataset` to other toolkits' on-disk formats.

``export(ds, fmt, out, split=None) -> Path`` writes ``<out>/<name>/`` (name = the dataset
name with characters other than letters, digits, ``.``, ``_``, ``-`` replaced by ``_``) and
returns that folder. Nothing partial is left behind: files are written to a temporary
sibling folder that is renamed into place (an existing target folder is an error).

``recbole`` (read back by ``datasets.load("recbole:PATH")``, rules in `datasets.atomic`):
- ``<name>.inter``: ``user_id:token``, ``item_id:token`` (original ids), ``rating:float``,
  and ``timestamp:float`` unless every timestamp is -1. A dataset with a given split is
  written as RecBole's pre-split benchmark instead: ``<name>.train.inter``,
  ``<name>.valid.inter``, ``<name>.test.inter`` (load with ``benchmark_filename``);
- with a ``split`` (``datasets export NAME --split --protocol P --seed S OUT``): the folder
  and files are named ``<name>-<protocol>-seed<S>`` (splits side by side; and RecBole 1.2.1
  loads ``dataset: ml-100k`` from its bundled copy whatever ``data_path`` says), and hold that
  split's parts as the same three files, one row per (user, item) pair of the split (where the source
  repeats a pair, the row the split kept: the latest), so another framework trains on exactly
  fusebench's training set; plus ``<name>.test.qrels``, the test pairs as TREC qrels
  (``user 0 item 1``, raw ids, users then items in dense-id order) for
  ``python -m benchmark score --qrels`` (``score --dataset`` reads the split itself);
- ``<name>.user``: ``user_id:token``, every user in dense-id order (so users and their order
  survive even without interactions);
- ``<name>.item``: ``item_id:token`` in dense-id order, ``item_text:token_seq`` when the
  dataset has text, and one ``float_seq`` column per feature: ``text`` -> ``text``,
  ``audio/vggish`` -> ``audio_vggish`` (first ``/`` -> ``_``).
What the format cannot carry: tabs and line breaks inside ids or text (become spaces); the
row order of a dataset with a given split (rows are grouped train, valid, test); ``meta``
(license, citation). Floats are written with 9 significant digits, so float32 ratings and
features read back bit-identical. Otherwise export + load gives the same fingerprint.

``mmrec`` (read back by ``datasets.load("mmrec:PATH")``):
- ``<name>.inter``: tab-separated ``userID``, ``itemID`` (dense ids), ``rating``,
  ``timestamp``, ``x_label`` (0 train, 1 valid, 2 test). The labels come from the ``split``
  argument when one is passed (a `datasets.Split` of this dataset); else from the dataset's
  given split when it has one; else from the default protocol: per-user random 8:1:1 with seed 0
  (``datasets.split(ds, "random", seed=0)``). An interaction whose (user, item) pair is in no
  part of the split (a protocol may leave some out) is not written.
- MMRec wants every id in ``0..max`` to interact: users and items without a written
  interaction are dropped and the rest renumbered in dense order; ``u_id_mapping.csv``
  (``user_id``, ``userID``) and ``i_id_mapping.csv`` (``item_id``, ``itemID``) keep the
  original ids, as MMRec's own preprocessing does.
- features as ``.npy`` float32, one row per itemID: ``text`` -> ``text_feat.npy``,
  ``image`` -> ``image_feat.npy`` (MMRec's names), ``audio``/``video`` ->
  ``audio_feat.npy``/``video_feat.npy``, ``root/enc`` -> ``root_enc.npy`` (other characters
  than letters, digits and ``-`` in ``enc`` become ``-``).
What MMRec's format cannot carry: original ids (only in the mapping files, which the loader
does not read), item text, users/items without interactions, rows outside the split.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import write_recbole_folder
from .core import MultimodalDataset, Split
from .errors import FusebenchError

FORMATS = ("recbole", "mmrec")
MMREC_FEATURE_FILES = {
    "text": "text_feat.npy",
    "image": "image_feat.npy",
    "audio": "audio_feat.npy",
    "video": "video_feat.npy",
}


def safe_name(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]", "_", str(name)).strip("._")
    return s or "dataset"


def mmrec_feature_file(modality: str) -> str:
    if modality in MMREC_FEATURE_FILES:
        return MMREC_FEATURE_FILES[modality]
    root, _, rest = modality.partition("/")
    return f"{root}_{re.sub(r'[^A-Za-z0-9-]', '-', rest)}.npy"


def split_labels(ds: MultimodalDataset, split: Split | None = None) -> np.ndarray:
    """Per-interaction 0/1/2 labels (-1: in no part): ``split`` when passed, else the given
    split, else the default random 8:1:1 seed-0 split."""
    if ds.given_split is not None and split is None:
        return np.asarray(ds.given_split, dtype=np.int8)
    if split is None:
        from .splits import split as make_split

        split = make_split(ds, "random", seed=0)
    if split.train.shape != (ds.n_users, ds.n_items):
        raise FusebenchError(f"split has shape {split.train.shape}, dataset {ds.name!r} has {(ds.n_users, ds.n_items)}")
    u = ds.interactions["user"].to_numpy()
    i = ds.interactions["item"].to_numpy()
    labels = np.full(len(u), -1, dtype=np.int8)
    for k, mat in ((2, split.test), (1, split.valid), (0, split.train)):
        hit = np.asarray(mat[u, i]).ravel() > 0
        labels[hit] = k
    return labels


def _write_mmrec(ds: MultimodalDataset, folder: Path, split: Split | None) -> None:
    token = folder.name
    labels = split_labels(ds, split)
    keep = labels >= 0
    df = ds.interactions.loc[keep]
    users_kept = np.unique(df["user"].to_numpy())
    items_kept = np.unique(df["item"].to_numpy())
    unew = np.full(ds.n_users, -1, dtype=np.int64)
    unew[users_kept] = np.arange(len(users_kept))
    inew = np.full(ds.n_items, -1, dtype=np.int64)
    inew[items_kept] = np.arange(len(items_kept))
    out = pd.DataFrame(
        {
            "userID": unew[df["user"].to_numpy()],
            "itemID": inew[df["item"].to_numpy()],
            "rating": [f"{v:.9g}" for v in df["rating"].to_numpy(dtype=np.float64)],
            "timestamp": df["timestamp"].to_numpy(dtype=np.int64),
            "x_label": labels[keep].astype(np.int64),
        }
    )
    out.to_csv(folder / f"{token}.inter", sep="\t", index=False)
    pd.DataFrame({"user_id": np.asarray(ds.user_ids)[users_kept], "userID": np.arange(len(users_kept))}).to_csv(
        folder / "u_id_mapping.csv", sep="\t", index=False
    )
    pd.DataFrame({"item_id": np.asarray(ds.item_ids)[items_kept], "itemID": np.arange(len(items_kept))}).to_csv(
        folder / "i_id_mapping.csv", sep="\t", index=False
    )
    names = {}
    for mod in sorted(ds.features):
        fname = mmrec_feature_file(mod)
        if fname in names:
            raise FusebenchError(f"modalities {names[fname]!r} and {mod!r} both map to {fname}")
        names[fname] = mod
        np.save(folder / fname, np.ascontiguousarray(ds.features[mod][items_kept], dtype=np.float32))


def _recbole_split_labels(ds: MultimodalDataset, split: Split) -> np.ndarray:
    """The split's part of each interaction; a repeated (user, item) pair only on the row the
    split kept (`splits.dedup_rows`), so each part file holds exactly the split's pairs."""
    from .splits import dedup_rows

    labels = split_labels(ds, split).copy()
    kept = np.zeros(len(labels), dtype=bool)
    kept[dedup_rows(ds)] = True
    labels[~kept] = -1
    return labels


def write_qrels(ds: MultimodalDataset, truth, path: Path) -> None:
    """TREC qrels ``user 0 item 1`` of a CSR's pairs, raw ids, in dense-id order."""
    coo = truth.tocsr().tocoo()
    uid = np.asarray([str(x) for x in ds.user_ids], dtype=object)
    iid = np.asarray([str(x) for x in ds.item_ids], dtype=object)
    for what, ids, used in (("user", uid, coo.row), ("item", iid, coo.col)):
        bad = [x for x in np.unique(ids[used]) if not x or any(c.isspace() for c in x)]
        if bad:
            raise FusebenchError(
                f"dataset {ds.name!r}: {what} id {bad[0]!r} is empty or holds whitespace, which "
                "TREC qrels and run files cannot carry"
            )
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for u, i in zip(coo.row.tolist(), coo.col.tolist()):
            fh.write(f"{uid[u]} 0 {iid[i]} 1\n")


def export(ds: MultimodalDataset, fmt: str, out: str | os.PathLike, split: Split | None = None) -> Path:
    """Write ``ds`` in format ``fmt`` (``recbole`` or ``mmrec``) to ``<out>/<name>/``; with
    ``split``, that split's parts (and, for recbole, its test qrels)."""
    if fmt not in FORMATS:
        raise FusebenchError(f"unknown export format {fmt!r}; available: {', '.join(FORMATS)}")
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise FusebenchError(f"{out} is a file; the export writes a folder inside OUT, so OUT must be a folder")
    token = safe_name(ds.name)
    if fmt == "recbole" and split is not None:
        # one folder per split, side by side; and RecBole reads `dataset: ml-100k` from its own
        # bundled copy whatever data_path says, so an export must not be called ml-100k
        token = safe_name(f"{ds.name}-{split.protocol}-seed{split.seed}")
    target = out / token
    if target.exists():
        raise FusebenchError(f"{target} already exists; remove it or choose another output folder")
    if split is not None and split.train.shape != (ds.n_users, ds.n_items):
        raise FusebenchError(f"split has shape {split.train.shape}, dataset {ds.name!r} has {(ds.n_users, ds.n_items)}")
    made = not out.exists()  # a folder this call creates is removed again if the export fails
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{token}-", dir=out))
    done = False
    try:
        work = tmp / token
        work.mkdir()
        if fmt == "recbole" and split is not None:
            write_recbole_folder(ds, work, labels=_recbole_split_labels(ds, split))
            write_qrels(ds, split.test, work / f"{token}.test.qrels")
        elif fmt == "recbole":
            write_recbole_folder(ds, work)
        else:
            _write_mmrec(ds, work, split)
        os.replace(work, target)
        done = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if made and not done:
            shutil.rmtree(out, ignore_errors=True)  # nothing half-written: not even the empty OUT
    return target
