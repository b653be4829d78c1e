"""`python -m benchmark score`: run files against qrels (recbole and trec conventions, checked against
RecBole's metric classes and pytrec_eval), external runs scored on a split as run records, and
`datasets export --split`."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmark import metrics as M
from benchmark.cli import main
from benchmark.score import read_qrels, read_run, score_files

KS = (1, 3, 5, 10)


# --------------------------------------------------------------------------- generated cases


def generated_case(rng: np.random.Generator, n_users: int = 60, n_items: int = 40):
    """A run and qrels over integer item ids (so numeric and string orders differ: 9 < 10 but
    "10" < "9"), with the edge cases both conventions must handle: scores tied exactly and tied
    only in float32, users absent from the run, users with only rel-0 judgements, run users
    missing from the qrels, |R| > k, short lists, graded labels are not used (0/1)."""
    items = [str(i) for i in rng.choice(np.arange(1, 400), n_items, replace=False)]
    run, qrels = {}, {}
    for u in range(n_users):
        user = f"u{u}"
        kind = u % 6
        if kind != 0:  # kind 0: absent from the run
            n = int(rng.integers(1, n_items)) if kind != 1 else 3  # kind 1: a short list
            chosen = rng.choice(items, n, replace=False)
            base = rng.integers(0, 4, n).astype(np.float64)  # many exact ties
            near = rng.random(n) < 0.3  # ties only in float32
            scores = base + np.where(near, 1e-9 * rng.integers(1, 5, n), 0.0)
            run[user] = {str(i): float(s) for i, s in zip(chosen, scores)}
        if kind == 2:
            qrels[user] = {str(i): 0 for i in rng.choice(items, 4, replace=False)}  # no relevant item
        elif kind == 3:
            qrels[user] = {str(i): 1 for i in rng.choice(items, 25, replace=False)}  # |R| > k
        else:
            rel = rng.choice(items, int(rng.integers(1, 8)), replace=False)
            qrels[user] = {str(i): int(rng.random() < 0.8) for i in rel}
            qrels[user][next(iter(qrels[user]))] = 1
    for u in range(n_users, n_users + 3):  # in the run, not in the qrels
        run[f"u{u}"] = {items[0]: 1.0}
    return run, qrels


def write_files(tmp_path: Path, run: dict, qrels: dict) -> tuple[Path, Path]:
    rp, qp = tmp_path / "run.txt", tmp_path / "qrels.txt"
    with open(rp, "w") as f:
        for u, docs in run.items():
            for r, (d, s) in enumerate(docs.items()):
                f.write(f"{u} Q0 {d} {r + 1} {s!r} sys\n")
    with open(qp, "w") as f:
        for u, docs in qrels.items():
            for d, rel in docs.items():
                f.write(f"{u}\t0\t{d}\t{rel}\n")
    return rp, qp


def trec_order(docs: dict[str, float]) -> list[str]:
    """trec_eval's ranking, written independently: C float scores descending, then docno descending."""
    return sorted(docs, key=lambda d: (np.float32(docs[d]), d.encode()), reverse=True)


