"""`python -m benchmark reproduce`: published tables as data, the ml-1m and Amazon loaders,
the Amazon raw pipeline, and end-to-end reports on generated fixture data."""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import datasets
from benchmark.cli import main
from benchmark.reproduce import Cell, load_paper, paper_names
from conftest import write_mmrec_folder
from datasets import amazon, ml1m
from datasets.registry import clear_cache


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


# ----------------------------------------------------------------------------- fixtures
def write_ml1m_zip(folder: Path, n_users: int = 30, n_items: int = 40, seed: int = 0) -> Path:
    """A small ml-1m.zip in GroupLens' format (``::``-separated .dat files, latin-1)."""
    rng = np.random.default_rng(seed)
    ratings = []
    for u in range(1, n_users + 1):
        for i in rng.choice(np.arange(1, n_items + 1), size=int(rng.integers(8, 20)), replace=False):
            ratings.append(f"{u}::{i}::{int(rng.integers(1, 6))}::{978300000 + int(rng.integers(0, 10**6))}")
    movies = [f"{i}::Movie {i} ({1990 + i % 20})::Comedy|Drama" for i in range(1, n_items + 3)]
    movies[0] = "1::Café Noir (1995)::Animation|Children's"  # a latin-1 character
    users = [f"{u}::F::25::4::12345" for u in range(1, n_users + 1)]
    path = folder / "ml-1m.zip"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", "\n".join(ratings).encode("latin-1"))
        zf.writestr("ml-1m/movies.dat", "\n".join(movies).encode("latin-1"))
        zf.writestr("ml-1m/users.dat", "\n".join(users).encode("latin-1"))
    return path


@pytest.fixture
def ml1m_dir(tmp_path, monkeypatch):
    data = tmp_path / "data"
    z = write_ml1m_zip(data)
    monkeypatch.setattr(ml1m, "ZIP_MD5", hashlib.md5(z.read_bytes()).hexdigest())
    monkeypatch.setenv("FUSEBENCH_DATA_DIR", str(data))
    return data


@pytest.fixture
def amazon_dir(tmp_path, monkeypatch):
    data = tmp_path / "data"
    write_mmrec_folder(data / "amazon-baby", "baby", seed=1)
    write_mmrec_folder(data / "sports", "sports", seed=2)  # MMRec's own folder name works too
    monkeypatch.setenv("FUSEBENCH_DATA_DIR", str(data))
    return data


# ----------------------------------------------------------------------------- the tables
def test_tables_are_shipped_and_match_their_sources():
    assert {"mmrec-amazon", "recbole-gnn-ml1m"} <= set(paper_names())
    mm = load_paper("mmrec-amazon")
    assert "github.com/enoche/MMRec" in mm.info["source"] and mm.info["source_commit"]
    freedom = mm.results["amazon-baby"]["freedom"]
    assert (freedom["recall@10"], freedom["recall@20"], freedom["ndcg@10"], freedom["ndcg@20"]) == (
        0.0627,
        0.0992,
        0.0330,
        0.0424,
    )
    assert mm.results["amazon-sports"]["bm3"]["recall@20"] == 0.0980
    assert mm.results["amazon-baby"]["bpr"]["ndcg@20"] == 0.0249
    assert set(mm.results["amazon-baby"]) == {"bpr", "lightgcn", "vbpr", "lattice", "bm3", "freedom"}
    assert mm.protocol["config"] == "mmrec" and mm.tolerance == 0.05
    rb = load_paper("recbole-gnn-ml1m")
    assert "RUCAIBox/RecBole-GNN" in rb.info["source"]
    bpr = rb.results["ml-1m"]["bpr"]
    assert [bpr[m] for m in ("recall@10", "mrr@10", "ndcg@10", "hit@10", "precision@10")] == [
        0.1776,
        0.4187,
        0.2401,
        0.7199,
        0.1779,
    ]
    assert rb.results["ml-1m"]["lightgcn"]["ndcg@10"] == 0.2538
    assert rb.protocol["rating_threshold"] == 3 and rb.protocol["split"] == "random"
    assert rb.models["lightgcn"]["params"]["learning_rate"] == 0.002


