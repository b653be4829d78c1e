"""Damaged state in a results folder is quarantined, not fatal: a damaged record is not a
finished run (the next run redoes it), the leaderboard leaves it out with one warning line
naming it, `doctor` lists it and `doctor --fix` moves it to quarantine/ with its reason; a
damaged tuning.db is one line naming the file."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from benchmark.cli import main

ARGS = ["run", "--dataset", "ml-100k", "--model", "pop", "--seed", "0"]


def _run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def results(tmp_path, capsys, ml100k):
    root = tmp_path / "results"
    for seed in ("0", "1"):
        code, _, _ = _run(
            capsys, "run", "--dataset", "ml-100k", "--model", "pop", "--seed", seed, "--results", str(root)
        )
        assert code == 0
    return root


def _record(root: Path, seed: int) -> Path:
    (path,) = [p for p in (root / "runs").rglob("*.json") if json.loads(p.read_text())["seed"] == seed]
    return path


DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:100]),
    "empty": lambda p: p.write_bytes(b""),
    "list": lambda p: p.write_text("[]"),
    "object": lambda p: p.write_text("{}"),
    "no-test": lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "test": {}})),
    "npz-missing": lambda p: p.with_suffix(".npz").unlink(),
    "npz-truncated": lambda p: p.with_suffix(".npz").write_bytes(p.with_suffix(".npz").read_bytes()[:50]),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_record_is_redone_and_left_out(damage, results, capsys):
    path = _record(results, 0)
    good = json.loads(path.read_text())["test"]
    DAMAGE[damage](path)
    code, out, err = _run(capsys, "leaderboard", "--results", str(results))
    assert code == 0 and err.count("\n") == 1 and f"damaged record {path}" in err and "left out" in err
    board = (results / "LEADERBOARD.md").read_text()
    assert "pop" in board  # the other seed's record is still shown

    code, out, err = _run(capsys, "doctor", "--results", str(results))
    assert code == 1 and f"record: {path}" in out and "1 problem(s)" in out

    code, out, err = _run(capsys, *ARGS, "--results", str(results))
    assert code == 0 and "1 runs done, 0 already finished" in out
    assert "running it again" in err and str(path) in err
    assert json.loads(path.read_text())["test"] == good and path.with_suffix(".npz").is_file()
    code, out, err = _run(capsys, "doctor", "--results", str(results))
    assert code == 0 and "nothing damaged" in out


def test_doctor_fix_quarantines_with_reasons(results, capsys):
    path = _record(results, 1)
    path.write_text("{not json")
    orphan = path.parent / "0123456789abcdef0123.npz"
    np.savez(orphan, x=np.zeros(2))
    old = path.parent / ".x.json.abc.part"
    old.write_text("half")
    os.utime(old, (1, 1))
    fresh = path.parent / ".y.json.abc.part"  # a write in progress: not touched
    fresh.write_text("half")
    (results / "tuning.db").write_bytes(b"garbage, not a database")

    code, out, _ = _run(capsys, "doctor", "--results", str(results))
    assert code == 1 and "4 problem(s); left in place" in out
    assert path.exists() and orphan.exists()
    code, out, _ = _run(capsys, "doctor", "--results", str(results), "--fix")
    assert code == 0 and "4 problem(s); moved to" in out
    q = results / "quarantine"
    moved = q / path.relative_to(results)
    assert moved.exists() and moved.with_suffix(".npz").exists() and not path.exists()
    assert "not valid JSON" in moved.with_name(moved.name + ".reason").read_text()
    assert (q / "tuning.db").exists() and (q / orphan.relative_to(results)).exists() and not old.exists()
    assert fresh.exists()
    code, out, _ = _run(capsys, "doctor", "--results", str(results))
    assert code == 0
    # quarantined records are no longer records: the leaderboard and runs do not see them
    code, _, err = _run(capsys, "leaderboard", "--results", str(results))
    assert code == 0 and err == ""


def test_damaged_tuning_storage_is_one_line(results, capsys):
    (results / "tuning.db").write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)  # header, no pages
    code, _, err = _run(
        capsys, "run", "--dataset", "ml-100k", "--model", "ease", "--budget", "2", "--results", str(results)
    )
    assert code == 2 and err.count("\n") == 1 and str(results / "tuning.db") in err
    (results / "tuning.db").unlink()
    (results / "tuning.db").mkdir()
    code, _, err = _run(
        capsys, "tune", "--dataset", "ml-100k", "--model", "ease", "--trials", "1", "--results", str(results)
    )
    assert code == 2 and err.count("\n") == 1 and "a folder where the study database belongs" in err


def test_doctor_on_a_missing_folder(tmp_path, capsys):
    code, _, err = _run(capsys, "doctor", "--results", str(tmp_path / "nope"))
    assert code == 2 and "no results folder" in err and err.count("\n") == 1


def test_a_diverging_configuration_is_a_failed_run(tmp_path, capsys):
    results = tmp_path / "results"
    args = [
        "run",
        "--dataset",
        "ml-100k",
        "--model",
        "bpr",
        "--param",
        "learning_rate=1e30",
        "--seed",
        "0",
        "--results",
        str(results),
    ]
    code, out, err = _run(capsys, *args)
    assert code == 0 and "1 failed" in out and "FAILED: bpr: loss became nan" in err
    (path,) = (results / "runs").rglob("*.json")
    rec = json.loads(path.read_text())
    assert rec["failed"].startswith("bpr: loss became") and rec["test"] == {} and rec["seed"] == 0
    board = (results / "LEADERBOARD.md").read_text()
    assert "## Failed runs" in board and f"`{path.relative_to(results)}`" in board
    code, out, err = _run(capsys, *args)  # seeded: the same failure, not redone
    assert code == 0 and "0 runs done, 1 already finished" in out and err == ""
    code, out, _ = _run(capsys, "doctor", "--results", str(results))
    assert code == 0  # a failed run is a result, not damage

    code, _, err = _run(
        capsys,
        "run",
        "--dataset",
        "ml-100k",
        "--model",
        "bpr",
        "--param",
        "weight_decay=Infinity",
        "--results",
        str(results),
    )
    assert code == 2 and "finite" in err and err.count("\n") == 1


def _one_line_fault(capsys, *args, code=3):
    got, out, err = _run(capsys, *args)
    assert got == code and err.count("\n") == 1 and err.startswith("error: "), (got, err)
    return err


def test_results_folder_faults_are_one_line_exit_3(tmp_path, capsys, ml100k):
    as_file = tmp_path / "results-file"
    as_file.write_text("not a folder")
    err = _one_line_fault(capsys, *ARGS, "--results", str(as_file))
    assert str(as_file) in err
    root = tmp_path / "results"
    root.mkdir()
    (root / "runs").write_text("a file where the records belong")
    _one_line_fault(capsys, *ARGS, "--results", str(root))
    (root / "runs").unlink()
    (root / "LEADERBOARD.md").mkdir()
    err = _one_line_fault(capsys, *ARGS, "--results", str(root))
    assert "LEADERBOARD.md" in err and not (root / "runs").exists()  # refused before any write
    code, out, _ = _run(capsys, "doctor", "--results", str(root))
    assert code == 1 and "leaderboard: " in out


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/proc/mounts").exists(), reason="needs root to mount a tmpfs")
def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(tmp_path, capsys, ml100k):
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (disk / "filler").write_bytes(b"\0" * (256 * 1024 - 8 * 1024))  # 8 KiB left: less than a record
        err = _one_line_fault(capsys, *ARGS, "--results", str(disk / "results"))
        assert "No space left on device" in err
        left = [p for p in (disk / "results").rglob("*") if p.is_file()]
        assert left == [], left  # no orphan .npz, no temporary file
        (disk / "filler").unlink()
        code, out, _ = _run(capsys, *ARGS, "--results", str(disk / "results"))
        assert code == 0 and "1 runs done" in out
    finally:
        subprocess.run(["umount", str(disk)])
