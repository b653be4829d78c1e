"""Per-epoch cost of every iterative model: ``python -m benchmark perf train --dataset D``.

For each iterative model (defaults, or ``--param NAME=VALUE`` for every model that has it) on
the dataset's default split of seed 0, in this one process: ``init``, then ``--epochs`` training
epochs (the first is reported apart: it pays one-off costs such as graph building and JIT), and
one validation pass (full ranking, train items masked, as the protocol loop does every epoch).
BPR and LightGCN are also run through RecBole's own implementation (``recbole:BPR``,
``recbole:LightGCN``, the adapter) on the same split, and their ratio is printed
(ours / RecBole's; below 1 is faster). Every model's epoch is also given as a multiple of
BPR's (the fusion strategies' goal is within 3x).

Timings are medians over the epochs after the first; a noisy machine shows as a wide min-max.
"""

from __future__ import annotations

import argparse
import statistics
import time

import datasets
from baselines import FitData, get_model_class, make_model, model_names
from datasets.errors import FusebenchError

from .evaluate import evaluate

# our model -> the reference implementation it is compared with, on the same split
REFERENCES = {"bpr": "recbole:BPR", "lightgcn": "recbole:LightGCN"}


def time_model(name: str, params: dict, data: FitData, valid, epochs: int) -> dict:
    """Init, `epochs` training epochs and one validation pass of one model (seconds)."""
    model = make_model(name, params)
    t0 = time.perf_counter()
    model.init(data)
    init_s = time.perf_counter() - t0
    per_epoch = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train_epoch()
        per_epoch.append(time.perf_counter() - t0)
    res = evaluate(model.score, valid, data.train, metrics=("recall",), ks=(20,))
    rest = per_epoch[1:] or per_epoch
    return {
        "init": init_s,
        "first": per_epoch[0],
        "epoch": statistics.median(rest),
        "min": min(rest),
        "max": max(rest),
        "valid": res.seconds,
        "recall@20": res.summary["recall@20"],
    }


def main_train(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmark perf train",
        description="seconds per training epoch and per validation pass, per model",
    )
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--models", help="comma-separated iterative models (default: every registered one)")
    p.add_argument("--epochs", type=int, default=4, help="epochs timed per model (default 4; the first apart)")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="hyper-parameter for every model that has it (e.g. batch_size=4096)",
    )
    p.add_argument("--no-reference", action="store_true", help="skip RecBole's BPR and LightGCN")
    p.add_argument("--data-dir")
    args = p.parse_args(argv)
    if args.epochs < 2:
        raise FusebenchError("--epochs must be >= 2 (the first epoch is reported apart)")
    import torch

    import fusion_models  # noqa: F401  (registers the fusion models)

    names = (
        [m.strip() for m in args.models.split(",") if m.strip()]
        if args.models
        else [m for m in model_names() if get_model_class(m).iterative]
    )
    for m in names:
        if not get_model_class(m).iterative:
            raise FusebenchError(f"{m} is not an iterative model (perf train times epochs)")
    overrides = {}
    for item in args.param:
        k, sep, v = item.partition("=")
        if not sep:
            raise FusebenchError(f"--param expects NAME=VALUE, got {item!r}")
        import json

        try:
            overrides[k] = json.loads(v)
        except json.JSONDecodeError:
            overrides[k] = v
    from . import metrics

    metrics.warmup()  # the metric core's JIT compile is not a validation pass
    ds = datasets.load(args.dataset, data_dir=args.data_dir)
    protocol = datasets.default_protocol(ds)
    split = datasets.split(ds, protocol=protocol, seed=0)
    data = FitData.from_split(ds, split)
    print(
        f"perf train: {ds.name} ({ds.n_users:,} users x {ds.n_items:,} items, {split.train.nnz:,} training "
        f"interactions, {protocol} split seed 0), torch {torch.__version__} with {torch.get_num_threads()} "
        f"threads, {args.epochs} epochs per model (median of epochs 2..{args.epochs})"
    )
    results = {}
    todo = list(names)
    if not args.no_reference:
        todo += [REFERENCES[m] for m in names if m in REFERENCES]
    for name in todo:
        cls = get_model_class(name)
        params = {k: v for k, v in overrides.items() if k in cls.param_names()}
        r = results[name] = time_model(name, params, data, split.valid, args.epochs)
        print(
            f"  {name:22s} init {r['init']:7.2f} s  epoch 1 {r['first']:7.3f} s  epoch {r['epoch']:7.3f} s "
            f"({r['min']:.3f}-{r['max']:.3f})  validation {r['valid']:6.3f} s",
            flush=True,
        )
    bpr = results.get("bpr", {}).get("epoch")
    print()
    print("| model | s / epoch | s / validation | x BPR's epoch | reference | x reference's epoch |")
    print("|---|---|---|---|---|---|")
    for name in names:
        r = results[name]
        ref = REFERENCES.get(name)
        ref_r = results.get(ref) if ref else None
        x_bpr = "" if bpr is None else f"{r['epoch'] / bpr:.2f}"
        x_ref = "" if not ref_r else f"{r['epoch'] / ref_r['epoch']:.2f} (RecBole {ref_r['epoch']:.3f} s)"
        print(f"| {name} | {r['epoch']:.3f} | {r['valid']:.3f} | {x_bpr} | {ref if ref_r else ''} | {x_ref} |")
    return 0
