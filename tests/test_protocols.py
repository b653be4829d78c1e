"""The MMRec-compatible protocol, --modalities and the modality ablation command."""

from __future__ import annotations

import numpy as np
import pytest

from baselines import FitData, make_model
from benchmark.ablation import variants
from benchmark.cli import main
from benchmark.evaluate import evaluate
from benchmark.protocol import Protocol
from benchmark.records import RecordStore
from benchmark.seed_run import run_one
from datasets import split


def _records(results):
    return list(RecordStore(results).records())


def test_mmrec_config_is_mmrecs_protocol():
    cfg = Protocol.mmrec()
    assert (cfg.patience, cfg.epochs, cfg.mask_valid_at_test, cfg.metric) == (21, 1000, False, "recall@20")
    assert cfg.identity()["protocol"] == "mmrec"
    assert "protocol" not in Protocol().identity()  # default records keep their keys


def test_mmrec_protocol_masks_train_only_at_test(lfm2k, tmp_path):
    s = split(lfm2k, "given")
    store = RecordStore(tmp_path)
    ours = run_one(store, lfm2k, s, "pop", cfg=Protocol()).record
    mmrec = run_one(store, lfm2k, s, "pop", cfg=Protocol.mmrec()).record
    assert ours["key"] != mmrec["key"]
    assert mmrec["training"]["protocol"] == "mmrec" and mmrec["training"]["mask_valid_at_test"] is False
    pop = make_model("pop").fit(FitData(train=s.train, seed=0))
    for rec, exclude in ((ours, s.train + s.valid), (mmrec, s.train)):
        expected = evaluate(pop.score, s.test, exclude, metrics=("recall",), ks=(20,)).summary["recall@20"]
        assert rec["test"]["recall@20"] == pytest.approx(expected, abs=1e-12)
    assert ours["test"]["recall@20"] != mmrec["test"]["recall@20"]


def test_mmrec_protocol_raises_the_epoch_cap_unless_set(lfm2k, tmp_path):
    s = split(lfm2k, "given")
    cfg = Protocol.mmrec(patience=1)
    rec = run_one(
        RecordStore(tmp_path), lfm2k, s, "fusion-late", {"embedding_size": 8, "learning_rate": 0.05}, cfg
    ).record
    assert rec["model"]["params"]["epochs"] == 1000
    assert rec["training"]["epochs_run"] < 1000 and rec["training"]["stopped_early"]
    rec = run_one(RecordStore(tmp_path), lfm2k, s, "fusion-late", {"embedding_size": 8, "epochs": 2}, cfg).record
    assert rec["model"]["params"]["epochs"] == 2


def test_cli_mmrec_needs_a_given_split(tmp_path, capsys):
    code = main(
        [
            "run",
            "--dataset",
            "ml-100k",
            "--model",
            "pop",
            "--protocol",
            "mmrec",
            "--seeds",
            "1",
            "--results",
            str(tmp_path / "r"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "no split of its own" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_cli_modalities_flag(lfm2k, tmp_path, capsys):
    res = tmp_path / "r"
    code = main(
        [
            "run",
            "--dataset",
            "lfm2k",
            "--model",
            "content-knn",
            "--modalities",
            "audio/vggish",
            "--seed",
            "0",
            "--no-tune",
            "--results",
            str(res),
        ]
    )
    assert code == 0
    (rec,) = _records(res)
    assert rec["model"]["modalities"] == ["audio/vggish"]
    code = main(["run", "--dataset", "lfm2k", "--model", "pop", "--modalities", "text", "--results", str(res)])
    assert code == 2 and "reads item features" in capsys.readouterr().err


def test_variants():
    assert [v.label for v in variants(["a"])] == ["all"]
    assert [v.label for v in variants(["a", "b"])] == ["all", "without a", "without b"]
    vs = variants(["a", "b", "c"])
    assert [v.modalities for v in vs] == [["a", "b", "c"], ["b", "c"], ["a", "c"], ["a", "b"], ["a"], ["b"], ["c"]]


def test_ablate_cli_writes_a_table_and_resumes(lfm2k, tmp_path, capsys):
    res = tmp_path / "r"
    args = [
        "ablate",
        "--dataset",
        "lfm2k",
        "--model",
        "fusion-late",
        "--modalities",
        "text,audio/vggish",
        "--seeds",
        "2",
        "--param",
        "epochs=1",
        "--param",
        "embedding_size=8",
        "--results",
        str(res),
    ]
    assert main(args) == 0
    out, err = capsys.readouterr()
    table = (res / "ablations" / "lfm2k__fusion-late.md").read_text()
    assert table in out
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["all", "without text", "without audio/vggish"]
    recs = _records(res)
    assert len(recs) == 6  # 3 variants x 2 seeds, each an ordinary run record
    assert sorted({tuple(r["model"]["modalities"]) for r in recs}) == [
        ("audio/vggish",),
        ("text",),
        ("text", "audio/vggish"),
    ]
    # the table's numbers are the records' means
    full = [r["test"]["recall@20"] for r in recs if r["model"]["modalities"] == ["text", "audio/vggish"]]
    assert f"{np.mean(full):.4f} ± {np.std(full, ddof=1):.4f}" in rows[1]
    assert "p=" in rows[2] or "p<" in rows[2]
    # a second invocation trains nothing and writes the same table
    assert main(args) == 0
    out2, err2 = capsys.readouterr()
    assert "seed=" not in err2
    assert (res / "ablations" / "lfm2k__fusion-late.md").read_text() == table


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "pop"], "does not read item features"),
        (["--model", "fusion-late", "--param", "modalities=text"], "chooses the modalities"),
        (["--model", "fusion-late", "--modalities", "image"], "unknown modality"),
    ],
)
def test_ablate_user_errors(extra, message, tmp_path, capsys, lfm2k):
    res = tmp_path / "r"
    code = main(["ablate", "--dataset", "lfm2k", "--seeds", "1", "--results", str(res), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not res.exists()
