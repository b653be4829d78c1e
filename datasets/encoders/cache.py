"""Disk cache of encoder outputs, keyed by (encoder name + version + settings, content fingerprint).

One entry is one ``.npz`` file ``<cache>/encoders/<encoder-slug>/<key>.npz`` holding the
feature matrix, the presence mask and the per-item problems (JSON), written atomically
(temporary file + rename), so a killed run never leaves a half entry behind. ``<cache>`` is
``$FUSEBENCH_CACHE`` or ``~/.cache/fusebench`` (see `datasets.download.cache_dir`).

The content fingerprint covers the content itself (the texts, the bytes of each file, in
item order), not file names or times: renaming a folder keeps the cache valid, editing one
image invalidates it.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..download import atomic_write, cache_dir, sha256_file

MISSING = b"\x00<missing>\x00"
# what reading a damaged .npz raises (a truncated zip is BadZipFile, which is no OSError)
DAMAGED = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError)


def text_fingerprint(texts: list[str | None]) -> str:
    """sha256 over the texts in order (None and "" are distinct from any text)."""
    h = hashlib.sha256(f"texts|{len(texts)}|".encode())
    for t in texts:
        if t is None:
            h.update(MISSING)
        else:
            b = str(t).encode("utf-8", "surrogatepass")
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
    return h.hexdigest()


def file_fingerprint(paths: list[str | os.PathLike | None]) -> str:
    """sha256 over each file's content hash in order (absent/unreadable files hash as missing)."""
    h = hashlib.sha256(f"files|{len(paths)}|".encode())
    for p in paths:
        digest = None
        if p is not None:
            try:
                digest = sha256_file(p)
            except OSError:
                digest = None
        h.update(MISSING if digest is None else bytes.fromhex(digest))
    return h.hexdigest()


def slug(name: str) -> str:
    """A file-system-safe form of an encoder or modality name (``text/minilm`` -> ``text__minilm``)."""
    return name.replace("/", "__").replace(":", "_").replace(" ", "_")


def entry_path(encoder_key: str, encoder_name: str, content_fp: str, root: Path | None = None) -> Path:
    root = (root or cache_dir()) / "encoders" / slug(encoder_name)
    key = hashlib.sha256(f"{encoder_key}|{content_fp}".encode()).hexdigest()[:32]
    return root / f"{key}.npz"


def load_entry(path: Path) -> tuple[np.ndarray, np.ndarray, dict[int, str], dict[str, Any]] | None:
    """(features, mask, problems, info) of a cache entry, or None when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            feats = np.ascontiguousarray(z["features"], dtype=np.float32)
            mask = z["mask"].astype(bool)
            info = json.loads(str(z["info"]))
    except DAMAGED:
        return None  # a damaged entry is recomputed, never trusted
    problems = {int(k): str(v) for k, v in info.pop("problems", {}).items()}
    return feats, mask, problems, info


def save_entry(
    path: Path, features: np.ndarray, mask: np.ndarray, problems: dict[int, str], info: dict[str, Any]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps({**info, "problems": {str(k): v for k, v in problems.items()}}, sort_keys=True)
    atomic_write(
        path,
        lambda fh: np.savez(fh, features=features.astype(np.float32), mask=mask.astype(bool), info=np.array(payload)),
    )
