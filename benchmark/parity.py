"""Parity check: our models against RecBole's, on the same split, seeds and protocol.

    python -m benchmark parity --seeds 3 --dataset ml-100k --models bpr,lightgcn

For each seed s (split = per-user random 8:1:1 with seed s, model seed s) and each model,
ours (``bpr``, ``lightgcn``) and RecBole's (``recbole:BPR``, ``recbole:LightGCN``, through
`baselines.recbole_adapter`) are trained by `benchmark.seed_run.run_one` into a temporary
results folder: the same validation-based early stopping (``--metric``, ``--patience``), the
same metric core, the same masking. Printed: test Recall@20 and NDCG@20 (mean +- sample std
over seeds), mean seconds per training epoch, and the epochs trained per seed.

Both sides use RecBole's defaults (embedding 64, Adam lr 1e-3, batch 2048, 300 epochs);
``--epochs`` and ``--learning-rate`` override both sides alike. Our ``lightgcn`` is given
RecBole's ``reg_weight`` (1e-5) so the two are configured the same. A model of ours that is
not registered is skipped with a note.
"""

from __future__ import annotations

import sys
import tempfile

import numpy as np

from .metrics import PRIMARY_METRIC

PAIRS = {
    # ours: (our name, our params, RecBole name, RecBole params)
    "bpr": ("bpr", {}, "recbole:BPR", {}),
    "lightgcn": ("lightgcn", {"reg_weight": 1e-5}, "recbole:LightGCN", {}),
}


def _fmt(values: list[float]) -> str:
    a = np.asarray(values, dtype=np.float64)
    sd = a.std(ddof=1) if len(a) > 1 else 0.0
    return f"{a.mean():.4f} ± {sd:.4f}"


def run_parity(args) -> int:
    """`parity` (options in `benchmark.cli`)."""

    import baselines
    import datasets
    from datasets.errors import FusebenchError

    from .protocol import Protocol
    from .records import RecordStore
    from .seed_run import run_one

    ds = datasets.load(args.dataset)
    cfg = Protocol(metric=args.metric, patience=args.patience, device=args.device, ks=(20,), metrics=("recall", "ndcg"))
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in PAIRS]
    if unknown:
        raise SystemExit(f"unknown parity model(s) {unknown}; available: {sorted(PAIRS)}")
    common = {}
    if args.epochs is not None:
        common["epochs"] = args.epochs
    if args.learning_rate is not None:
        common["learning_rate"] = args.learning_rate

    print(
        f"parity on {ds.name} ({ds.n_users} users, {ds.n_items} items, {ds.n_interactions} interactions), "
        f"random 8:1:1 split, seeds 0..{args.seeds - 1}, early stopping on valid {args.metric} "
        f"(patience {args.patience}), common overrides {common or 'none'}"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="fusebench-parity-") as tmp:
        store = RecordStore(tmp)
        for key in names:
            ours, our_params, theirs, their_params = PAIRS[key]
            try:
                baselines.get_model_class(ours)
            except FusebenchError:
                print(f"note: our model {ours!r} is not registered; skipping {key}")
                continue
            for model, params in ((ours, our_params), (theirs, their_params)):
                params = {**params, **common}
                rec, ndcg, epoch_s, epochs = [], [], [], []
                for seed in range(args.seeds):
                    split = datasets.split(ds, "random", seed=seed)
                    out = run_one(store, ds, split, model, params, cfg, force=True)
                    r = out.record
                    tr = r["training"]
                    rec.append(r["test"][PRIMARY_METRIC])
                    ndcg.append(r["test"]["ndcg@20"])
                    n_ep = tr.get("epochs_run") or 1
                    epoch_s.append(r["train_seconds"] / n_ep)
                    epochs.append(f"{n_ep}(best {tr.get('best_epoch')})")
                    print(
                        f"  {model} seed {seed}: recall@20 {rec[-1]:.4f} ndcg@20 {ndcg[-1]:.4f} "
                        f"epochs {epochs[-1]} {epoch_s[-1]:.2f}s/epoch",
                        flush=True,
                    )
                rows.append((model, _fmt(rec), _fmt(ndcg), float(np.mean(epoch_s)), ", ".join(epochs)))
    print()
    head = ("model", "test recall@20", "test ndcg@20", "s/epoch", "epochs trained (best epoch) per seed")
    widths = [max(len(str(x)) for x in col) for col in zip(head, *[(a, b, c, f"{d:.2f}", e) for a, b, c, d, e in rows])]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for a, b, c, d, e in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip((a, b, c, f"{d:.2f}", e), widths)))
    return 0


if __name__ == "__main__":  # `python -m benchmark.parity` is `python -m benchmark parity`
    import importlib  # the CLI by name: it imports this module, so no import cycle

    raise SystemExit(importlib.import_module("benchmark.cli").main(["parity", *sys.argv[1:]]))
