"""Pre-flight checks of the models' large allocations and long computations: refused (or
announced) before the work starts, with the estimate."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import baselines.ease as ease
import datasets.memory as memory
from baselines import FitData, make_model
from datasets.errors import FusebenchError
from fusion_models.graphs import cosine_knn


def test_the_item_knn_graph_is_refused_when_its_estimate_exceeds_free_memory(monkeypatch):
    x = torch.randn(3000, 16)
    rows, cols = cosine_knn(x, 10)  # fits: built
    assert len(rows) == 3000 * 10
    monkeypatch.setattr(memory, "available_bytes", lambda: 1_000_000)
    with pytest.raises(
        FusebenchError,
        match=r"item kNN graph over 3,000 items \(k=10\) needs about .* GiB of memory"
        r".*choose a smaller knn_k",
    ):
        cosine_knn(x, 10)


def test_ease_says_once_when_the_catalogue_makes_it_slow(monkeypatch, capsys):
    monkeypatch.setattr(ease, "SLOW_ITEMS", 40)
    monkeypatch.setattr(ease, "_WARNED", set())
    rng = np.random.default_rng(0)
    train = sp.csr_matrix((rng.random((30, 50)) < 0.2).astype(np.float32))
    for _ in range(2):
        make_model("ease").fit(FitData(train=train))
    err = capsys.readouterr().err
    assert err.count("note: ease on 50 items factors a 50 x 50 matrix") == 1
    make_model("ease").fit(FitData(train=train[:, :30]))  # below the threshold: silent
    assert capsys.readouterr().err == ""
