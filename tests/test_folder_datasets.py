"""The user's own folders in `run --all`: every job, in this process or in a worker, trains on
the folder's data (never on a registered dataset that shares its short name), and two folders
with one short name are told apart by an alias or refused with one line."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd

import datasets
from conftest import write_mmrec_folder
from datasets.export import export

REPO = Path(__file__).resolve().parents[1]


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "benchmark", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


def _records(results: Path) -> dict:
    out = {}
    for p in (results / "runs").rglob("*.json"):
        rec = json.loads(p.read_text())
        out[(rec["dataset"]["spec"], rec["model"]["name"])] = rec
    return out


def _folders(tmp_path: Path) -> list[str]:
    """An MMRec, a RecBole and a catalogue folder, each under a registered dataset's name."""
    mm = write_mmrec_folder(tmp_path / "mm", "lfm2k", n_users=30, n_items=25, seed=3)
    inner = datasets.load(f"mmrec:{mm}")
    rb = export(replace(inner, name="ml-latest-small"), "recbole", tmp_path / "rb")
    cat = tmp_path / "cat"
    cat.mkdir()
    rows = [(f"u{u}", f"i{(u * 5 + k) % 17}", 1 + k % 5) for u in range(25) for k in range(6)]
    pd.DataFrame(rows, columns=["user", "item", "rating"]).to_csv(cat / "interactions.csv", index=False)
    (cat / "catalogue.json").write_text(json.dumps({"name": "ml-100k"}))
    return [f"mmrec:{mm}", f"recbole:{rb}", f"catalogue:{cat}"]


def test_folder_datasets_in_workers_are_the_users_data(tmp_path):
    specs = _folders(tmp_path)
    runs = {}
    for jobs in ("1", "2"):
        results = tmp_path / f"results{jobs}"
        proc = _cli(
            "run",
            "--all",
            "--datasets",
            ",".join(specs),
            "--models",
            "pop,itemknn",
            "--no-tune",
            "--seeds",
            "1",
            "--jobs",
            jobs,
            "--results",
            str(results),
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "6 runs done, 0 already finished" in proc.stdout
        runs[jobs] = _records(results)
    assert (
        runs["1"].keys()
        == runs["2"].keys()
        == {(datasets.registry.resolve_name(s), m) for s in specs for m in ("pop", "itemknn")}
    )
    for key, rec in runs["1"].items():
        ds = datasets.load(key[0])
        assert rec["dataset"]["fingerprint"] == ds.fingerprint() and rec["dataset"]["n_users"] == ds.n_users
        assert ds.n_users in (30, 25)  # the folder's users, not lfm2k's 1,858 or ml-100k's 943
        assert runs["2"][key]["test"] == rec["test"] and runs["2"][key]["key"] == rec["key"]


def test_two_folders_with_one_name(tmp_path):
    a = write_mmrec_folder(tmp_path / "a", "shop", seed=1)
    b = write_mmrec_folder(tmp_path / "b", "shop", seed=2)
    results = tmp_path / "results"
    proc = _cli(
        "run",
        "--all",
        "--datasets",
        f"mmrec:{a},mmrec:{b}",
        "--models",
        "pop",
        "--no-tune",
        "--seeds",
        "1",
        "--results",
        str(results),
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and not results.exists()
    assert "both named 'shop'" in proc.stderr and f"shop_a=mmrec:{a}" in proc.stderr

    proc = _cli(
        "run",
        "--all",
        "--datasets",
        f"shop_a=mmrec:{a},shop_b=mmrec:{b}",
        "--models",
        "pop",
        "--no-tune",
        "--seeds",
        "1",
        "--jobs",
        "2",
        "--results",
        str(results),
    )
    assert proc.returncode == 0 and "2 runs done, 0 already finished" in proc.stdout, proc.stderr[-2000:]
    recs = _records(results)
    assert {r["dataset"]["name"] for r in recs.values()} == {"shop_a", "shop_b"}
    assert len({r["dataset"]["fingerprint"] for r in recs.values()}) == 2
    board = (results / "LEADERBOARD.md").read_text()
    assert "shop_a" in board and "shop_b" in board and f"shop_a=mmrec:{a}" in board

    proc = _cli("run", "--all", "--datasets", f"ml-100k=mmrec:{a}", "--models", "pop", "--results", str(results))
    assert proc.returncode == 2 and "registered dataset" in proc.stderr and proc.stderr.count("\n") == 1


def test_a_ragged_or_idless_catalogue_row_is_one_line(tmp_path):
    cat = tmp_path / "cat"
    cat.mkdir()
    for body, message in (
        ("user,item,rating\nu1,i1,5\nu2,i2,4,extra\n", "line 3 has 4 fields, the header 3"),
        ("user,item,rating\nu1,i1\n", "line 2 has 2 fields"),
        ("user,item,rating\nu1,i1,5\n ,i2,3\n", "line 3: empty user"),
    ):
        (cat / "interactions.csv").write_text(body)
        proc = _cli("run", "--dataset", f"catalogue:{cat}", "--model", "pop", "--results", str(tmp_path / "r"))
        assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "r").exists()


def test_ids_and_sizes_that_cannot_fit_are_refused_before_allocating(tmp_path):
    for top, message in ((2**40, "does not fit 32 bits"), (2**30, "only 25 distinct ids")):
        mm = write_mmrec_folder(tmp_path / f"mm{top}", "shop", seed=1)
        inter = mm / "shop.inter"
        lines = inter.read_text().splitlines()
        first = lines[1].split("\t")
        lines[1] = "\t".join([str(top), *first[1:]])
        inter.write_text("\n".join(lines) + "\n")
        proc = _cli("run", "--dataset", f"mmrec:{mm}", "--model", "pop", "--results", str(tmp_path / "r"))
        assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    proc = _cli(
        "run",
        "--dataset",
        "ml-100k",
        "--model",
        "bpr",
        "--param",
        "embedding_size=1000000000",
        "--results",
        str(tmp_path / "r"),
    )
    assert proc.returncode == 2 and "GiB of memory" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "r").exists()


