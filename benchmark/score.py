"""`python -m benchmark score`: recommendations made elsewhere, scored by fusebench's metric core.

Two ways to use it (rules: docs/metrics.md, "Scoring run files: the two conventions"):

- ``score --run RUN --qrels QRELS [--convention recbole|trec] [--ks 1,5,10,20,50] [--per-user OUT.csv]``
  scores a TREC run file (``user Q0 item rank score tag``) against TREC qrels
  (``user 0 item rel``) and prints metric@k means; nothing is written but the CSV.
- ``score --dataset D [--protocol P --seed S] --run RUN --name NAME [--results DIR]`` scores an
  external system's recommendations (raw user and item ids, as ``datasets export --split``
  writes them) for the test users of that split under the fusebench protocol and writes an
  ordinary run record (family ``external``) that the leaderboard compares with every model.

Both parse the files strictly (a malformed line, a repeated user-item pair, an empty file: one
`FusebenchError` naming the file and line) and rank with the verified metric core
(`benchmark.metrics.rank_metrics`); the only convention-specific arithmetic here is the list
order and trec_eval's MAP normaliser, whose relation to ours is tested in tests/test_metrics.py.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from baselines.base import MODEL_NAME
from datasets.errors import FusebenchError

from . import metrics as M
from .records import EXTERNAL
from .segments import stored_arrays

CONVENTIONS = ("recbole", "trec")
FILE_KS = (1, 5, 10, 20, 50)  # --ks default when scoring files
LISTED = 5  # how many offending ids an error names


# --------------------------------------------------------------------------- files


@dataclass
class RunFile:
    """A parsed TREC run: one entry per line (blank lines skipped)."""

    path: Path
    sha256: str
    users: np.ndarray  # object, raw user ids
    items: np.ndarray  # object, raw item ids
    scores: np.ndarray  # float64
    lines: np.ndarray  # int64, 1-based line numbers
    tag: str


@dataclass
class Qrels:
    path: Path
    users: np.ndarray
    items: np.ndarray
    rels: np.ndarray  # int64
    lines: np.ndarray


def _read_text(path: str | Path, what: str) -> tuple[Path, bytes, str]:
    path = Path(path).expanduser()
    if not path.exists():
        raise FusebenchError(f"{what} {path}: no such file")
    if path.is_dir():
        raise FusebenchError(f"{what} {path} is a folder, not a file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FusebenchError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise FusebenchError(f"{what} {path}: line {line} is not UTF-8 text") from None
    return path, raw, text


def _fields(text: str, n: int, layout: str, what: str, path: Path):
    """(line number, fields) of every non-blank line, each with exactly `n` fields."""
    for no, line in enumerate(text.split("\n"), 1):
        f = line.split()
        if not f:
            continue
        if len(f) != n:
            shown = line.strip()
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise FusebenchError(f"{what} {path}: line {no}: expected {n} fields '{layout}', found {len(f)}: {shown!r}")
        yield no, f


def _no_repeats(users: np.ndarray, items: np.ndarray, lines: np.ndarray, what: str, path: Path) -> None:
    df = pd.DataFrame({"u": users, "i": items})
    dup = df.duplicated(keep=False).to_numpy()
    if dup.any():
        first = np.flatnonzero(dup)
        later = first[df.iloc[first].duplicated(keep="first").to_numpy()][0]
        earlier = first[(users[first] == users[later]) & (items[first] == items[later])][0]
        raise FusebenchError(
            f"{what} {path}: line {lines[later]} repeats user {users[later]!r} item "
            f"{items[later]!r} of line {lines[earlier]} (one line per user and item)"
        )


def read_run(path: str | Path) -> RunFile:
    """Parse a TREC run file ``user Q0 item rank score tag`` (whitespace separated).

    The rank column must be an integer but is not used (lists are ordered by score, as trec_eval
    does); the score must be a finite number; every line carries the same tag (one system per
    file); a (user, item) pair appears once."""
    path, raw, text = _read_text(path, "run file")
    users, items, scores, lines = [], [], [], []
    tag = None
    layout = "user Q0 item rank score tag"
    for no, (u, _q0, i, rank, score, t) in _fields(text, 6, layout, "run file", path):
        try:
            int(rank)
        except ValueError:
            raise FusebenchError(f"run file {path}: line {no}: rank {rank!r} is not an integer ({layout})") from None
        try:
            s = float(score)
        except ValueError:
            raise FusebenchError(f"run file {path}: line {no}: score {score!r} is not a number ({layout})") from None
        if not math.isfinite(s):
            raise FusebenchError(f"run file {path}: line {no}: score {score!r} is not finite")
        if tag is None:
            tag = t
        elif t != tag:
            raise FusebenchError(
                f"run file {path}: line {no}: run tag {t!r} differs from {tag!r} of the first "
                "line (one system per run file)"
            )
        users.append(u)
        items.append(i)
        scores.append(s)
        lines.append(no)
    if not users:
        raise FusebenchError(f"run file {path} is empty (expected lines '{layout}')")
    run = RunFile(
        path,
        hashlib.sha256(raw).hexdigest(),
        np.array(users, dtype=object),
        np.array(items, dtype=object),
        np.array(scores, dtype=np.float64),
        np.array(lines, dtype=np.int64),
        tag,
    )
    _no_repeats(run.users, run.items, run.lines, "run file", path)
    return run


def read_qrels(path: str | Path) -> Qrels:
    """Parse TREC qrels ``user 0 item rel`` (whitespace separated); rel an integer, relevant
    when > 0 (binary relevance); a (user, item) pair appears once."""
    path, _, text = _read_text(path, "qrels")
    users, items, rels, lines = [], [], [], []
    for no, (u, _it, i, rel) in _fields(text, 4, "user 0 item rel", "qrels", path):
        try:
            r = int(rel)
        except ValueError:
            raise FusebenchError(
                f"qrels {path}: line {no}: relevance {rel!r} is not an integer (user 0 item rel)"
            ) from None
        users.append(u)
        items.append(i)
        rels.append(r)
        lines.append(no)
    if not users:
        raise FusebenchError(f"qrels {path} is empty (expected lines 'user 0 item rel')")
    q = Qrels(
        path,
        np.array(users, dtype=object),
        np.array(items, dtype=object),
        np.array(rels, dtype=np.int64),
        np.array(lines, dtype=np.int64),
    )
    _no_repeats(q.users, q.items, q.lines, "qrels", path)
    return q


# --------------------------------------------------------------------------- ranking


def ranked_lists(
    rows: np.ndarray, items: np.ndarray, scores: np.ndarray, tie: np.ndarray, n_rows: int, k: int
) -> np.ndarray:
    """int64 ``(n_rows, k)`` lists, best first: each row's entries by score descending, equal scores
    by ``tie`` ascending, cut at ``k``, padded with -1 (the layout `rank_metrics` takes)."""
    order = np.lexsort((tie, -scores, rows))
    r, i = rows[order], items[order]
    starts = np.searchsorted(r, np.arange(n_rows))
    pos = np.arange(len(r)) - starts[r]
    keep = pos < k
    out = np.full((n_rows, k), -1, dtype=np.int64)
    out[r[keep], pos[keep]] = i[keep]
    return out


def _index(universe: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each value in `universe` (strings), -1 where absent."""
    return pd.Index(np.asarray(universe, dtype=str)).get_indexer(np.asarray(values, dtype=str)).astype(np.int64)


