"""Find a dataset's files: offline mirror, then the local cache, then a verified download.

Lookup order for one file of dataset ``ds`` (see `fetch`):

1. the mirror folder: the ``data_dir`` argument, else the ``FUSEBENCH_DATA_DIR`` environment
   variable; both ``<mirror>/<ds>/<file>`` and ``<mirror>/<file>`` are accepted;
2. the cache folder ``<cache>/<ds>/<file>`` where ``<cache>`` is ``FUSEBENCH_CACHE`` or
   ``~/.cache/fusebench``;
3. a download from the canonical URL into the cache (temporary file, SHA-256 check, atomic
   rename), unless ``FUSEBENCH_OFFLINE`` is set to a non-empty value other than ``0``.

Every file, wherever it comes from, is checked against its SHA-256; a mismatch is a
`FusebenchError` naming the file and both hashes. Verified hashes are memoised per
(path, size, mtime) so that repeated loads in one process do not rehash.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from urllib.request import urlopen

from .errors import FusebenchError

DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK = 1 << 20

# (resolved path, size, mtime_ns) -> sha256 hex digest
_HASH_MEMO: dict[tuple[str, int, int], str] = {}


class DatasetUnavailable(FusebenchError):
    """A dataset's files are neither in a mirror or the cache nor downloadable (or the
    package that ships them is absent)."""


def cache_dir() -> Path:
    """The download cache: ``$FUSEBENCH_CACHE`` or ``~/.cache/fusebench``."""
    env = os.environ.get("FUSEBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fusebench"


def mirror_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The offline mirror: ``data_dir`` if given, else ``$FUSEBENCH_DATA_DIR``, else None."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("FUSEBENCH_DATA_DIR")
    return Path(env).expanduser() if env else None


def offline() -> bool:
    """True when ``FUSEBENCH_OFFLINE`` forbids downloads (the test suite sets it)."""
    return os.environ.get("FUSEBENCH_OFFLINE", "") not in ("", "0")


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file, memoised by (path, size, mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    digest = _HASH_MEMO.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                h.update(chunk)
        digest = h.hexdigest()
        _HASH_MEMO[key] = digest
    return digest


def verify(path: str | os.PathLike, sha256: str, hint: str = "") -> Path:
    """Return ``path`` if its SHA-256 equals ``sha256``; else raise FusebenchError."""
    got = sha256_file(path)
    if got != sha256.lower():
        extra = f"; {hint}" if hint else ""
        raise FusebenchError(f"checksum mismatch for {path}: expected sha256 {sha256.lower()}, got {got}{extra}")
    return Path(path)


_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: os.umask can only be read by setting it


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Write a file whole or not at all: ``write(fh)`` fills a temporary file in the same
    folder, which is then renamed over ``path``; on any error the temporary file is removed
    and ``path`` is untouched (a killed process leaves at most a hidden ``.NAME.*`` file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide records in a shared results folder
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())  # on disk before the rename: a power cut leaves old or new, never empty
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def download(
    url: str, dest: str | os.PathLike, digest: str, timeout: float = DOWNLOAD_TIMEOUT_S, algorithm: str = "sha256"
) -> Path:
    """Download ``url`` to ``dest`` through a temporary file; verify its ``algorithm`` digest
    (sha256 unless the source publishes another), then rename atomically.

    Network/OS errors propagate as ``OSError`` (``urllib.error.URLError`` is one); a
    checksum mismatch raises FusebenchError and leaves nothing at ``dest``.
    """
    dest = Path(dest)

    def fill(out):
        h = hashlib.new(algorithm)
        with urlopen(url, timeout=timeout) as resp:
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                h.update(chunk)
                out.write(chunk)
        got = h.hexdigest()
        if got != digest.lower():
            raise FusebenchError(
                f"checksum mismatch for {dest.name} downloaded from {url}: "
                f"expected {algorithm} {digest.lower()}, got {got}"
            )

    return atomic_write(dest, fill)


def fetch(
    dataset: str,
    filename: str,
    url: str,
    sha256: str,
    data_dir: str | os.PathLike | None = None,
) -> Path:
    """Path of a verified local copy of ``filename`` (mirror, cache, or fresh download)."""
    mirror = mirror_dir(data_dir)
    if mirror is not None:
        for cand in (mirror / dataset / filename, mirror / filename):
            if cand.is_file():
                return verify(cand, sha256, hint="the mirror copy differs from the published file")
    cached = cache_dir() / dataset / filename
    if cached.is_file():
        return verify(cached, sha256, hint=f"delete {cached} to download it again")
    how = f"set FUSEBENCH_DATA_DIR or pass --data-dir to a folder holding {dataset}/"
    if offline():
        raise DatasetUnavailable(
            f"dataset {dataset!r}: file {filename} is not in a mirror or the cache and "
            f"downloads are off (FUSEBENCH_OFFLINE); {how}"
        )
    try:
        return download(url, cached, sha256)
    except OSError as exc:  # URLError, timeouts, refused connections, disk errors
        reason = " ".join(str(getattr(exc, "reason", None) or exc).split())
        raise DatasetUnavailable(
            f"dataset {dataset!r}: cannot download {filename} from {url} ({reason}); {how}"
        ) from exc