def test_cell_verdicts():
    c = Cell("d", "m", "recall@20", 0.100, [0.099, 0.101, 0.100])
    assert c.reproduced and "CI" in c.verdict
    far = Cell("d", "m", "recall@20", 0.100, [0.050, 0.051, 0.049])
    assert far.verdict == "not reproduced (ours lower)" and far.rel == pytest.approx(-0.5)
    tol = Cell("d", "m", "recall@20", 0.100, [0.0970, 0.0971, 0.0969], tolerance=0.05)
    assert tol.verdict.startswith("reproduced (within")
    one = Cell("d", "m", "recall@20", 0.120, [0.100], [np.array([0.0, 0.1, 0.2, 0.2, np.nan])])
    assert one.ci_seeds is None and one.std == 0.0
    lo, hi = one.ci_users  # one seed: the per-user bootstrap decides
    assert lo <= 0.120 <= hi and one.verdict == "reproduced (in 95% CI)"


def test_list_works_offline_and_names_missing_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FUSEBENCH_DATA_DIR", str(tmp_path))
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert "mmrec-amazon" in out and "recbole-gnn-ml1m" in out
    assert f"missing: {tmp_path}/ml-1m.zip" in out
    assert f"missing: {tmp_path}/amazon-baby/baby.inter" in out