def _sorted_ids(values: np.ndarray) -> np.ndarray:
    """Distinct ids in the loaders' order: numeric when all are integers, else by string
    (`datasets.atomic` numbers ids the same way, so integer ids tie-break like a loaded dataset)."""
    from datasets.atomic import _sorted_unique

    return np.asarray(_sorted_unique(np.asarray(values, dtype=str)), dtype=str)


def _listed(values: Sequence, lines: Sequence[int] | None = None) -> str:
    """The first few values (with their line numbers), for a one-line message."""
    values = [str(v) for v in values]
    lines = [None] * len(values) if lines is None else list(lines)
    shown = [repr(v) + ("" if ln is None else f" (line {ln})") for v, ln in zip(values[:LISTED], lines[:LISTED])]
    return ", ".join(shown) + (", ..." if len(values) > LISTED else "")


@dataclass
class Scored:
    """Per-user metrics of the scored users (rows), and what the inputs held."""

    users: np.ndarray  # raw ids of the scored users
    per_user: dict[str, np.ndarray]  # "<metric>@<k>" -> float64 (len(users),)
    n_relevant: np.ndarray
    n_listed: np.ndarray  # entries of the user's list before the cut (after masking)
    notes: list[str] = field(default_factory=list)  # warnings, printed on stderr


