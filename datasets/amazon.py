"""Amazon Baby / Sports / Clothing in MMRec's processed form, and the pipeline that builds them.

**Loading** (``amazon-baby``, ``amazon-sports``, ``amazon-clothing``). MMRec distributes its
processed folders through a Google Drive link in its ``data/README.md`` (github.com/enoche/MMRec);
they cannot be downloaded by script, and their checksums are not published, so fusebench
reads a folder the user has put in the mirror (``--data-dir`` / ``$FUSEBENCH_DATA_DIR``):
``<mirror>/amazon-baby/`` or ``<mirror>/baby/`` (MMRec's own folder name), holding

- ``baby.inter``: tab-separated ``userID itemID rating timestamp x_label`` (x_label 0/1/2 =
  MMRec's train/valid/test split; it becomes ``given_split``);
- ``image_feat.npy``: one row per itemID, the 4096-d CNN features published with the Amazon
  data (items without an image carry the mean row in MMRec's files);
- ``text_feat.npy``: one row per itemID, all-MiniLM-L6-v2 (384-d) of title + brand +
  categories + description.

`missing_files` lists, one line per file, what is absent; `load_amazon` validates the folder
through `datasets.mmrec` (ids, labels, one feature row per item) and records whether the
user/item/interaction counts equal the ones MMRec publishes (``meta["stats_match"]``) — a
folder that differs still loads, and the reproduction report says so.

**Building from raw files** (`build_mmrec_folder`, also ``python -m datasets.amazon``): the
steps of MMRec's ``preprocessing/`` notebooks, re-implemented (MMRec is GPL; no code copied):

1. reviews: JSON lines (Amazon 2014 or 2018 review files: ``reviewerID``, ``asin``,
   ``overall``, ``unixReviewTime``) or a header-less ratings CSV (2014 order ``user,item,
   rating,timestamp``, what MMRec used; the 2018 ratings-only files are ``item,user,rating,
   timestamp``: pass ``csv_columns``); rows missing an id or timestamp and duplicate
   (user, item, timestamp) rows are dropped;
2. k-core filtering (k = 5), repeated until every user and item has >= k interactions;
3. dense ids in order of first appearance (``u_id_mapping.csv``, ``i_id_mapping.csv``);
4. MMRec's split: rows shuffled (``seed``), grouped by user; a user with n < 10 interactions
   gets n - 2 train, 1 valid, 1 test; otherwise t = int(0.2 n) held out, t // 2 valid and the
   rest test (users with n < 3, possible only with k < 3, stay in train);
5. text: title + brand + categories (2014 ``categories`` list of lists, 2018 ``category``) +
   description (string or list), encoded with fusebench's ``text/minilm`` (all-MiniLM-L6-v2,
   the model MMRec's notebook uses) -> ``text_feat.npy``;
6. image: the published CNN features (``image_features_<Category>.b``: records of a 10-byte
   ASIN followed by 4096 little-endian float32), reordered by itemID; items without a
   record get the mean of the others (MMRec's choice; ``missing_image="zero"`` writes zero
   rows, which fusebench reads as missing) and are listed in ``missed_img_itemIDs.csv``.
   The Amazon 2018 release publishes image URLs, not CNN features: without a ``.b`` file no
   ``image_feat.npy`` is written (extract one with ``features extract``).

Note: MMRec's published Baby/Sports tables were built from the Amazon **2014** release
(``ratings_Sports_and_Outdoors.csv``, ``image_features_Sports_and_Outdoors.b``).
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from .core import MultimodalDataset
from .download import DatasetUnavailable, mirror_dir
from .errors import FusebenchError

# registry name -> (MMRec's folder / file stem, Amazon category file name)
SETS: dict[str, tuple[str, str]] = {
    "amazon-baby": ("baby", "Baby"),
    "amazon-sports": ("sports", "Sports_and_Outdoors"),
    "amazon-clothing": ("clothing", "Clothing_Shoes_and_Jewelry"),
}
FEATURES = {"image": "image_feat.npy", "text": "text_feat.npy"}
MMREC_DATA_URL = (
    "https://drive.google.com/drive/folders/13cBy1EA_saTUuXxVllKgtfci2A09jyaG (github.com/enoche/MMRec, data/README.md)"
)
# (users, items, interactions) as MMRec's evaluation/README.md states them; Clothing is not in that table
PUBLISHED_STATS: dict[str, tuple[int, int, int] | None] = {
    "amazon-baby": (19445, 7050, 160792),
    "amazon-sports": (35598, 18357, 296337),
    "amazon-clothing": None,
}
LICENSE = (
    "Amazon review data (McAuley et al.): for research use; MMRec's processed files carry no "
    "separate license. fusebench does not ship them."
)
CITATION = (
    "J. McAuley, C. Targett, Q. Shi, A. van den Hengel. 2015. Image-based Recommendations on Styles "
    "and Substitutes. SIGIR. | J. Ni, J. Li, J. McAuley. 2019. Justifying Recommendations using "
    "Distantly-Labeled Reviews and Fine-Grained Aspects. EMNLP. | H. Zhou, X. Zhou, Z. Zeng, L. Zhang, "
    "Z. Shen. 2023. A Comprehensive Survey on Multimodal Recommender Systems: Taxonomy, Evaluation, "
    "and Future Directions (MMRec)."
)


def _short(name: str) -> str:
    if name not in SETS:
        raise FusebenchError(f"unknown Amazon dataset {name!r}; available: {', '.join(SETS)}")
    return SETS[name][0]


def required_files(name: str) -> tuple[str, ...]:
    return (f"{_short(name)}.inter", *FEATURES.values())


def find_folder(name: str, data_dir: str | os.PathLike | None = None) -> Path | None:
    """``<mirror>/<name>/`` or ``<mirror>/<short>/`` (the first that exists), else None."""
    mirror = mirror_dir(data_dir)
    if mirror is None:
        return None
    for cand in (mirror / name, mirror / _short(name)):
        if cand.is_dir():
            return cand
    return None


def missing_files(name: str, data_dir: str | os.PathLike | None = None) -> list[str]:
    """One line per required file that is absent (empty list: the folder is complete)."""
    folder = find_folder(name, data_dir)
    mirror = mirror_dir(data_dir)
    if folder is None:
        folder = (mirror / name) if mirror is not None else Path("$FUSEBENCH_DATA_DIR") / name
    hint = (
        f"MMRec's processed {_short(name)}/ folder (Google Drive link in MMRec's data/README.md) "
        "or `python -m datasets.amazon`"
    )
    return [f"{folder / f}  <- {hint}" for f in required_files(name) if not (folder / f).is_file()]


def load_amazon(name: str, data_dir: str | os.PathLike | None = None) -> MultimodalDataset:
    from .mmrec import load_mmrec_folder

    lines = missing_files(name, data_dir)
    if lines:
        raise DatasetUnavailable(f"dataset {name!r}: missing " + "; ".join(lines))
    folder = find_folder(name, data_dir)
    short = _short(name)
    ds = load_mmrec_folder(folder, name=short, features=dict(FEATURES))
    if ds.given_split is None:
        raise FusebenchError(f"{folder / (short + '.inter')}: no x_label column (MMRec's train/valid/test labels)")
    stats = (ds.n_users, ds.n_items, ds.n_interactions)
    published = PUBLISHED_STATS.get(name)
    meta = {
        **ds.meta,
        "source": f"{folder} (MMRec processed format; {MMREC_DATA_URL})",
        "license": LICENSE,
        "citation": CITATION,
        "checksum": "none (MMRec publishes no checksums for its processed files)",
        "published_stats": None if published is None else dict(zip(("users", "items", "interactions"), published)),
        "stats": dict(zip(("users", "items", "interactions"), stats)),
        "stats_match": None if published is None else stats == published,
    }
    return replace(ds, name=name, meta=meta)


# ----------------------------------------------------------------------------- raw pipeline
def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _records(path: Path) -> Iterator[dict[str, Any]]:
    """JSON lines; lines that are Python literals (the 2014 metadata files) are read too."""
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                try:
                    rec = ast.literal_eval(line)
                except (ValueError, SyntaxError) as exc:
                    raise FusebenchError(f"{path.name} line {lineno}: neither JSON nor a Python literal") from exc
            if not isinstance(rec, dict):
                raise FusebenchError(f"{path.name} line {lineno}: expected an object")
            yield rec


def _is_json_lines(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    return name.endswith((".json", ".jsonl"))


def read_reviews(
    path: str | os.PathLike, csv_columns: tuple[str, ...] = ("user", "item", "rating", "timestamp")
) -> pd.DataFrame:
    """Raw interactions as columns user, item (original string ids), rating, timestamp."""
    path = Path(path)
    if not path.is_file():
        raise FusebenchError(f"reviews file {path} does not exist")
    if _is_json_lines(path):
        rows = [(r.get("reviewerID"), r.get("asin"), r.get("overall"), r.get("unixReviewTime")) for r in _records(path)]
        df = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    else:
        if sorted(csv_columns) != sorted(("user", "item", "rating", "timestamp")):
            raise FusebenchError(f"csv_columns must order user, item, rating, timestamp; got {csv_columns}")
        df = pd.read_csv(path, header=None, names=list(csv_columns), dtype={"user": str, "item": str})
        df = df[["user", "item", "rating", "timestamp"]]
    if df.empty:
        raise FusebenchError(f"{path.name}: no interactions")
    return df


def dedup_raw(df: pd.DataFrame) -> pd.DataFrame:
    """MMRec's cleaning: drop rows without user, item or timestamp, then duplicate (user, item, timestamp)."""
    df = df.dropna(subset=["user", "item", "timestamp"])
    return df.drop_duplicates(subset=["user", "item", "timestamp"]).reset_index(drop=True)


