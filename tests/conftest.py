"""Shared test setup: offline data mirror, a throw-away cache, dataset fixtures.

At import (so that subprocesses started by tests inherit it too):
- ``FUSEBENCH_DATA_DIR`` points at ``../shared/data`` beside the repository when it exists;
- ``FUSEBENCH_CACHE`` points at a temporary folder (tests never write to ``~/.cache``);
- ``FUSEBENCH_OFFLINE=1``: no test may reach the network; download tests unset it and
  serve files from a ``file://`` URL or a monkeypatched ``urlopen``.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if SHARED_DATA.is_dir():
    os.environ["FUSEBENCH_DATA_DIR"] = str(SHARED_DATA)
_CACHE = tempfile.mkdtemp(prefix="fusebench-test-cache-")
os.environ["FUSEBENCH_CACHE"] = _CACHE
os.environ["FUSEBENCH_OFFLINE"] = "1"
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

from datasets import DatasetUnavailable, MultimodalDataset, load  # noqa: E402


@pytest.fixture(scope="session")
def ml100k() -> MultimodalDataset:
    if importlib.util.find_spec("recbole") is None:
        pytest.skip("recbole is not installed (it ships MovieLens-100K)")
    return load("ml-100k")


@pytest.fixture(scope="session")
def mls() -> MultimodalDataset:
    return load("ml-latest-small")


@pytest.fixture(scope="session")
def lfm2k() -> MultimodalDataset:
    try:
        return load("lfm2k")
    except DatasetUnavailable as exc:
        pytest.skip(f"lfm2k files are not in the offline mirror: {exc}")


def make_tiny_dataset(with_timestamps: bool = True, name: str = "tiny") -> MultimodalDataset:
    """5 users x 6 items, 17 interactions: user 0 has 6, user 1 has 5, user 2 has 3,
    user 3 has 2, user 4 has 1; ratings 1..5; timestamps increasing per user."""
    rows = [
        (0, 0, 5, 10),
        (0, 1, 4, 11),
        (0, 2, 3, 12),
        (0, 3, 2, 13),
        (0, 4, 1, 14),
        (0, 5, 5, 15),
        (1, 1, 4, 20),
        (1, 2, 5, 21),
        (1, 3, 2, 22),
        (1, 0, 3, 23),
        (1, 5, 4, 24),
        (2, 0, 5, 30),
        (2, 4, 3, 31),
        (2, 5, 1, 32),
        (3, 2, 4, 40),
        (3, 3, 5, 41),
        (4, 1, 2, 50),
    ]
    df = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    df = df.astype({"user": np.int32, "item": np.int32, "rating": np.float32, "timestamp": np.int64})
    if not with_timestamps:
        df["timestamp"] = np.int64(-1)
    rng = np.random.default_rng(0)
    text = rng.normal(size=(6, 8)).astype(np.float32)
    return MultimodalDataset(
        name=name,
        interactions=df,
        n_users=5,
        n_items=6,
        user_ids=np.array([f"u{i}" for i in range(5)], dtype=object),
        item_ids=np.array([100 + i for i in range(6)], dtype=np.int64),
        features={"text": text},
        item_text=["red apple", "green apple", "red car", "blue car", "blue sky", ""],
        meta={"source": "in-memory test fixture", "license": "CC0", "citation": ""},
    )


@pytest.fixture
def tiny_dataset() -> MultimodalDataset:
    return make_tiny_dataset()


def trained_and_pop_recall(model, data, s, **train_kwargs) -> tuple[float, float]:
    """Train `model` on split `s` (early stopping on valid) and return its test Recall@20 and
    popularity's, both with train and valid items masked: the shared "learns something real"
    check of the model tests."""
    from baselines import make_model
    from benchmark.evaluate import evaluate
    from benchmark.training import train

    exclude = s.train + s.valid
    recall = lambda m: evaluate(m.score, s.test, exclude, metrics=("recall",), ks=(20,)).summary["recall@20"]  # noqa: E731
    pop = make_model("pop").fit(data)
    out = train(model, data, s.valid, **train_kwargs)
    assert out.best_epoch is not None
    return recall(model), recall(pop)


def synthetic_dataset(n_users=120, n_items=80, per_user=16, seed=0) -> MultimodalDataset:
    """`n_users` users with `per_user` distinct random items each (implicit, no timestamps)."""
    rng = np.random.default_rng(seed)
    rows = [(u, i) for u in range(n_users) for i in rng.choice(n_items, per_user, replace=False)]
    df = pd.DataFrame(rows, columns=["user", "item"]).astype({"user": np.int32, "item": np.int32})
    df["rating"] = np.float32(1.0)
    df["timestamp"] = np.int64(-1)
    return MultimodalDataset(
        name="synthetic",
        interactions=df,
        n_users=n_users,
        n_items=n_items,
        user_ids=np.arange(n_users),
        item_ids=np.arange(n_items),
        meta={"source": "test"},
    )


class ValidationBlend:
    """Mixin for iterative test models: scores blend the validation truth with seeded noise,
    `learned()` (0..1) saying how much truth the model holds at its current epoch. A subclass
    names where the truth of a seed's split lives (`truth(seed)`), so its validation curve is
    exactly the one the test draws."""

    iterative = True

    def truth(self, seed):
        raise NotImplementedError

    def learned(self) -> float:
        raise NotImplementedError

    def init(self, data):
        self.valid_ = self.truth(data.seed)
        self.noise_ = np.random.default_rng(data.seed).random(data.train.shape[1]).astype(np.float32)
        self.epoch_ = 0

    def train_epoch(self):
        self.epoch_ += 1
        return 1.0 / self.epoch_

    def score(self, users):
        w = self.learned()
        return w * self.valid_[users].toarray().astype(np.float32) + (1 - w) * self.noise_


def write_mmrec_folder(folder: Path, stem: str, n_users: int = 24, n_items: int = 30, seed: int = 0) -> Path:
    """An MMRec processed folder: <stem>.inter with x_label, image_feat.npy, text_feat.npy."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, size=int(rng.integers(6, 12)), replace=False)
        labels = [0] * (len(items) - 2) + [1, 2]
        rows += [(u, int(i), 5.0, 1300000000 + k, lab) for k, (i, lab) in enumerate(zip(items, labels))]
    rows.append((0, n_items - 1, 4.0, 1, 0))  # every item id present
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["userID", "itemID", "rating", "timestamp", "x_label"]).drop_duplicates(
        ["userID", "itemID"]
    ).to_csv(folder / f"{stem}.inter", sep="\t", index=False)
    np.save(folder / "image_feat.npy", rng.normal(size=(n_items, 16)).astype(np.float32))
    np.save(folder / "text_feat.npy", rng.normal(size=(n_items, 8)).astype(np.float32))
    return folder