def score_files(run: RunFile, qrels: Qrels, convention: str = "recbole", ks: Sequence[int] = FILE_KS) -> Scored:
    """Score `run` against `qrels` under `convention` (see docs/metrics.md)."""
    if convention not in CONVENTIONS:
        raise FusebenchError(f"unknown convention {convention!r}; available: {', '.join(CONVENTIONS)}")
    ks = list(ks)
    kmax = max(ks)
    qusers = pd.unique(qrels.users)
    rel = qrels.rels > 0
    notes = []
    if convention == "recbole":
        # users with a relevant item; absent from the run: an empty list (0 on every metric)
        users = pd.unique(qrels.users[rel])
        if not len(users):
            raise FusebenchError(f"qrels {qrels.path}: no user has a relevant item (rel > 0): nothing to score")
    else:
        # trec_eval without -c: the queries that have both qrels and results
        in_run = set(pd.unique(run.users))
        users = np.array([u for u in qusers if u in in_run], dtype=object)
        if not len(users):
            raise FusebenchError(
                f"no user of qrels {qrels.path} appears in run file {run.path}: nothing to score "
                "(trec_eval: no queries with both results and relevance info)"
            )
    items = _sorted_ids(np.concatenate([run.items, qrels.items]).astype(str))
    row_of_run = _index(users, run.users)
    item_of_run = _index(items, run.items)
    keep = row_of_run >= 0
    if convention == "recbole":
        scores = run.scores[keep]
        tie = item_of_run[keep]  # the project's rule: lower item index (ids in the loaders' order)
    else:
        # trec_eval keeps scores as C floats and breaks ties by docno descending (strcmp)
        scores = run.scores[keep].astype(np.float32).astype(np.float64)
        tie = len(items) - 1 - _index(np.sort(items), run.items[keep])
    topk = ranked_lists(row_of_run[keep], item_of_run[keep], scores, tie, len(users), kmax)
    qkeep = rel & (_index(users, qrels.users) >= 0)
    truth = sp.csr_matrix(
        (
            np.ones(int(qkeep.sum()), dtype=np.float32),
            (_index(users, qrels.users[qkeep]), _index(items, qrels.items[qkeep])),
        ),
        shape=(len(users), len(items)),
    )
    per_user = M.rank_metrics(topk, truth, M.RANK_METRICS, ks)
    n_rel = np.diff(truth.indptr)
    if convention == "trec":
        for k in ks:
            # trec_eval's map_cut divides by |R|, ours by min(|R|, k) (tests/test_metrics.py)
            per_user[f"map@{k}"] = per_user[f"map@{k}"] * np.minimum(n_rel, k) / np.maximum(n_rel, 1)
        for v in per_user.values():
            v[n_rel == 0] = 0.0  # trec_eval scores a query without relevant documents 0
        if qrels.rels.max() > 1:
            notes.append(
                f"qrels hold graded labels (up to {int(qrels.rels.max())}): fusebench binarises them "
                "(rel > 0), while trec_eval's ndcg_cut would use the grades as gains"
            )
    n_listed = np.bincount(row_of_run[keep], minlength=len(users))
    outside = pd.unique(run.users[~keep])
    if len(outside):
        why = "not in the qrels" if convention == "trec" else "not in the qrels or without a relevant item there"
        notes.append(f"{len(outside)} run users are not scored ({why}): {_listed(outside)}")
    if convention == "recbole":
        absent = users[n_listed == 0]
        if len(absent):
            notes.append(
                f"{len(absent)} of {len(users)} qrels users with a relevant item are absent from the run: "
                f"each counts 0 on every metric ({_listed(absent)})"
            )
        norel = len(qusers) - len(users)
        if norel:
            notes.append(f"{norel} qrels users without a relevant item are left out")
    else:
        skipped = len(qusers) - len(users)
        if skipped:
            notes.append(f"{skipped} qrels users are absent from the run and skipped (trec_eval without -c)")
    return Scored(users.astype(str), per_user, n_rel, n_listed, notes)


# --------------------------------------------------------------------------- dataset mode


@dataclass
class DatasetScore:
    per_user: dict[str, np.ndarray]  # n_users long, NaN for users not evaluated (like `evaluate`)
    summary: dict[str, float]
    eval_users: np.ndarray
    n_listed: np.ndarray  # per evaluated user, after masking
    facts: dict[str, Any]
    notes: list[str]