def test_missing_data_exits_2_one_line_per_file_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FUSEBENCH_DATA_DIR", str(tmp_path / "empty"))
    results = tmp_path / "results"
    assert main(["reproduce", "mmrec-amazon", "--results", str(results), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    missing = [line for line in err.splitlines() if line.startswith("missing: ")]
    assert len(missing) == 6  # 3 files x 2 datasets
    assert any(line.startswith(f"missing: {tmp_path}/empty/amazon-sports/image_feat.npy") for line in missing)
    assert main(["reproduce", "recbole-gnn-ml1m", "--results", str(results), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("missing: ")][0].startswith(
        f"missing: {tmp_path}/empty/ml-1m.zip"
    )
    assert not results.exists()
    assert main(["reproduce", "no-such-table"]) == 2


# ----------------------------------------------------------------------------- loaders
def test_ml1m_loader_reads_the_zip_and_verifies_its_checksum(ml1m_dir, monkeypatch):
    ds = datasets.load("ml-1m")
    assert ds.n_users == 30 and ds.n_items <= 40 and (ds.interactions["timestamp"] > 0).all()
    assert ds.item_text[0].startswith("Café Noir (1995) Animation Children's")
    assert ds.meta["checksum"].startswith("md5")
    clear_cache()
    monkeypatch.setattr(ml1m, "ZIP_MD5", "0" * 32)
    with pytest.raises(datasets.FusebenchError, match="checksum mismatch"):
        datasets.load("ml-1m")


def test_ml1m_extracted_folder_and_malformed_file(tmp_path, monkeypatch):
    folder = tmp_path / "data" / "ml-1m"
    folder.mkdir(parents=True)
    with zipfile.ZipFile(write_ml1m_zip(tmp_path / "z")) as zf:
        for m in ml1m.MEMBERS:
            (folder / m).write_bytes(zf.read(f"ml-1m/{m}"))
    monkeypatch.setenv("FUSEBENCH_DATA_DIR", str(tmp_path / "data"))
    ds = datasets.load("ml-1m")
    assert ds.meta["checksum"] == "none (extracted folder)"
    (folder / "ratings.dat").write_text("1::2::5\n")
    clear_cache()
    with pytest.raises(datasets.FusebenchError, match="ratings.dat line 1"):
        datasets.load("ml-1m")


def test_amazon_loader_validates_mmrec_folders(amazon_dir):
    baby = datasets.load("amazon-baby")
    assert baby.name == "amazon-baby" and baby.given_split is not None
    assert baby.features["image"].shape == (30, 16) and baby.features["text"].shape == (30, 8)
    assert baby.meta["stats_match"] is False  # a fixture, not MMRec's Baby
    assert datasets.load("amazon-sports").n_items == 30
    (amazon_dir / "sports" / "text_feat.npy").unlink()
    clear_cache()
    with pytest.raises(datasets.DatasetUnavailable, match="text_feat.npy"):
        datasets.load("amazon-sports")
    np.save(amazon_dir / "amazon-baby" / "image_feat.npy", np.zeros((29, 16), dtype=np.float32))
    clear_cache()
    with pytest.raises(datasets.FusebenchError, match="one row per itemID"):
        datasets.load("amazon-baby")


# ----------------------------------------------------------------------------- raw pipeline
def write_raw_amazon(folder: Path, seed: int = 0) -> tuple[Path, Path, Path]:
    """Amazon 2018-format reviews and metadata (JSON lines) plus a 2014-format image .b file.

    12 dense users x 10 items (every pair reviewed with probability ~0.8) survive the
    5-core; user 'sparse' (3 reviews) and item 'B0RARE' (reviewed by 'sparse' and by
    'cascade') do not, and 'cascade' (5 reviews, one of them B0RARE) drops out after
    B0RARE is removed."""
    rng = np.random.default_rng(seed)
    items = [f"B0000000{i:02d}" for i in range(10)]
    rows = []
    for u in range(12):
        for it in items:
            if rng.random() < 0.8 or it in items[:5]:
                rows.append(
                    {
                        "overall": float(rng.integers(1, 6)),
                        "verified": True,
                        "reviewerID": f"U{u:03d}",
                        "asin": it,
                        "unixReviewTime": int(1400000000 + rng.integers(0, 10**7)),
                        "reviewText": "fine",
                        "summary": "ok",
                    }
                )
    rows += [
        {"overall": 4.0, "reviewerID": "sparse", "asin": a, "unixReviewTime": 1500000000 + k}
        for k, a in enumerate([items[0], items[1], "B0RARE"])
    ]
    rows += [
        {"overall": 3.0, "reviewerID": "cascade", "asin": a, "unixReviewTime": 1500000100 + k}
        for k, a in enumerate(items[:4] + ["B0RARE"])
    ]
    rows.append(dict(rows[0]))  # an exact duplicate: dropped
    folder.mkdir(parents=True, exist_ok=True)
    reviews = folder / "Baby_5.json"
    reviews.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    meta = folder / "meta_Baby.json"
    metas = [
        {
            "asin": it,
            "title": f"Soft toy {i}",
            "brand": "Acme",
            "category": ["Baby", "Toys"],
            "description": [f"A toy number {i}.", "Washable."],
        }
        for i, it in enumerate(items)
    ]
    metas.append({"asin": "B0RARE", "title": "Rare thing"})
    meta.write_text("\n".join(json.dumps(m) for m in metas) + "\n")
    images = folder / "image_features_Baby.b"
    with open(images, "wb") as fh:
        for i, it in enumerate(items[:-1]):  # the last item has no image
            fh.write(it.encode("ascii"))
            fh.write(np.full(4096, i, dtype="<f4").tobytes())
    return reviews, meta, images


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # TF-IDF/SVD on ten near-identical texts
def test_amazon_raw_pipeline_builds_a_loadable_5core_folder(tmp_path, monkeypatch):
    reviews, meta, images = write_raw_amazon(tmp_path / "raw")
    out = tmp_path / "data" / "amazon-baby"
    amazon.build_mmrec_folder(
        reviews, out, "baby", meta=meta, image_features=images, seed=3, text_encoder="text/tfidf-svd"
    )
    inter = pd.read_csv(out / "baby.inter", sep="\t")
    assert list(inter.columns) == ["userID", "itemID", "rating", "timestamp", "x_label"]
    assert inter.groupby("userID").size().min() >= 5 and inter.groupby("itemID").size().min() >= 5
    umap = pd.read_csv(out / "u_id_mapping.csv", sep="\t")
    imap = pd.read_csv(out / "i_id_mapping.csv", sep="\t", dtype={"asin": str})
    assert "sparse" not in set(umap["user_id"]) and "cascade" not in set(umap["user_id"])
    assert "B0RARE" not in set(imap["asin"]) and len(imap) == 10 and len(umap) == 12
    assert not inter.duplicated(["userID", "itemID", "timestamp"]).any()
    for _, g in inter.groupby("userID"):  # MMRec's split rule
        n = len(g)
        held = int(n * 0.2)
        want = (1, 1) if n < 10 else (held // 2, held - held // 2)
        assert ((g["x_label"] == 1).sum(), (g["x_label"] == 2).sum()) == want
    img = np.load(out / "image_feat.npy")
    last = int(imap.loc[imap["asin"] == "B000000009", "itemID"].iloc[0])
    assert img.shape == (10, 4096) and np.allclose(img[last], np.mean(np.arange(9)))  # the mean fills the gap
    assert (out / "missed_img_itemIDs.csv").read_text().strip() == str(last)
    text = pd.read_csv(out / "item_text.tsv", sep="\t")
    assert text["text"].iloc[0].startswith("Soft toy") and "Acme Baby Toys" in text["text"].iloc[0]
    monkeypatch.setenv("FUSEBENCH_DATA_DIR", str(tmp_path / "data"))
    ds = datasets.load("amazon-baby")
    assert ds.n_users == 12 and ds.n_items == 10 and set(np.unique(ds.given_split)) == {0, 1, 2}
    assert datasets.load("mmrec:" + str(out)).n_interactions == len(inter)
    # same seed, same folder
    again = amazon.build_mmrec_folder(reviews, tmp_path / "again", "baby", meta=meta, seed=3, text_encoder=None)
    assert pd.read_csv(again / "baby.inter", sep="\t").equals(inter)


def test_mmrec_split_rule_small_and_large_users():
    users = np.array([0] * 5 + [1] * 23)
    order, labels = amazon.mmrec_split_labels(users, seed=0)
    assert sorted(order.tolist()) == list(range(28))
    lab0, lab1 = labels[:5], labels[5:]
    assert lab0.tolist() == [0, 0, 0, 1, 2]
    assert (lab1 == 1).sum() == 2 and (lab1 == 2).sum() == 2 and (lab1 == 0).sum() == 19


# ----------------------------------------------------------------------------- end to end
def _check_report(path: Path, models: list[str], metrics: list[str]) -> str:
    text = path.read_text()
    assert (
        "| Model | Metric | Published | Ours (mean ± std) | Δ abs | Δ rel | 95% CI (seeds, t) | "
        "95% CI (users, bootstrap) | Verdict |" in text
    )
    assert "## Known protocol differences that can explain a gap" in text
    assert "Parameters overridden on the command line" in text and re.search(
        r"Summary: \d+ of \d+ cells reproduced", text
    )
    rows = [
        line for line in text.splitlines() if line.startswith("| ") and "reproduced" in line and "Verdict" not in line
    ]
    assert len(rows) == len(models) * len(metrics)
    for row in rows:
        cols = [c.strip() for c in row.strip("|").split("|")]
        assert re.fullmatch(r"0\.\d{4}", cols[2]) and re.fullmatch(r"\d\.\d{4} ± \d\.\d{4}", cols[3])
        assert re.fullmatch(r"[+-]\d\.\d{4}", cols[4]) and cols[5].endswith("%")
        assert re.fullmatch(r"\[-?\d\.\d{4}, \d\.\d{4}\]", cols[6]) and cols[7].startswith("[")
        assert cols[8].startswith(("reproduced", "not reproduced"))
    return text


def test_reproduce_mmrec_table_end_to_end_on_fixture_data(amazon_dir, tmp_path, capsys):
    results = tmp_path / "results"
    argv = [
        "reproduce",
        "mmrec-amazon",
        "--seeds",
        "2",
        "--param",
        "epochs=1",
        "--results",
        str(results),
        "--device",
        "cpu",
        "--models",
        "bpr,freedom",
    ]
    assert main(argv) == 0
    path = results / "reproductions" / "mmrec-amazon.md"
    assert capsys.readouterr().out.strip() == f"wrote {path}"
    text = _check_report(path, ["bpr", "freedom"] * 2, ["r10", "r20", "r50", "n10", "n20", "n50"])
    assert "| FREEDOM | recall@10 | 0.0627 |" in text and "## Sports (`amazon-sports`)" in text
    assert "DIFFER" in text and "Models of the table not run this time: lightgcn, vbpr, lattice, bm3." in text
    assert "MMRec picks the grid point with the best *test* Recall@20" in text
    # a rerun resumes from the records (nothing retrained) and writes the same cells
    before = sorted(p.name for p in (results / "runs").rglob("*.json"))
    assert main(argv) == 0
    assert sorted(p.name for p in (results / "runs").rglob("*.json")) == before
    assert len(before) == 2 * 2 * 2


def test_reproduce_recbole_table_end_to_end_on_fixture_ml1m(ml1m_dir, tmp_path):
    results = tmp_path / "results"
    assert (
        main(
            [
                "reproduce",
                "recbole-gnn-ml1m",
                "--seeds",
                "2",
                "--param",
                "epochs=2",
                "--results",
                str(results),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    text = _check_report(
        results / "reproductions" / "recbole-gnn-ml1m.md",
        ["bpr", "lightgcn"],
        ["recall", "mrr", "ndcg", "hit", "precision"],
    )
    assert "| BPR | mrr@10 | 0.4187 |" in text and "| LightGCN | hit@10 | 0.7330 |" in text
    assert "source 6,040 / 3,629 / 836,478" in text
    rec = json.loads(next((results / "runs").rglob("*.json")).read_text())
    assert rec["dataset"]["rating_threshold"] == 3.0 and rec["split"]["protocol"] == "random"
    assert rec["training"]["metric"] == "mrr@10" and rec["model"]["params"]["epochs"] == 2


def test_reproduce_user_errors(amazon_dir, tmp_path):
    results = tmp_path / "results"
    assert main(["reproduce", "mmrec-amazon", "--models", "ease", "--results", str(results)]) == 2
    assert main(["reproduce", "mmrec-amazon", "--param", "nope=1", "--results", str(results)]) == 2
    assert main(["reproduce"]) == 2
    assert not results.exists()


def test_reproduce_grid_selects_on_validation(ml1m_dir, tmp_path, capsys):
    results = tmp_path / "results"
    assert (
        main(
            [
                "reproduce",
                "recbole-gnn-ml1m",
                "--models",
                "lightgcn",
                "--grid",
                "--param",
                "epochs=1",
                "--param",
                "n_layers=2",
                "--param",
                "reg_weight=0.0001",
                "--seeds",
                "2",
                "--results",
                str(results),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert err.count("(grid)") == 3  # learning_rate in [0.005, 0.002, 0.001]; the overridden ones are not searched
    recs = [json.loads(p.read_text()) for p in (results / "runs").rglob("*.json")]
    assert len(recs) == 3 + 1  # three grid points on seed 0, the chosen one on seed 1
    best = max((r for r in recs if r["seed"] == 0), key=lambda r: r["valid"]["mrr@10"])
    seed1 = next(r for r in recs if r["seed"] == 1)
    assert seed1["model"]["params"]["learning_rate"] == best["model"]["params"]["learning_rate"]
    text = (results / "reproductions" / "recbole-gnn-ml1m.md").read_text()
    assert "Grid search (--grid)" in text and "| ml-1m | LightGCN |" in text and "| 3 (mrr@10 " in text