def k_core(df: pd.DataFrame, k: int = 5) -> pd.DataFrame:
    """Drop users and items with fewer than k interactions, repeatedly, until none is left."""
    if k < 1:
        raise FusebenchError(f"k must be >= 1, got {k}")
    while True:
        ucount = df["user"].map(df["user"].value_counts())
        icount = df["item"].map(df["item"].value_counts())
        keep = (ucount >= k) & (icount >= k)
        if keep.all():
            return df.reset_index(drop=True)
        df = df.loc[keep]


def mmrec_split_labels(users: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(row order, x_label per row in that order): MMRec's per-user split (see the module doc).

    Rows are shuffled with ``default_rng(seed)`` and stably grouped by user; the returned
    order lists the input row indices user by user."""
    users = np.asarray(users)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(users))
    order = perm[np.argsort(users[perm], kind="stable")]
    u = users[order]
    starts = np.r_[0, np.flatnonzero(u[1:] != u[:-1]) + 1]
    counts = np.diff(np.r_[starts, len(u)])
    n = np.repeat(counts, counts)
    pos = np.arange(len(u)) - np.repeat(starts, counts)
    held = (n * 0.2).astype(np.int64)
    n_valid = np.where(n < 10, 1, held // 2)
    n_test = np.where(n < 10, 1, held - held // 2)
    n_train = n - n_valid - n_test
    labels = np.where(pos < n_train, 0, np.where(pos < n_train + n_valid, 1, 2))
    labels[n < 3] = 0
    return order, labels.astype(np.int64)


def _flatten(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _flatten(v)]
    return [str(value)]


def item_texts(meta_path: str | os.PathLike) -> dict[str, str]:
    """asin -> "title brand categories description" from a 2014 or 2018 metadata file."""
    out = {}
    for rec in _records(Path(meta_path)):
        asin = rec.get("asin")
        if asin is None:
            continue
        parts = (
            _flatten(rec.get("title"))
            + _flatten(rec.get("brand"))
            + _flatten(rec.get("categories", rec.get("category")))
            + _flatten(rec.get("description"))
        )
        out[str(asin)] = " ".join(" ".join(parts).split())
    return out


def read_image_features(
    path: str | os.PathLike, wanted: set[str] | None = None, dim: int = 4096
) -> dict[str, np.ndarray]:
    """asin -> float32 vector from a published ``image_features_*.b`` file (streamed)."""
    path = Path(path)
    rec = 10 + 4 * dim
    out = {}
    with open(path, "rb") as fh:
        while True:
            head = fh.read(10)
            if not head:
                break
            body = fh.read(4 * dim)
            if len(head) != 10 or len(body) != 4 * dim:
                raise FusebenchError(
                    f"{path.name}: truncated record (each is a 10-byte ASIN + {dim} float32, {rec} bytes)"
                )
            asin = head.decode("ascii", errors="replace")
            if wanted is None or asin in wanted:
                out[asin] = np.frombuffer(body, dtype="<f4").copy()
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_mmrec_folder(
    reviews: str | os.PathLike,
    out_dir: str | os.PathLike,
    name: str,
    meta: str | os.PathLike | None = None,
    image_features: str | os.PathLike | None = None,
    k: int = 5,
    seed: int = 0,
    csv_columns: tuple[str, ...] = ("user", "item", "rating", "timestamp"),
    text_encoder: str | None = "text/minilm",
    missing_image: str = "mean",
    image_dim: int = 4096,
) -> Path:
    """Build an MMRec-format folder ``out_dir`` (``<name>.inter``, id maps, features); see the module doc."""
    if missing_image not in ("mean", "zero"):
        raise FusebenchError(f"missing_image must be 'mean' or 'zero', got {missing_image!r}")
    out = Path(out_dir)
    df = k_core(dedup_raw(read_reviews(reviews, csv_columns)), k)
    if df.empty:
        raise FusebenchError(f"no interactions survive the {k}-core filter")
    u_ids = pd.unique(df["user"])
    i_ids = pd.unique(df["item"])
    u_map = {x: i for i, x in enumerate(u_ids)}
    i_map = {x: i for i, x in enumerate(i_ids)}
    inter = pd.DataFrame(
        {
            "userID": df["user"].map(u_map).astype(np.int64),
            "itemID": df["item"].map(i_map).astype(np.int64),
            "rating": pd.to_numeric(df["rating"], errors="coerce").fillna(0.0).astype(np.float64),
            "timestamp": pd.to_numeric(df["timestamp"], errors="coerce").astype(np.int64),
        }
    )
    order, labels = mmrec_split_labels(inter["userID"].to_numpy(), seed)
    inter = inter.iloc[order].reset_index(drop=True)
    inter["x_label"] = labels
    out.mkdir(parents=True, exist_ok=True)
    inter.to_csv(out / f"{name}.inter", sep="\t", index=False)
    pd.DataFrame({"user_id": u_ids, "userID": np.arange(len(u_ids))}).to_csv(
        out / "u_id_mapping.csv", sep="\t", index=False
    )
    pd.DataFrame({"asin": i_ids, "itemID": np.arange(len(i_ids))}).to_csv(
        out / "i_id_mapping.csv", sep="\t", index=False
    )
    info: dict[str, Any] = {
        "reviews": {"file": Path(reviews).name, "sha256": _sha256(Path(reviews))},
        "k_core": k,
        "split": "MMRec per-user (n<10: 1 valid + 1 test; else 20% held out, half valid)",
        "seed": seed,
        "users": len(u_ids),
        "items": len(i_ids),
        "interactions": len(inter),
    }
    if meta is not None:
        texts = item_texts(meta)
        item_text = [texts.get(str(a), "") for a in i_ids]
        pd.DataFrame({"itemID": np.arange(len(i_ids)), "text": item_text}).to_csv(
            out / "item_text.tsv", sep="\t", index=False
        )
        info["meta"] = {
            "file": Path(meta).name,
            "sha256": _sha256(Path(meta)),
            "items_without_text": int(sum(not t for t in item_text)),
        }
        if text_encoder:
            from .encoders import get_encoder

            res = get_encoder(text_encoder).encode(item_text)
            np.save(out / "text_feat.npy", np.asarray(res.features, dtype=np.float32))
            info["text_encoder"] = text_encoder
    if image_features is not None:
        feats = read_image_features(image_features, set(map(str, i_ids)), image_dim)
        missed = [i for i, a in enumerate(i_ids) if str(a) not in feats]
        if not feats:
            raise FusebenchError(f"{Path(image_features).name}: no item of the filtered data has an image feature")
        fill = (
            np.mean(np.stack(list(feats.values())), axis=0)
            if missing_image == "mean"
            else np.zeros(image_dim, dtype=np.float32)
        ).astype(np.float32)
        mat = np.stack([feats.get(str(a), fill) for a in i_ids]).astype(np.float32)
        np.save(out / "image_feat.npy", mat)
        np.savetxt(out / "missed_img_itemIDs.csv", np.asarray(missed, dtype=np.int64), fmt="%d", delimiter=",")
        info["image"] = {
            "file": Path(image_features).name,
            "missing": len(missed),
            "missing_filled_with": missing_image,
        }
    (out / "build.json").write_text(json.dumps(info, indent=2, sort_keys=True))
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m datasets.amazon",
        description="Build an MMRec-format folder from raw Amazon review/metadata files",
    )
    p.add_argument("--reviews", required=True, help="reviews JSON lines (.json[.gz]) or ratings CSV")
    p.add_argument("--meta", help="metadata JSON lines / Python-literal lines (.json[.gz])")
    p.add_argument("--images", help="published CNN image features (image_features_<Category>.b)")
    p.add_argument("--name", required=True, help="file stem, e.g. baby (writes baby.inter)")
    p.add_argument("--out", required=True, help="output folder, e.g. $FUSEBENCH_DATA_DIR/amazon-baby")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--csv-columns",
        default="user,item,rating,timestamp",
        help="column order of a ratings CSV (Amazon 2018 ratings-only files: item,user,rating,timestamp)",
    )
    p.add_argument("--no-text", action="store_true", help="skip the MiniLM text features")
    args = p.parse_args(argv)
    try:
        out = build_mmrec_folder(
            args.reviews,
            args.out,
            args.name,
            meta=args.meta,
            image_features=args.images,
            k=args.k,
            seed=args.seed,
            csv_columns=tuple(args.csv_columns.split(",")),
            text_encoder=None if args.no_text else "text/minilm",
        )
    except FusebenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