def score_split(run: RunFile, dataset, split, ks: Sequence[int], mask_valid: bool = True) -> DatasetScore:
    """Score a run with raw ids on `split.test` the way `evaluate` scores a model at test time: run
    items among the user's train (and, with `mask_valid`, valid) interactions are dropped before
    the cut at max(ks); the per-user metrics, their means, coverage, Gini and novelty are computed
    as `evaluate` computes them."""
    from .evaluate import group_recall, group_truths, mean_metrics
    from .segments import item_groups

    exclude = split.train + split.valid if mask_valid else split.train

    n_users, n_items = split.test.shape
    u = _index(np.asarray(dataset.user_ids, dtype=str), run.users)
    i = _index(np.asarray(dataset.item_ids, dtype=str), run.items)
    for what, idx, ids in (("user", u, run.users), ("item", i, run.items)):
        bad = np.flatnonzero(idx < 0)
        if len(bad):
            uniq, first = np.unique(ids[bad].astype(str), return_index=True)
            first = np.sort(first)
            raise FusebenchError(
                f"run file {run.path}: {len(uniq)} {what} ids are not {what}s of dataset {dataset.name!r}: "
                f"{_listed(ids[bad][first], run.lines[bad][first])}; the run must use the dataset's raw ids, "
                "as `python -m benchmark datasets export NAME --split OUT` writes them"
            )
    truth = split.test.tocsr()
    has_truth = np.diff(truth.indptr) > 0
    eval_users = np.flatnonzero(has_truth).astype(np.int64)
    kmax = max(ks)
    keys = u * n_items + i
    ex = exclude.tocoo()
    seen = np.isin(keys, ex.row.astype(np.int64) * n_items + ex.col.astype(np.int64))
    row = np.full(n_users, -1, dtype=np.int64)
    row[eval_users] = np.arange(len(eval_users))
    keep = ~seen & (row[u] >= 0)
    topk = ranked_lists(row[u[keep]], i[keep], run.scores[keep], i[keep], len(eval_users), kmax)
    res = M.rank_metrics(topk, truth[eval_users], M.RANK_METRICS, ks)
    popularity = np.asarray(split.train.sum(axis=0)).ravel()
    res.update(M.novelty(topk, ks, popularity, n_users))
    groups = group_truths(truth, item_groups(popularity))  # head and tail items, as at test time
    res.update(group_recall(topk, groups, eval_users, ks))
    per_user = {}
    for name, values in res.items():
        per_user[name] = np.full(n_users, np.nan)
        per_user[name][eval_users] = values
    # `evaluate`'s summary: NaN-means, then coverage and Gini over the evaluated users' lists
    summary = mean_metrics(
        {
            name: per_user[name]
            for name in [f"{m}@{k}" for m in M.RANK_METRICS for k in ks]
            + [f"novelty@{k}" for k in ks]
            + [f"recall@{k}|{g}" for g in groups for k in ks]
        }
    )
    counts = M.item_counts(topk, ks, n_items)
    for ci, k in enumerate(ks):
        summary[f"item_coverage@{k}"], summary[f"gini@{k}"] = (
            M.coverage_and_gini(counts[ci]) if len(eval_users) else (float("nan"), float("nan"))
        )
    n_listed = np.bincount(row[u[keep]], minlength=len(eval_users))
    run_users = np.unique(u)
    facts = {
        "run_lines": int(len(u)),
        "run_users": int(len(run_users)),
        "run_users_without_test_items": int((~has_truth[run_users]).sum()),
        "test_users": int(len(eval_users)),
        "test_users_absent": int((n_listed == 0).sum()),
        "test_users_short": int(((n_listed > 0) & (n_listed < kmax)).sum()),
        "dropped_train_valid": int((seen & (row[u] >= 0)).sum()),
        "cutoff": int(kmax),
    }
    notes = []
    if facts["test_users_absent"]:
        absent = np.asarray(dataset.user_ids)[eval_users[n_listed == 0]]
        notes.append(
            f"{facts['test_users_absent']} of {len(eval_users)} test users are absent from the run: each "
            f"counts 0 on every metric (a recommender answers every test user): {_listed(absent)}"
        )
    if facts["dropped_train_valid"]:
        what = "train or valid" if mask_valid else "train"
        notes.append(
            f"dropped {facts['dropped_train_valid']} recommendations of items in the user's {what} "
            f"interactions before the cut at {kmax} (masked, as for every model)"
        )
    if facts["test_users_short"]:
        notes.append(
            f"{facts['test_users_short']} test users have fewer than {kmax} recommendations (after masking): "
            f"their lists are shorter, precision still divides by k"
        )
    if facts["run_users_without_test_items"]:
        notes.append(f"{facts['run_users_without_test_items']} run users have no test items in this split: not scored")
    return DatasetScore(per_user, summary, eval_users, n_listed, facts, notes)


