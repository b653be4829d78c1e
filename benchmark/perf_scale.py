"""Cost of every registered model on data of the multimodal field's size:
``python -m benchmark perf scale [--users N --items M --interactions K --text-dim D --image-dim D]``.

It writes a synthetic MMRec folder of that shape (default: Amazon Sports, 35,598 users x
18,357 items x 296,337 interactions, 384-d text and 4096-d image features; `SHAPES` holds the
others), then, for each model, in a fresh process of its own (so each peak memory is that
model's): the dataset is loaded, the model initialised, trained `--epochs` epochs (the first is
reported apart: graph building, JIT), and evaluated once on validation and once on test
(full ranking, the protocol's masking). One-shot models are fitted once. RecBole's own BPR and
LightGCN run on the same folder and split (ratio ours / RecBole's, below 1 is faster).

The data: item popularity follows a power law (Zipf exponent `ZIPF`), user activity a
log-normal with at least 5 interactions, each user's interactions split 8:1:1 into
train/valid/test (MMRec's `x_label`); features are a noisy view of 32 latent item factors
(text linear, image rectified), so content carries signal. Seeded: the same shape gives the
same folder, which is kept under `--out` (default: a folder in the cache) and reused.

Floors, at this machine's measured rates in the child process (`perf_train.machine_rates`):
an epoch's as in `perf train` (dense FLOPs counted over one more epoch plus Adam's dense
update), and a full-ranking pass's: the score matrix's FLOPs (users x items x width x 2) plus
reading it once for the top-K. The folder and each model's known large allocations are checked
against free memory first (`datasets.memory`): a shape that cannot fit is refused, with the
estimate, before anything is allocated.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from pathlib import Path
from queue import Empty

import numpy as np

from datasets.errors import FusebenchError
from datasets.memory import require

# (users, items, interactions) of the field's standard datasets (MMRec's processed versions)
SHAPES = {
    "baby": (19_445, 7_050, 160_792),
    "sports": (35_598, 18_357, 296_337),
    "clothing": (39_387, 23_033, 278_677),
    "elec": (192_403, 63_001, 1_689_188),
    "microlens": (100_000, 19_738, 719_405),
}
ZIPF = 0.8  # item popularity p(rank) ~ (rank + 1)^-ZIPF
LATENT = 32
MIN_PER_USER = 5
# the models part 2 of the scale issue holds to the floor (the others are timed, not judged)
FLOORED = ("bpr", "lightgcn", *(f"fusion-{s}" for s in ("concat", "late", "attention", "adversarial", "mapping")))
FLOORED = (*FLOORED, "fusion-transformer")
REFERENCES = {"bpr": "recbole:BPR", "lightgcn": "recbole:LightGCN"}


def folder_bytes(users: int, items: int, interactions: int, text_dim: int, image_dim: int) -> int:
    """What building the folder holds in memory at once: the interaction columns (ids, labels,
    the draw's temporaries) and the largest feature matrix with its float64 draw."""
    return 64 * interactions + 12 * items * max(text_dim, image_dim, LATENT) + 8 * users


def make_folder(
    out: Path, users: int, items: int, interactions: int, text_dim: int, image_dim: int, seed: int = 0
) -> Path:
    """Write (or reuse) the synthetic MMRec folder of this shape under `out`; returns its path."""
    from datasets.download import atomic_write

    name = f"scale-{users}x{items}x{interactions}-t{text_dim}-i{image_dim}-s{seed}"
    root = out / name
    inter = root / f"{name}.inter"
    if inter.exists():
        return root
    if min(users, items) < 1 or interactions < users * MIN_PER_USER:
        raise FusebenchError(
            f"a scale shape needs users, items >= 1 and at least {MIN_PER_USER} interactions per user "
            f"({users * MIN_PER_USER:,} for {users:,} users), got {interactions:,}"
        )
    if items < 2 * MIN_PER_USER:
        raise FusebenchError(f"a scale shape needs at least {2 * MIN_PER_USER} items, got {items:,}")
    rng = np.random.default_rng(seed)
    # user activity: log-normal, at least MIN_PER_USER each, summing to about `interactions`
    act = rng.lognormal(0.0, 1.0, users)
    act = MIN_PER_USER + np.floor(act / act.sum() * (interactions - MIN_PER_USER * users)).astype(np.int64)
    act = np.minimum(act, items // 2)
    pop = (np.arange(items) + 1.0) ** -ZIPF
    pop = pop[rng.permutation(items)]  # popular items anywhere in the id range
    pop /= pop.sum()
    keys = np.zeros(0, dtype=np.int64)
    want = act
    for _ in range(50):  # a repeated (user, item) is drawn again, until each user has its count
        draw = np.repeat(np.arange(users, dtype=np.int64), want)
        keys = np.unique(np.concatenate([keys, draw * items + rng.choice(items, size=len(draw), p=pop)]))
        want = act - np.bincount(keys // items, minlength=users)
        if not want.any():
            break
    user_col, item_col = keys // items, keys % items
    # per user, a random order: the last 10% test, the 10% before valid, at least one each
    order = np.lexsort((rng.random(len(keys)), user_col))
    user_col, item_col = user_col[order], item_col[order]
    start = np.searchsorted(user_col, np.arange(users))
    count = np.diff(np.append(start, len(user_col)))
    pos = np.arange(len(user_col)) - np.repeat(start, count)
    n = np.repeat(count, count)
    n_test = np.maximum(1, n // 10)
    label = np.where(pos >= n - n_test, 2, np.where(pos >= n - 2 * n_test, 1, 0))
    label[n < 3] = 0
    root.mkdir(parents=True, exist_ok=True)
    z = rng.standard_normal((items, LATENT)).astype(np.float32)
    for fname, dim, rectify in (("text_feat.npy", text_dim, False), ("image_feat.npy", image_dim, True)):
        if dim <= 0:
            continue
        w = rng.standard_normal((LATENT, dim)).astype(np.float32) / np.sqrt(LATENT)
        x = z @ w + rng.standard_normal((items, dim), dtype=np.float32)
        if rectify:
            np.maximum(x, 0, out=x)
        atomic_write(root / fname, lambda fh, x=x: np.save(fh, x))
        del x
    lines = "".join(f"{u}\t{i}\t{lab}\n" for u, i, lab in zip(user_col.tolist(), item_col.tolist(), label.tolist()))
    # last: its presence marks a complete folder
    atomic_write(inter, lambda fh: fh.write(("userID\titemID\tx_label\n" + lines).encode()))
    return root


def eval_floor(n_users: int, n_items: int, width: int, rates: dict[str, float]) -> float:
    """Seconds a full-ranking pass cannot go below: the score matrix's products and one read of it."""
    return 2.0 * n_users * n_items * width / rates["flops"] + 4.0 * n_users * n_items / (rates["bandwidth"] / 2)


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def measure(spec: str, name: str, params: dict, epochs: int, floor: bool) -> dict:
    """In a child process: load the folder, time one model, report its peak memory."""
    import torch

    import datasets
    import fusion_models  # noqa: F401  (registers the fusion models)
    from baselines import FitData, get_model_class, make_model

    from . import metrics
    from .evaluate import evaluate
    from .perf_train import epoch_floor, machine_rates
    from .protocol import Protocol

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or torch.get_num_threads()))
    metrics.warmup()  # the metric core's JIT compile is not an evaluation pass
    ds = datasets.load(f"mmrec:{spec}")
    split = Protocol().split_of(ds, 0)
    data = FitData.from_split(ds, split)
    loaded = _peak_rss()
    out: dict = {"name": name, "loaded_rss": loaded}
    try:
        model = make_model(name, params)
        t0 = time.perf_counter()
        if get_model_class(name).iterative:
            model.init(data)
            out["init"] = time.perf_counter() - t0
            per = []
            for _ in range(epochs):
                t0 = time.perf_counter()
                model.train_epoch()
                per.append(time.perf_counter() - t0)
            rest = per[1:] or per
            out.update(first=per[0], epoch=statistics.median(rest), min=min(rest), max=max(rest))
        else:
            model.fit(data)
            out["fit"] = time.perf_counter() - t0
        valid = evaluate(model.score, split.valid, split.train, metrics=("recall",), ks=(20,))
        test = evaluate(model.score, split.test, split.train + split.valid, metrics=("recall",), ks=(20,))
        out.update(valid=valid.seconds, test=test.seconds, recall=test.summary["recall@20"])
        rates = machine_rates()
        width = int(getattr(model, "embedding_size", 64) or 64)
        out["eval_floor"] = eval_floor(split.valid.getnnz(axis=1).astype(bool).sum(), ds.n_items, width, rates)
        out["test_floor"] = eval_floor(split.test.getnnz(axis=1).astype(bool).sum(), ds.n_items, width, rates)
        if floor and get_model_class(name).iterative:
            out["floor"] = epoch_floor(model, rates)
    except FusebenchError as e:  # refused before allocating (datasets.memory) or unusable here
        out["refused"] = str(e)
    out["peak_rss"] = _peak_rss()
    return out


def _child(queue, *args) -> None:
    try:
        queue.put(measure(*args))
    except BaseException as e:  # noqa: BLE001 - reported in the parent's table, the run goes on
        queue.put({"name": args[1], "error": f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"})


def run_child(spec: str, name: str, params: dict, epochs: int, floor: bool) -> dict:
    """`measure` in a fresh spawned process (its own peak memory; a crash or an OOM kill is a
    line in the table, not the end of the run)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, spec, name, params, epochs, floor))
    proc.start()
    result = None
    try:
        while result is None:
            try:
                result = queue.get(timeout=1.0)
            except Empty:
                if not proc.is_alive():  # killed (OOM) or crashed (a segfault) before it reported
                    break
    except BaseException:
        proc.terminate()
        raise
    finally:
        proc.join(timeout=60)
    if result is None:
        result = {"name": name, "error": f"the process ended with code {proc.exitcode} before reporting"}
    return result


def _gib(b: float) -> str:
    return f"{b / 1024**3:.2f}"


def run_scale(args) -> int:
    """`perf scale` (options in `benchmark.cli`)."""
    users, items, interactions = SHAPES[args.shape]
    users, items = args.users or users, args.items or items
    interactions = args.interactions or interactions
    if args.epochs < 1:
        raise FusebenchError("--epochs must be >= 1")
    if min(args.text_dim, args.image_dim) < 0:
        raise FusebenchError("--text-dim and --image-dim must be >= 0")
    import fusion_models  # noqa: F401  (registers the fusion models)
    from baselines import get_model_class, model_names
    from datasets.download import cache_dir

    from .options import resolve_models, shared_params, split_list

    names = resolve_models(split_list(args.models, "--models") or model_names())
    overrides = shared_params(names, args.param)
    # the folder's arrays and, per model, a user-item score block per evaluation batch
    require(
        folder_bytes(users, items, interactions, args.text_dim, args.image_dim),
        f"a synthetic folder of {users:,} users x {items:,} items x {interactions:,} interactions "
        f"with {args.text_dim}-d text and {args.image_dim}-d image features",
        "choose a smaller shape",
    )
    out = Path(args.out) if args.out else cache_dir() / "scale"
    t0 = time.perf_counter()
    root = make_folder(out, users, items, interactions, args.text_dim, args.image_dim)
    built = time.perf_counter() - t0
    import torch

    print(
        f"perf scale: {users:,} users x {items:,} items x about {interactions:,} interactions, text {args.text_dim}-d, "
        f"image {args.image_dim}-d ({root}, ready in {built:.1f} s); torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, one process per model, {args.epochs} epochs each"
    )
    refs = [] if args.no_reference else [REFERENCES[m] for m in names if m in REFERENCES]
    results = {}
    for name in [*names, *refs]:
        cls = get_model_class(name)
        params = {k: v for k, v in overrides.items() if k in cls.param_names()}
        r = results[name] = run_child(str(root), name, params, args.epochs, not args.no_floor and name in FLOORED)
        if "error" in r or "refused" in r:
            print(f"  {name:22s} {'refused' if 'refused' in r else 'failed'}: {r.get('refused') or r['error']}")
            continue
        train = f"epoch {r['epoch']:8.3f} s" if "epoch" in r else f"fit {r['fit']:8.3f} s"
        print(
            f"  {name:22s} {train}  validation {r['valid']:6.2f} s  test {r['test']:6.2f} s  "
            f"peak {_gib(r['peak_rss'])} GiB (data {_gib(r['loaded_rss'])})",
            flush=True,
        )
    print()
    print(
        "| model | s / epoch (fit) | s / validation | s / test | x eval floor | peak GiB | reference "
        "| x reference's epoch | floor s / epoch (GFLOP, steps) | x floor |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        r = results[name]
        if "error" in r or "refused" in r:
            print(f"| {name} | {'refused' if 'refused' in r else 'failed'}: {r.get('refused') or r['error']} |")
            continue
        train = f"{r['epoch']:.3f}" if "epoch" in r else f"({r['fit']:.3f})"
        ref = REFERENCES.get(name)
        rr = results.get(ref) if ref else None
        x_ref = f"{r['epoch'] / rr['epoch']:.2f} (RecBole {rr['epoch']:.3f} s)" if rr and "epoch" in rr else ""
        f = r.get("floor")
        floor = "" if not f else f"{f['seconds']:.3f} ({f['gflops']:.1f}, {f['steps']})"
        x_floor = "" if not f or f["seconds"] <= 0 else f"{r['epoch'] / f['seconds']:.1f}"
        x_eval = f"{r['test'] / r['test_floor']:.1f}" if r.get("test_floor") else ""
        print(
            f"| {name} | {train} | {r['valid']:.2f} | {r['test']:.2f} | {x_eval} | {_gib(r['peak_rss'])} "
            f"| {ref if rr else ''} | {x_ref} | {floor} | {x_floor} |"
        )
    return 0