def test_models_the_data_cannot_feed_are_skipped_in_a_campaign(tmp_path):
    mm = write_mmrec_folder(tmp_path / "mm", "shop", seed=2)  # item features, no item text
    results = tmp_path / "r"
    proc = _cli("run", "--dataset", f"mmrec:{mm}", "--model", "text-profile", "--results", str(results))
    assert proc.returncode == 2 and "needs item text" in proc.stderr and proc.stderr.count("\n") == 1
    assert not results.exists()
    proc = _cli(
        "run",
        "--all",
        "--datasets",
        f"mmrec:{mm}",
        "--models",
        "pop,text-profile,content-knn",
        "--no-tune",
        "--seeds",
        "1",
        "--results",
        str(results),
    )
    assert proc.returncode == 0 and "2 runs done" in proc.stdout, proc.stderr[-2000:]
    assert "skipped text-profile on shop: it needs item text" in proc.stderr


def _catalogue(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [(f"u{u}", f"i{(u * 3 + k) % 9}", 1000 + k) for u in range(12) for k in range(4)]
    pd.DataFrame(rows, columns=["user", "item", "timestamp"]).to_csv(folder / "interactions.csv", index=False)
    (folder / "catalogue.json").write_text(json.dumps({"name": name}))
    return folder


def test_names_and_values_a_file_cannot_be_trusted_with(tmp_path):
    import numpy as np
    import pytest

    from datasets.errors import FusebenchError
    from datasets.mmrec import load_feature

    for i, name in enumerate(["..", "a\x00b", "x|y", "<b>bold</b>", ".hidden"]):
        with pytest.raises(FusebenchError, match="dataset name"):
            datasets.load(f"catalogue:{_catalogue(tmp_path / f'c{i}', name)}")
    stamps = _catalogue(tmp_path / "stamps", "stamps")
    df = pd.read_csv(stamps / "interactions.csv")
    df["timestamp"] = df["timestamp"].astype(float)
    df.loc[0, "timestamp"] = 1e30
    df.to_csv(stamps / "interactions.csv", index=False)
    with pytest.raises(FusebenchError, match="does not fit 64-bit"):
        datasets.load(f"catalogue:{stamps}")
    np.save(tmp_path / "complex.npy", np.ones((3, 2), dtype=np.complex64))
    with pytest.raises(FusebenchError, match="complex"):
        load_feature(tmp_path / "complex.npy", "image")
    np.savez(tmp_path / "archive.npy", a=np.ones((3, 2)))  # numpy names it archive.npy.npz
    (tmp_path / "archive.npy.npz").rename(tmp_path / "archive.npy")
    with pytest.raises(FusebenchError, match="npz archive"):
        load_feature(tmp_path / "archive.npy", "image")


def test_a_feature_index_cannot_point_outside_its_catalogue(tmp_path):
    import numpy as np
    import pytest

    from datasets.errors import FusebenchError

    cat = _catalogue(tmp_path / "shop", "shop")
    ds = datasets.load(f"catalogue:{cat}", extracted=False)
    secret = tmp_path / "secret.npy"
    np.save(secret, np.ones((ds.n_items, 2), dtype=np.float32))
    (cat / "features").mkdir()
    (cat / "features" / "index.json").write_text(
        json.dumps(
            {
                "item_ids": [str(i) for i in ds.item_ids],
                "modalities": {"image/x": {"file": "../../secret.npy", "mask": "../../secret.npy"}},
            }
        )
    )
    with pytest.raises(FusebenchError, match="points outside its folder"):
        datasets.load(f"catalogue:{cat}")


def test_recbole_config_cannot_load_pretrained_files():
    import pytest

    from baselines.base import make_model
    from datasets.errors import FusebenchError

    with pytest.raises(FusebenchError, match="load files"):
        make_model("recbole:NeuMF", {"config": '{"use_pretrain": true, "mf_pretrain_path": "/tmp/x.pth"}'})


def test_a_folder_with_two_inter_files_takes_the_file_named_on_the_command_line(tmp_path):
    """The published Last.fm-2K and DBbook folders ship NAME.inter beside NAME_og_ids.inter."""
    folder = write_mmrec_folder(tmp_path / "lfm", "lfm2k", n_users=20)
    og = pd.read_csv(folder / "lfm2k.inter", sep="\t")
    og.assign(userID=og.userID + 1000).to_csv(folder / "lfm2k_og_ids.inter", sep="\t", index=False)
    proc = _cli("datasets", "info", f"mmrec:{folder}")
    assert proc.returncode == 2 and f"mmrec:{folder}/lfm2k.inter" in proc.stderr, proc.stderr
    ds = datasets.load(f"mmrec:{folder}/lfm2k.inter")
    assert ds.name == "lfm2k" and ds.n_users == 20 and ds.n_interactions == len(og)
    assert set(ds.features) == {"image", "text"}
    assert datasets.load(f"mmrec:{folder}/lfm2k_og_ids.inter").name == "lfm2k_og_ids"
    res = tmp_path / "res"
    proc = _cli(
        "run", "--dataset", f"mmrec:{folder}/lfm2k.inter", "--model", "pop", "--seed", "0", "--results", str(res)
    )
    assert proc.returncode == 0, proc.stderr
    (rec,) = _records(res).values()
    assert rec["dataset"]["spec"] == f"mmrec:{folder}/lfm2k.inter" and rec["dataset"]["n_users"] == 20
    missing = _cli("datasets", "info", f"mmrec:{folder}/nosuch.inter")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