def external_record(
    dataset, split, name: str, run: RunFile, scored: DatasetScore, protocol_name: str, mask_valid: bool
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """An ordinary run record (and its per-user arrays) for an external system's run file."""
    from .records import record_key
    from .seed_run import data_identity, describe_data

    training = {"protocol": protocol_name, "mask_valid_at_test": mask_valid}
    identity = {
        **data_identity(dataset, split),
        "model": {"name": name, "params": {}, "run_sha256": run.sha256},
        "training": training,
    }
    key = record_key(identity)
    record = {
        **describe_data(identity, key, dataset, split, "cpu"),
        "model": {
            "name": name,
            "family": EXTERNAL,
            "params": {},
            "defaults": {},
            "modalities": [],
            "n_parameters": None,
            "run_file": {"path": str(run.path.resolve()), "sha256": run.sha256, "tag": run.tag},
        },
        "training": {**training, "scored_by": "python -m benchmark score"},
        "scoring": scored.facts,
        "valid": {},
        "test": scored.summary,
        "n_test_users": int(len(scored.eval_users)),
        "train_seconds": None,
        "eval_seconds": None,
    }
    return record, stored_arrays(scored.per_user, split)


# --------------------------------------------------------------------------- output


def metric_table(means: dict[str, float], ks: Sequence[int]) -> str:
    from tabulate import tabulate

    rows = [[m] + [f"{means[f'{m}@{k}']:.4f}" for k in ks] for m in M.RANK_METRICS]
    return tabulate(rows, headers=["metric", *(f"@{k}" for k in ks)], tablefmt="simple", disable_numparse=True)


def write_per_user(
    path: str | Path,
    users: np.ndarray,
    n_relevant: np.ndarray,
    n_listed: np.ndarray,
    per_user: dict[str, np.ndarray],
    ks: Sequence[int],
) -> Path:
    """CSV: one row per scored user (``user``, ``n_relevant``, ``n_listed``, then ``metric@k``)."""
    from datasets.download import atomic_write

    path = Path(path).expanduser()
    if path.is_dir():
        raise FusebenchError(f"--per-user {path} is a folder; give a file name such as per_user.csv")
    cols = [f"{m}@{k}" for m in M.RANK_METRICS for k in ks]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["user", "n_relevant", "n_listed", *cols])
    for r, u in enumerate(users):
        w.writerow([u, int(n_relevant[r]), int(n_listed[r]), *(repr(float(per_user[c][r])) for c in cols)])
    data = buf.getvalue().encode()
    return atomic_write(path, lambda f: f.write(data))


# --------------------------------------------------------------------------- command line


def parse_ks(value: str | None, default: Sequence[int]) -> list[int]:
    from .options import UsageError, split_list

    if value is None:
        return list(default)
    out = []
    for part in split_list(value, "--ks"):
        try:
            k = int(part)
        except ValueError:
            raise UsageError(f"--ks: {part!r} is not an integer cutoff") from None
        if k < 1:
            raise UsageError(f"--ks: cutoffs must be >= 1, got {k}")
        if k not in out:
            out.append(k)
    if not out:
        raise UsageError("--ks needs at least one cutoff")
    return out


def split_of(dataset, protocol: str | None, seed: int | None, allow_mmrec: bool = True):
    """(split, evaluation protocol name, whether valid items are masked at test) for `protocol`
    (a split protocol, or mmrec = the given split with only train items masked); the dataset's
    default protocol and seed 0 when not given (as `run`)."""
    import datasets

    from .options import UsageError

    seed = 0 if seed is None else seed
    if seed < 0:
        raise UsageError("--seed must be >= 0")
    known = (*datasets.PROTOCOLS, "mmrec") if allow_mmrec else datasets.PROTOCOLS
    if protocol is not None and protocol not in known:
        raise UsageError(f"unknown protocol {protocol!r}; available: {', '.join(known)}")
    from .protocol import Protocol

    cfg = Protocol.mmrec() if protocol == "mmrec" else Protocol(split=protocol)
    return cfg.split_of(dataset, seed), cfg.name, cfg.mask_valid_at_test


def _warn(notes: list[str]) -> None:
    for n in notes:
        print(f"warning: {n}", file=sys.stderr)


