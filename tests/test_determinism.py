"""Every registered model, run twice in separate processes on the same small folder, writes
bit-identical records (the same metrics, epochs and per-user arrays): what differs between two
machines is then the machine (recorded in provenance.numerics), not the code."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import fusion_models  # noqa: F401  (registers the fusion models)
from baselines.base import model_names
from conftest import write_mmrec_folder

REPO = Path(__file__).resolve().parents[1]


def _run(specs: list[str], results: Path) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark",
            "run",
            "--all",
            "--datasets",
            ",".join(specs),
            "--no-tune",
            "--seeds",
            "1",
            "--epochs",
            "4",
            "--jobs",
            "1",
            "--results",
            str(results),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = {}
    for p in (results / "runs").rglob("*.json"):
        rec = json.loads(p.read_text())
        training = {k: v for k, v in rec["training"].items() if not k.endswith("seconds")}
        training["history"] = [{k: v for k, v in h.items() if "seconds" not in k} for h in training.get("history", [])]
        with np.load(p.with_suffix(".npz")) as z:
            arrays = {k: z[k].tobytes() for k in z.files}
        out[(rec["dataset"]["name"], rec["model"]["name"])] = (rec["key"], rec["valid"], rec["test"], training, arrays)
    return out


def test_every_model_is_bit_identical_across_processes(tmp_path):
    # item features from an MMRec folder, item text from a catalogue: between them every model runs
    folder = write_mmrec_folder(tmp_path / "shop", "shop", n_users=60, n_items=40, seed=5)
    cat = tmp_path / "books"
    cat.mkdir()
    rng = np.random.default_rng(7)
    rows = [(f"u{u}", f"b{i}") for u in range(50) for i in rng.choice(30, 8, replace=False)]
    pd.DataFrame(rows, columns=["user", "item"]).to_csv(cat / "interactions.csv", index=False)
    words = ["red", "blue", "war", "peace", "sea", "star", "night", "day"]
    pd.DataFrame(
        {"item": [f"b{i}" for i in range(30)], "text": [" ".join(rng.choice(words, 4)) for _ in range(30)]}
    ).to_csv(cat / "items.csv", index=False)
    specs = [f"mmrec:{folder}", f"catalogue:{cat}"]
    first, second = _run(specs, tmp_path / "a"), _run(specs, tmp_path / "b")
    assert set(first) == set(second) and {m for _, m in first} == set(model_names())
    for run in first:
        key1, valid1, test1, train1, arrays1 = first[run]
        key2, valid2, test2, train2, arrays2 = second[run]
        assert key1 == key2, run
        # json round-trips floats exactly, and NaN == NaN as text
        assert json.dumps(valid1) == json.dumps(valid2) and json.dumps(test1) == json.dumps(test2), run
        assert json.dumps(train1, sort_keys=True) == json.dumps(train2, sort_keys=True), run
        assert arrays1 == arrays2, run


def test_the_thread_count_does_not_move_the_gradients_of_embedding_lookups():
    """`table[index]`'s backward sums repeated rows in a thread-dependent order unless torch's
    deterministic kernels are on (seed_everything turns them on): with 2 threads, lightgcn's
    gradients differed between two evaluations at the same weights (measured on ml-100k)."""
    import torch

    from baselines import FitData, make_model
    from conftest import synthetic_dataset
    from datasets import split

    ds = synthetic_dataset(n_users=400, n_items=300, per_user=30)
    data = FitData.from_split(ds, split(ds, protocol="random", seed=0))
    threads = torch.get_num_threads()
    grads = []
    try:
        for n in (1, 2, 2, 2):
            torch.set_num_threads(n)
            model = make_model("lightgcn", {"epochs": 1, "batch_size": 4096})
            model.init(data)
            batch = [torch.as_tensor(b) for b in next(iter(model.epoch_batches()))]
            model.batch_loss(*batch).backward()
            grads.append(model.module_.item.weight.grad.clone())
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(grads[0], g) for g in grads[1:])
