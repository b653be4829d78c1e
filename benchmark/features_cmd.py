"""``python -m benchmark features list | extract``: the encoders, and features from raw content.

``features list`` prints every registered encoder with its output dimension, whether it can
run here and what it needs. ``features extract --dataset NAME --encoder ENC`` encodes the
dataset's raw content (its item text for ``text/*`` encoders; for image/audio/video, the
catalogue's ``images/``, ``audio/``, ``video/`` folder or ``--content DIR``, files named by
item id), writes the aligned matrix, its missing-item mask and the encoder's provenance into
the dataset's feature store (`datasets.encoders.store`), and prints what it did. A second run
on unchanged content is served from the encoder cache.
"""

from __future__ import annotations

import sys

from datasets.errors import FusebenchError


def _list() -> int:
    from datasets.encoders import encoder_names, get_encoder_class

    rows = []
    for name in encoder_names():
        cls = get_encoder_class(name)
        reason = cls.unavailable_reason()
        rows.append(
            (name, str(cls.dim), "ready" if reason is None else "unavailable", cls.needs, cls.description, reason)
        )
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"{'encoder':<{w[0]}}  {'dim':>{w[1]}}  {'status':<{w[2]}}  needs / what it computes")
    for name, dim, status, needs, desc, reason in rows:
        print(f"{name:<{w[0]}}  {dim:>{w[1]}}  {status:<{w[2]}}  {needs}")
        print(f"{'':<{w[0]}}  {'':>{w[1]}}  {'':<{w[2]}}  {desc}")
        if reason:
            print(f"{'':<{w[0]}}  {'':>{w[1]}}  {'':<{w[2]}}  why unavailable: {reason}")
    return 0


def extract(
    dataset: str,
    encoder: str,
    modality: str | None = None,
    content: str | None = None,
    data_dir: str | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    use_cache: bool = True,
    progress: bool = True,
) -> dict:
    """Encode ``dataset``'s content with ``encoder`` and store it; returns a summary dict."""
    import datasets
    from datasets.catalogue import catalogue_content_dir, content_paths
    from datasets.encoders import get_encoder
    from datasets.encoders.store import store_dir, write_feature
    from datasets.registry import clear_cache, resolve_name
    from datasets.specs import CATALOGUE_PREFIX

    name = resolve_name(dataset)
    enc = get_encoder(encoder, batch_size=batch_size, device=device, progress=progress)
    mod = modality or enc.name
    if mod.split("/")[0] != enc.modality:
        raise FusebenchError(f"--modality {mod!r} must start with {enc.modality!r}, the encoder's modality")
    ds = datasets.load(name, data_dir=data_dir, extracted=False)  # a stale store must not block a re-extract
    folder = store_dir(name)
    if mod in ds.features:
        raise FusebenchError(
            f"dataset {ds.name!r} already has its own modality {mod!r}; pick another name with --modality"
        )
    if enc.modality == "text":
        if content:
            raise FusebenchError("--content is for image/audio/video files; text comes from the dataset's item text")
        if ds.item_text is None:
            raise FusebenchError(f"dataset {ds.name!r} has no item text to encode")
        contents = list(ds.item_text)
        source = "item text"
    else:
        if content:
            cdir = content
        elif name.startswith(CATALOGUE_PREFIX):
            cdir = catalogue_content_dir(name[len(CATALOGUE_PREFIX) :], enc.modality)
        else:
            raise FusebenchError(
                f"dataset {ds.name!r} has no {enc.modality} files of its own; pass --content DIR "
                f"(files named <item id>.<ext>)"
            )
        contents = content_paths(cdir, enc.modality, ds.item_ids)
        source = str(cdir)
    res = enc.encode(contents, use_cache=use_cache)
    prov = {**res.provenance(), "content": source}
    path = write_feature(folder, ds, mod, res.features, res.mask, prov, res.problems)
    clear_cache()
    return {
        "dataset": ds.name,
        "modality": mod,
        "encoder": enc.name,
        "version": enc.version,
        "items": int(ds.n_items),
        "dim": int(res.features.shape[1]),
        "missing": res.n_missing,
        "problems": {str(ds.item_ids[i]): why for i, why in sorted(res.problems.items())},
        "cached": res.cached,
        "seconds": res.seconds,
        "path": str(path),
        "device": res.extra.get("device", ""),
    }


def cmd_features(args) -> int:
    if args.action == "list":
        return _list()
    if not args.dataset or not args.encoder:
        raise FusebenchError("features extract needs --dataset NAME and --encoder ENC (see `features list`)")
    out = extract(
        args.dataset,
        args.encoder,
        modality=args.modality,
        content=args.content,
        data_dir=args.data_dir,
        batch_size=args.batch_size,
        device=args.device,
        use_cache=not args.no_cache,
    )
    how = "served from the encoder cache" if out["cached"] else f"encoded on {out['device'] or 'cpu'}"
    print(
        f"{out['dataset']}: {out['modality']} <- {out['encoder']}@{out['version']}: {out['items']} items x "
        f"{out['dim']}, {out['missing']} missing; {how} in {out['seconds']:.1f}s; wrote {out['path']}"
    )
    for i, (item, why) in enumerate(out["problems"].items()):
        if i == 10:
            print(f"  ... and {len(out['problems']) - 10} more (listed in the store's index.json)", file=sys.stderr)
            break
        print(f"  missing item {item}: {why}", file=sys.stderr)
    return 0
