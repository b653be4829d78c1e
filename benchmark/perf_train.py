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

The floor of a torch model's epoch is what the epoch must compute and move at this machine's
measured rates, in this process (its thread count): the FLOPs of its dense products (forward
and backward, counted by torch's FlopCounterMode over one more epoch; sparse products, e.g. a
graph propagation, are not counted) at the rate of a 1024^3 float32 matrix product, plus
Adam's dense update (28 bytes per parameter per step: parameter, two moments read and written,
gradient read) at the measured copy bandwidth. An epoch near its floor is bound by arithmetic
or memory, not by overhead; far above it, by per-operation overhead.
"""

from __future__ import annotations

import statistics
import time

import datasets
from baselines import FitData, get_model_class, make_model, model_names
from datasets.errors import FusebenchError

from .evaluate import evaluate
from .protocol import Protocol

# our model -> the reference implementation it is compared with, on the same split
REFERENCES = {"bpr": "recbole:BPR", "lightgcn": "recbole:LightGCN"}


# Adam's dense step per parameter: read and write the parameter and both moments, read the gradient
ADAM_BYTES_PER_PARAM = 28


def machine_rates(repeat: int = 5) -> dict[str, float]:
    """This process's float32 matrix-product rate (FLOP/s) and memory copy bandwidth (bytes/s,
    read plus write), best of `repeat`."""
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    c = torch.empty(1024, 1024)
    x = torch.ones(1 << 25)  # 128 MiB: past every cache
    y = torch.empty_like(x)
    mm, copy = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        mm.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        y.copy_(x)
        copy.append(time.perf_counter() - t0)
    return {"flops": 2 * 1024**3 / min(mm), "bandwidth": 2 * x.numel() * 4 / min(copy)}


def epoch_floor(model, rates: dict[str, float]) -> dict | None:
    """The floor of one more training epoch of a fitted torch model (see the module notes):
    its counted dense FLOPs, optimiser steps and seconds at `rates`; None for other models."""
    from torch.utils.flop_counter import FlopCounterMode

    opt = getattr(model, "_optimizer", None)
    if opt is None:
        return None
    steps = 0
    step = opt.step

    def counted(*args, **kwargs):
        nonlocal steps
        steps += 1
        return step(*args, **kwargs)

    opt.step = counted
    try:
        with FlopCounterMode(display=False) as counter:
            model.train_epoch()
    finally:
        opt.step = step
    flops = counter.get_total_flops()
    n_params = sum(p.numel() for group in opt.param_groups for p in group["params"] if p.requires_grad)
    seconds = flops / rates["flops"] + steps * n_params * ADAM_BYTES_PER_PARAM / rates["bandwidth"]
    return {"gflops": flops / 1e9, "steps": steps, "seconds": seconds}


def time_model(name: str, params: dict, data: FitData, valid, epochs: int, rates: dict | None = None) -> dict:
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
    floor = epoch_floor(model, rates) if rates is not None else None
    return {
        "floor": floor,
        "init": init_s,
        "first": per_epoch[0],
        "epoch": statistics.median(rest),
        "min": min(rest),
        "max": max(rest),
        "valid": res.seconds,
        "recall@20": res.summary["recall@20"],
    }


def run_train(args) -> int:
    """`perf train` (options in `benchmark.cli`)."""
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
    from .options import shared_params

    overrides = shared_params(names, args.param)
    from . import metrics

    metrics.warmup()  # the metric core's JIT compile is not a validation pass
    ds = datasets.load(args.dataset, data_dir=args.data_dir)
    split = Protocol().split_of(ds, 0)
    protocol = split.protocol
    data = FitData.from_split(ds, split)
    print(
        f"perf train: {ds.name} ({ds.n_users:,} users x {ds.n_items:,} items, {split.train.nnz:,} training "
        f"interactions, {protocol} split seed 0), torch {torch.__version__} with {torch.get_num_threads()} "
        f"threads, {args.epochs} epochs per model (median of epochs 2..{args.epochs})"
    )
    rates = machine_rates()
    print(
        f"  this process: {rates['flops'] / 1e9:.1f} GFLOP/s (1024^3 float32 product), "
        f"{rates['bandwidth'] / 1e9:.1f} GB/s (copy); floors as in `perf train --help`'s notes"
    )
    results = {}
    todo = list(names)
    refs = [] if args.no_reference else [REFERENCES[m] for m in names if m in REFERENCES]
    todo += refs
    for name in todo:
        cls = get_model_class(name)
        params = {k: v for k, v in overrides.items() if k in cls.param_names()}
        r = results[name] = time_model(name, params, data, split.valid, args.epochs, None if name in refs else rates)
        print(
            f"  {name:22s} init {r['init']:7.2f} s  epoch 1 {r['first']:7.3f} s  epoch {r['epoch']:7.3f} s "
            f"({r['min']:.3f}-{r['max']:.3f})  validation {r['valid']:6.3f} s",
            flush=True,
        )
    bpr = results.get("bpr", {}).get("epoch")
    print()
    print(
        "| model | s / epoch | s / validation | x BPR's epoch | reference | x reference's epoch "
        "| floor s / epoch (GFLOP, steps) | x floor |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        r = results[name]
        ref = REFERENCES.get(name)
        ref_r = results.get(ref) if ref else None
        x_bpr = "" if bpr is None else f"{r['epoch'] / bpr:.2f}"
        x_ref = "" if not ref_r else f"{r['epoch'] / ref_r['epoch']:.2f} (RecBole {ref_r['epoch']:.3f} s)"
        f = r["floor"]
        floor = "" if f is None else f"{f['seconds']:.3f} ({f['gflops']:.1f}, {f['steps']})"
        x_floor = "" if f is None or f["seconds"] <= 0 else f"{r['epoch'] / f['seconds']:.1f}"
        print(
            f"| {name} | {r['epoch']:.3f} | {r['valid']:.3f} | {x_bpr} | {ref if ref_r else ''} | {x_ref} "
            f"| {floor} | {x_floor} |"
        )
    return 0