def recbole_order(docs: dict[str, float]) -> list[str]:
    """fusebench's ranking of integer ids: score descending, then the lower (numeric) id."""
    return sorted(docs, key=lambda d: (-docs[d], int(d)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trec_convention_reproduces_pytrec_eval_per_user(tmp_path, seed):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    run, qrels = generated_case(np.random.default_rng(seed))
    rp, qp = write_files(tmp_path, run, qrels)
    scored = score_files(read_run(rp), read_qrels(qp), "trec", KS)
    users = list(scored.users)
    # trec_eval's users: qrels users that are in the run (rel-0-only users included)
    assert set(users) == {u for u in qrels if u in run}
    assert {u for u in users if not any(qrels[u].values())}, "the case must hold users without relevant items"
    for k in KS:
        measures = {f"P.{k}", f"recall.{k}", f"success.{k}", f"ndcg_cut.{k}", f"map_cut.{k}"}
        full = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
        cut = {u: {d: docs[d] for d in trec_order(docs)[:k]} for u, docs in run.items()}
        rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
        assert set(full) == set(users)
        for row, u in enumerate(users):
            got = {m: scored.per_user[f"{m}@{k}"][row] for m in M.RANK_METRICS}
            assert got["precision"] == pytest.approx(full[u][f"P_{k}"], abs=1e-9)
            assert got["recall"] == pytest.approx(full[u][f"recall_{k}"], abs=1e-9)
            assert got["hit"] == pytest.approx(full[u][f"success_{k}"], abs=1e-9)
            assert got["ndcg"] == pytest.approx(full[u][f"ndcg_cut_{k}"], abs=1e-9), (u, k)
            assert got["map"] == pytest.approx(full[u][f"map_cut_{k}"], abs=1e-9), (u, k)
            assert got["mrr"] == pytest.approx(rr[u]["recip_rank"], abs=1e-9), (u, k)


def test_trec_ties_follow_trec_eval_not_fusebench():
    """The tie rules differ on purpose: on a tie, trec_eval ranks docno "9" before "10" and
    "b" before "a"; fusebench ranks the lower item index first."""
    pytrec_eval = pytest.importorskip("pytrec_eval")
    for docs, rel in (({"9": 1.0, "10": 1.0}, "10"), ({"a": 1.0 + 1e-12, "b": 1.0}, "a")):
        ev = pytrec_eval.RelevanceEvaluator({"q": {rel: 1}}, {"recip_rank"}).evaluate({"q": docs})
        assert ev["q"]["recip_rank"] == 0.5  # float32 makes 1 + 1e-12 a tie, then docno descending
        assert trec_order(docs)[0] != rel


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recbole_convention_reproduces_recbole_metric_classes_per_user(tmp_path, seed):
    pytest.importorskip("recbole")
    from benchmark.perf import recbole_per_user

    run, qrels = generated_case(np.random.default_rng(seed))
    rp, qp = write_files(tmp_path, run, qrels)
    scored = score_files(read_run(rp), read_qrels(qp), "recbole", KS)
    users = list(scored.users)
    # users with a relevant item, absent from the run or not; users without one are left out
    assert set(users) == {u for u, docs in qrels.items() if any(docs.values())}
    assert any(u not in run for u in users), "the case must hold users absent from the run"
    kmax = max(KS)
    hit = np.zeros((len(users), kmax), dtype=bool)
    pos_len = np.zeros(len(users), dtype=np.int64)
    for row, u in enumerate(users):
        relevant = {d for d, r in qrels[u].items() if r > 0}
        pos_len[row] = len(relevant)
        ranked = recbole_order(run.get(u, {}))[:kmax]
        hit[row, : len(ranked)] = [d in relevant for d in ranked]
    ref = recbole_per_user(hit, pos_len, KS)
    for key, want in ref.items():
        np.testing.assert_allclose(scored.per_user[key], want, rtol=0, atol=1e-9, err_msg=key)
    absent = [row for row, u in enumerate(users) if u not in run]
    for key in ref:  # an empty list: every RecBole metric is 0
        assert (ref[key][absent] == 0).all() and (scored.per_user[key][absent] == 0).all()


def test_recbole_cannot_score_a_user_without_relevant_items():
    """Why the recbole convention leaves such users out: RecBole's Recall divides by |R| = 0."""
    pytest.importorskip("recbole")
    from benchmark.perf import recbole_per_user

    with np.errstate(all="ignore"):
        ref = recbole_per_user(np.zeros((1, 3), dtype=bool), np.array([0]), (3,))
    assert not np.isfinite(ref["recall@3"][0])


def test_conventions_differ_in_map_denominator(tmp_path):
    # one user, |R| = 4, hits at ranks 1 and 2 of a 2-long list
    rp, qp = write_files(tmp_path, {"u": {"1": 2.0, "2": 1.0}}, {"u": {"1": 1, "2": 1, "3": 1, "4": 1}})
    rb = score_files(read_run(rp), read_qrels(qp), "recbole", (2,)).per_user["map@2"][0]
    tr = score_files(read_run(rp), read_qrels(qp), "trec", (2,)).per_user["map@2"][0]
    assert rb == pytest.approx(2 / 2) and tr == pytest.approx(2 / 4)


# --------------------------------------------------------------------------- command line


def test_cli_prints_means_and_writes_per_user_csv(tmp_path, capsys):
    run, qrels = generated_case(np.random.default_rng(5))
    rp, qp = write_files(tmp_path, run, qrels)
    out = tmp_path / "pu.csv"
    assert main(["score", "--run", str(rp), "--qrels", str(qp), "--ks", "1,5,10", "--per-user", str(out)]) == 0
    printed = capsys.readouterr()
    scored = score_files(read_run(rp), read_qrels(qp), "recbole", (1, 5, 10))
    assert "recbole convention" in printed.out
    line = next(ln for ln in printed.out.splitlines() if ln.startswith("ndcg"))
    assert line.split()[1:] == [f"{np.mean(scored.per_user[f'ndcg@{k}']):.4f}" for k in (1, 5, 10)]
    assert "absent from the run" in printed.err
    rows = list(csv.DictReader(out.open()))
    assert [r["user"] for r in rows] == list(scored.users)
    assert list(rows[0]) == ["user", "n_relevant", "n_listed"] + [
        f"{m}@{k}" for m in M.RANK_METRICS for k in (1, 5, 10)
    ]
    for r, row in zip(rows, range(len(rows))):
        for m in M.RANK_METRICS:
            assert float(r[f"{m}@5"]) == scored.per_user[f"{m}@5"][row]  # full precision
    assert main(["score", "--run", str(rp), "--qrels", str(qp), "--convention", "trec"]) == 0
    assert "trec convention" in capsys.readouterr().out


BAD_RUNS = {
    "short line": ("u1 Q0 i1 1 0.5 sys\nu1 Q0 i2 2 0.4\n", "line 2: expected 6 fields"),
    "score": ("u1 Q0 i1 1 high sys\n", "line 1: score 'high' is not a number"),
    "rank": ("u1 Q0 i1 first 0.5 sys\n", "line 1: rank 'first' is not an integer"),
    "nan": ("u1 Q0 i1 1 nan sys\n", "line 1: score 'nan' is not finite"),
    "duplicate": (
        "u1 Q0 i1 1 0.5 sys\n\nu1 Q0 i2 2 0.4 sys\nu1 Q0 i1 3 0.3 sys\n",
        "line 4 repeats user 'u1' item 'i1' of line 1",
    ),
    "tags": ("u1 Q0 i1 1 0.5 a\nu1 Q0 i2 2 0.4 b\n", "line 2: run tag 'b' differs"),
    "empty": ("\n  \n", "is empty"),
}


@pytest.mark.parametrize("case", sorted(BAD_RUNS))
def test_bad_run_file_is_one_line_and_exit_2(tmp_path, capsys, case):
    text, message = BAD_RUNS[case]
    rp, qp = tmp_path / "run.txt", tmp_path / "qrels.txt"
    rp.write_text(text)
    qp.write_text("u1 0 i1 1\n")
    assert main(["score", "--run", str(rp), "--qrels", str(qp)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: run file") and message in err[0], err


@pytest.mark.parametrize(
    "text, message",
    [
        ("u1 0 i1 1\nu1 0 i2\n", "line 2: expected 4 fields"),
        ("u1 0 i1 0.5\n", "line 1: relevance '0.5' is not an integer"),
        ("u1 0 i1 1\nu1 0 i1 0\n", "line 2 repeats user 'u1' item 'i1' of line 1"),
        ("", "is empty"),
    ],
)
def test_bad_qrels_is_one_line_and_exit_2(tmp_path, capsys, text, message):
    rp, qp = tmp_path / "run.txt", tmp_path / "qrels.txt"
    rp.write_text("u1 Q0 i1 1 0.5 sys\n")
    qp.write_text(text)
    assert main(["score", "--run", str(rp), "--qrels", str(qp)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_missing_files_and_bad_options_exit_2(tmp_path, capsys):
    qp = tmp_path / "qrels.txt"
    qp.write_text("u1 0 i1 1\n")
    for argv, message in (
        (["--run", str(tmp_path / "nope.txt"), "--qrels", str(qp)], "no such file"),
        (["--run", str(qp), "--qrels", str(tmp_path)], "is a folder"),
        (["--run", str(qp)], "either --qrels"),
        (["--run", str(qp), "--qrels", str(qp), "--name", "x"], "apply with --dataset"),
        (["--run", str(qp), "--qrels", str(qp), "--results", str(tmp_path / "r")], "--results apply with --dataset"),
        (["--run", str(qp), "--qrels", str(qp), "--data-dir", str(tmp_path)], "--data-dir apply with --dataset"),
        (["--run", str(qp), "--qrels", str(qp), "--ks", "0"], "cutoffs must be >= 1"),
    ):
        assert main(["score", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)


# --------------------------------------------------------------------------- score --dataset


def write_trec_run(path: Path, ds, users: np.ndarray, scores: np.ndarray, top: np.ndarray, tag: str) -> Path:
    with open(path, "w") as f:
        for r, u in enumerate(users):
            for rank, i in enumerate(top[r]):
                if i >= 0:
                    f.write(f"{ds.user_ids[u]} Q0 {ds.item_ids[i]} {rank + 1} {float(scores[r, i])!r} {tag}\n")
    return path


@pytest.fixture(scope="module")
def external(ml100k, tmp_path_factory):
    """pop and ease trained through the project on ML-100K (random split, seed 0), their run
    records, and TREC run files of their own lists: the masked top-50, and the unmasked top
    items long enough to hold the top-50 once train and valid items are dropped."""
    import datasets
    import fusion_models  # noqa: F401
    from baselines import FitData, make_model
    from benchmark.protocol import Protocol
    from benchmark.records import RecordStore
    from benchmark.seed_run import run_one

    root = tmp_path_factory.mktemp("score")
    results = root / "results"
    split = datasets.split(ml100k, "random", seed=0)
    users = np.flatnonzero(np.diff(split.test.indptr) > 0)
    seen = split.train + split.valid
    out = {"root": root, "results": results, "split": split, "users": users, "records": {}, "runs": {}}
    for name in ("pop", "ease"):
        # patience 1: a non-default selection setting, which an external row must not be split off by
        out["records"][name] = run_one(RecordStore(results), ml100k, split, name, {}, Protocol(patience=1))
        model = make_model(name, {}).fit(FitData.from_split(ml100k, split, "cpu"))
        scores = model.score(users)
        masked = M.topk_items(scores, 50, seen[users])
        out["runs"][name] = write_trec_run(root / f"{name}.run", ml100k, users, scores, masked, name)
        longest = int(np.diff(seen[users].indptr).max()) + 50
        unmasked = M.topk_items(scores, longest)
        out["runs"][f"{name}-unmasked"] = write_trec_run(
            root / f"{name}-unmasked.run", ml100k, users, scores, unmasked, name
        )
    return out


def _record(results: Path, name: str) -> tuple[dict, dict]:
    paths = sorted((results / "runs" / "ml-100k" / name).glob("*.json"))
    assert len(paths) == 1, paths
    with np.load(paths[0].with_suffix(".npz")) as z:
        return json.loads(paths[0].read_text()), {k: z[k] for k in z.files}


@pytest.mark.parametrize("model, run", [("pop", "pop"), ("ease", "ease"), ("ease", "ease-unmasked")])
def test_score_dataset_record_equals_the_models_own_record(external, capsys, model, run):
    name = f"ext-{run}"
    argv = [
        "score",
        "--dataset",
        "ml-100k",
        "--run",
        str(external["runs"][run]),
        "--name",
        name,
        "--results",
        str(external["results"]),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr()
    if run.endswith("unmasked"):
        assert "dropped" in printed.err and "train or valid" in printed.err
    rec, arrays = _record(external["results"], name)
    own = external["records"][model].record
    with np.load(Path(external["records"][model].path).with_suffix(".npz")) as z:
        own_arrays = {k: z[k] for k in z.files}
    assert set(rec["test"]) == set(own["test"])
    for key, value in own["test"].items():
        assert rec["test"][key] == pytest.approx(value, abs=1e-12), key
    assert set(arrays) == set(own_arrays)
    for key in own_arrays:
        np.testing.assert_allclose(arrays[key], own_arrays[key], rtol=0, atol=1e-12, equal_nan=True, err_msg=key)
    assert rec["model"]["family"] == "external" and rec["n_test_users"] == own["n_test_users"]
    assert rec["model"]["run_file"]["sha256"] == read_run(external["runs"][run]).sha256
    assert rec["split"] == own["split"] and rec["dataset"]["fingerprint"] == own["dataset"]["fingerprint"]
    assert rec["seed"] == 0 and rec["training"]["mask_valid_at_test"] is True
    # scoring the same file again keeps the record
    assert main(argv) == 0
    assert "already recorded" in capsys.readouterr().out


def test_leaderboard_lists_external_rows_beside_the_models(external, capsys):
    from benchmark.leaderboard import write_leaderboard

    for run in ("pop", "ease"):
        main(
            [
                "score",
                "--dataset",
                "ml-100k",
                "--run",
                str(external["runs"][run]),
                "--name",
                f"ext-{run}",
                "--results",
                str(external["results"]),
            ]
        )
    capsys.readouterr()
    board = write_leaderboard(external["results"]).read_text()
    titles = [ln for ln in board.splitlines() if ln.startswith("## ml-100k")]
    assert titles == ["## ml-100k (random split)"], "the external rows must not make a table of their own"
    table = board[board.index(titles[0]) :]
    table = table[: table.index("\n## ", 5)] if "\n## " in table[5:] else table
    main_table = table[: table.index("<details>")]
    rows = {ln.split("|")[1].strip(): ln for ln in main_table.splitlines() if ln.startswith("| ")}
    sha = read_run(external["runs"]["pop"]).sha256
    ext_pop = next(v for k, v in rows.items() if k.startswith("ext-pop "))
    assert f"`{sha[:8]}`" in ext_pop and "| external |" in ext_pop
    # same lists, same per-user values: no significant difference from pop, and the tests ran
    pop = next(v for k, v in rows.items() if k.startswith("pop"))
    assert ext_pop.split("|")[4:9] == pop.split("|")[4:9]
    assert "Family external" in table and "p Wilcoxon" in table
    sig = [ln for ln in table.splitlines() if ln.startswith("| ext-pop ") and "[" in ln]
    assert sig, "ext-pop is in the significance table"
    again = f"python -m benchmark score --dataset ml-100k --seed 0 --run {external['runs']['pop']} --name ext-pop"
    assert again in board
    assert "--models ext-" not in board


def test_leaderboard_shows_a_user_models_source_without_importing_it(external, tmp_path):
    from benchmark.leaderboard import write_leaderboard

    results = tmp_path / "results"
    src = Path(external["records"]["pop"].path)
    dst = results / "runs" / "ml-100k" / "mypop" / src.name
    dst.parent.mkdir(parents=True)
    shutil.copy(src.with_suffix(".npz"), dst.with_suffix(".npz"))
    rec = json.loads(src.read_text())
    rec["model"] = {
        **rec["model"],
        "name": "mypop",
        "family": "baseline/cf",
        "source": {"spec": "nowhere/my_models.py:MyPop", "sha256": "abcdef0123456789" * 4},
    }
    dst.write_text(json.dumps(rec))
    board = write_leaderboard(results).read_text()  # the spec's file does not exist: nothing imports it
    assert "| mypop `abcdef01`" in board
    assert "`nowhere/my_models.py:MyPop` (sha256 `abcdef012345`)" in board
    assert "--models nowhere/my_models.py:MyPop" in board


def test_score_dataset_unknown_ids_and_absent_users(external, ml100k, tmp_path, capsys):
    lines = external["runs"]["pop"].read_text().splitlines()
    bad = tmp_path / "bad.run"
    bad.write_text(
        "\n".join(lines[:3] + ["nobody Q0 1 1 1.0 pop", "1 Q0 99999 1 1.0 pop", "ghost Q0 2 1 1.0 pop"]) + "\n"
    )
    argv = ["score", "--dataset", "ml-100k", "--name", "bad", "--results", str(tmp_path / "r")]
    assert main([*argv, "--run", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 user ids are not users of dataset 'ml-100k'" in err[0]
    assert "'nobody' (line 4), 'ghost' (line 6)" in err[0] and "raw ids" in err[0]
    assert not (tmp_path / "r" / "runs").exists()
    # drop every list of the first 10 test users: they count 0, the others are unchanged
    gone = {str(ml100k.user_ids[u]) for u in external["users"][:10]}
    part = tmp_path / "part.run"
    part.write_text("\n".join(ln for ln in lines if ln.split()[0] not in gone) + "\n")
    assert main([*argv, "--run", str(part)]) == 0
    assert "10 of 943 test users are absent from the run" in capsys.readouterr().err
    rec, arrays = _record(tmp_path / "r", "bad")
    with np.load(Path(external["records"]["pop"].path).with_suffix(".npz")) as z:
        own = z["recall@20"]
    absent = external["users"][:10]
    assert (arrays["recall@20"][absent] == 0).all() and rec["n_test_users"] == 943
    rest = external["users"][10:]
    np.testing.assert_array_equal(arrays["recall@20"][rest], own[rest])
    assert rec["scoring"]["test_users_absent"] == 10
    for extra, message in (
        (["--name", "ease"], "is a fusebench model"),
        (["--ks", "5"], "--ks apply with --qrels"),
        (["--name", "a|b"], "use letters"),
    ):
        assert main(["score", "--dataset", "ml-100k", "--run", str(part), "--name", "bad", *extra]) == 2
        assert message in capsys.readouterr().err


# --------------------------------------------------------------------------- datasets export --split


def test_export_split_round_trip_recbole_load_and_qrels_scoring(external, ml100k, tmp_path, capsys):
    import datasets

    split = external["split"]
    assert (
        main(["datasets", "export", "ml-100k", "--split", "--protocol", "random", "--seed", "0", str(tmp_path / "out")])
        == 0
    )
    folder = tmp_path / "out" / "ml-100k-random-seed0"
    assert capsys.readouterr().out.strip() == f"wrote {folder}"
    token = folder.name
    assert {p.name for p in folder.iterdir()} == {
        f"{token}.{x}" for x in ("train.inter", "valid.inter", "test.inter", "user", "item", "test.qrels")
    }
    back = datasets.load(f"recbole:{folder}")
    assert list(back.user_ids) == list(ml100k.user_ids) and list(back.item_ids) == list(ml100k.item_ids)
    again = datasets.split(back, "given")
    for part in ("train", "valid", "test"):
        assert (getattr(again, part) != getattr(split, part)).nnz == 0, part
    assert len((folder / f"{token}.train.inter").read_text().splitlines()) == split.train.nnz + 1
    # the qrels are the test pairs: scoring pop's run against them (recbole convention) gives its record
    qrels = read_qrels(folder / f"{token}.test.qrels")
    assert len(qrels.users) == split.test.nnz and (qrels.rels == 1).all()
    scored = score_files(read_run(external["runs"]["pop"]), qrels, "recbole", (10, 20, 50))
    own = external["records"]["pop"].record["test"]
    for key, values in scored.per_user.items():
        assert np.mean(values) == pytest.approx(own[key], abs=1e-12), key
    # errors: OUT is a file; the folder exists; --protocol without --split
    (tmp_path / "file").write_text("x")
    for argv, message in (
        (["--split", str(tmp_path / "file")], "is a file"),
        (["--split", "--seed", "0", str(tmp_path / "out")], "already exists"),
        (["--protocol", "random", str(tmp_path / "o2")], "add --split"),
    ):
        assert main(["datasets", "export", "ml-100k", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_recbole_loads_the_exported_split(external, ml100k, tmp_path):
    pytest.importorskip("recbole")
    import warnings

    import pandas as pd

    from datasets.export import export

    folder = export(ml100k, "recbole", tmp_path, split=external["split"])
    from recbole.config import Config
    from recbole.data import create_dataset

    cfg = {
        "data_path": str(tmp_path),
        "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id"]},
        "filter_inter_by_user_or_item": False,
        "user_inter_num_interval": None,
        "item_inter_num_interval": None,
        "val_interval": None,
        "rm_dup_inter": None,
        "show_progress": False,
        "save_dataset": False,
        "save_dataloaders": False,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = Config(model="Pop", dataset=folder.name, config_dict=cfg)
        ds = create_dataset(config)
        built = ds.build()
    split = external["split"]
    for part, b in zip(("train", "valid", "test"), built):
        users = pd.Index(ml100k.user_ids.astype(str)).get_indexer(ds.id2token("user_id", b.inter_feat["user_id"]))
        items = pd.Index(ml100k.item_ids.astype(str)).get_indexer(ds.id2token("item_id", b.inter_feat["item_id"]))
        coo = getattr(split, part).tocoo()
        assert sorted(zip(users.tolist(), items.tolist())) == sorted(zip(coo.row.tolist(), coo.col.tolist())), part


def test_an_export_that_cannot_be_written_leaves_nothing(tmp_path):
    """Ids TREC files cannot carry (whitespace) stop the export before anything is left behind."""
    from dataclasses import replace

    from conftest import make_tiny_dataset
    from datasets import split
    from datasets.errors import FusebenchError
    from datasets.export import export

    ds = make_tiny_dataset()
    ds = replace(ds, item_ids=np.array([f"item {i}" for i in range(ds.n_items)], dtype=object))
    out = tmp_path / "out"
    with pytest.raises(FusebenchError, match="holds whitespace"):
        export(ds, "recbole", out, split=split(ds, protocol="random", seed=0))
    assert not out.exists()
