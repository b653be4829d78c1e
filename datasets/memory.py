"""Pre-flight memory checks: refuse an allocation that cannot fit, with its size and what is free.

An id of 2**40 in a user's file, ``--param embedding_size=1000000000`` or EASE on a catalogue
with 100k items would otherwise ask the allocator for terabytes, and end in a MemoryError
traceback, an OOM kill, or minutes of swapping. What is free is the kernel's MemAvailable,
bounded by the container's cgroup limit when there is one; where neither can be read (not
Linux) nothing is refused.
"""

from __future__ import annotations

from pathlib import Path

from .errors import FusebenchError

GIB = 1024**3


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_headroom() -> int | None:
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((root / "memory.current").read_text().strip())
    except (OSError, ValueError):
        return None


def available_bytes() -> int | None:
    """Bytes this process can still allocate without swapping (None: unknown)."""
    known = [b for b in (_meminfo_available(), _cgroup_headroom()) if b is not None]
    return min(known) if known else None


def require(nbytes: float, what: str, hint: str = "") -> None:
    """FusebenchError when `nbytes` (an estimate of what `what` allocates) exceeds what is free."""
    free = available_bytes()
    if free is None or nbytes <= free:
        return
    extra = f"; {hint}" if hint else ""
    raise FusebenchError(
        f"{what} needs about {nbytes / GIB:.1f} GiB of memory, {free / GIB:.1f} GiB is available{extra}"
    )