def cmd_score(args) -> int:
    from .options import UsageError

    if bool(args.qrels) == bool(args.dataset):
        raise UsageError(
            "score needs either --qrels QRELS (score a run file) or --dataset D --name NAME "
            "(score it on a dataset's split and write a run record)"
        )
    if args.qrels:
        wrong = [
            o
            for o, v in (
                ("--name", args.name),
                ("--protocol", args.protocol),
                ("--seed", args.seed),
                ("--rating-threshold", args.rating_threshold),
                ("--force", args.force or None),
                ("--results", None if args.results == "results" else args.results),  # qrels mode writes no record
                ("--data-dir", args.data_dir),
            )
            if v is not None
        ]
        if wrong:
            raise UsageError(f"{', '.join(wrong)} apply with --dataset, not with --qrels")
        return _score_files_cmd(args)
    return _score_dataset_cmd(args)


def _score_files_cmd(args) -> int:
    ks = parse_ks(args.ks, FILE_KS)
    qrels = read_qrels(args.qrels)
    run = read_run(args.run)
    scored = score_files(run, qrels, args.convention, ks)
    _warn(scored.notes)
    means = {k: float(np.mean(v)) if len(v) else float("nan") for k, v in scored.per_user.items()}
    # recbole: users without a relevant item are not rows at all; trec: every row counts
    print(
        f"{args.convention} convention: {len(scored.users)} users scored; run {run.path.name} "
        f"(sha256 {run.sha256[:12]}), qrels {qrels.path.name}"
    )
    print(metric_table(means, ks))
    if args.per_user:
        path = write_per_user(args.per_user, scored.users, scored.n_relevant, scored.n_listed, scored.per_user, ks)
        print(f"wrote {path}")
    return 0


def _score_dataset_cmd(args) -> int:
    import datasets
    from baselines.base import model_names

    from .options import UsageError
    from .protocol import DEFAULT_KS
    from .records import RecordStore

    if not args.name:
        raise UsageError("score --dataset needs --name NAME: what the leaderboard calls the external system")
    if not MODEL_NAME.match(args.name):
        raise UsageError(
            f"--name {args.name!r}: use letters, digits and . _ + - (at most 64 characters, "
            "starting with a letter or digit)"
        )
    if args.name in model_names():
        raise UsageError(f"--name {args.name!r} is a fusebench model; give the external system a name of its own")
    if args.convention != "recbole" or args.ks is not None:
        raise UsageError(
            "with --dataset the record follows the fusebench protocol (the recbole convention, cutoffs "
            f"{','.join(map(str, DEFAULT_KS))}): --convention and --ks apply with --qrels"
        )
    if not str(args.results).strip():
        raise UsageError("--results needs a folder")
    store = RecordStore(args.results)
    store.check_layout()
    ds = datasets.load(args.dataset, data_dir=args.data_dir, rating_threshold=args.rating_threshold)
    split, protocol_name, mask_valid = split_of(ds, args.protocol, args.seed)
    if split.test.nnz == 0:
        raise FusebenchError(
            f"dataset {ds.name!r}: its {split.protocol} split (seed {split.seed}) has no test "
            "interactions, so there is nothing to evaluate"
        )
    run = read_run(args.run)
    scored = score_split(run, ds, split, DEFAULT_KS, mask_valid)
    record, arrays = external_record(ds, split, args.name, run, scored, protocol_name, mask_valid)
    _warn(scored.notes)
    print(
        f"{args.name} on {ds.name} ({split.protocol} split, seed {split.seed}): {len(scored.eval_users)} test users, "
        f"run {run.path.name} (sha256 {run.sha256[:12]})"
    )
    print(metric_table(scored.summary, DEFAULT_KS))
    if args.per_user:
        users = np.asarray(ds.user_ids)[scored.eval_users].astype(str)
        n_rel = np.diff(split.test.tocsr().indptr)[scored.eval_users]
        per_user = {k: v[scored.eval_users] for k, v in scored.per_user.items()}
        print(f"wrote {write_per_user(args.per_user, users, n_rel, scored.n_listed, per_user, DEFAULT_KS)}")
    if not args.force and store.exists(ds.name, args.name, record["key"]):
        print(f"already recorded: {store.load(ds.name, args.name, record['key']).path} (--force rewrites it)")
        return 0
    print(f"wrote {store.write(record, arrays)}")
    from .leaderboard import write_leaderboard

    print(f"wrote {write_leaderboard(args.results)}")
    return 0
