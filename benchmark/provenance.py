"""What a run record carries so a number can be traced back: versions, revision, machine."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from .parallel import WORKERS_ENV

REVISION_ENV = "FUSEBENCH_GIT_REVISION"  # set in `run`'s workers: the revision at the run's start

PACKAGES = ("fusebench", "numpy", "scipy", "pandas", "scikit-learn", "numba", "torch", "optuna", "recbole")


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str | None]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@functools.lru_cache(maxsize=1)
def git_revision() -> str | None:
    """HEAD of the checkout the code runs from, with '-dirty' when it has local changes; taken
    once per process (`run` takes it at its start and hands it to its workers)."""
    if os.environ.get(REVISION_ENV):
        return os.environ[REVISION_ENV]
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            # results/ holds what runs write (the leaderboard, plots): not code
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"],
            cwd=root, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("-dirty" if dirty else "")


def device_description(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    shared = ""
    if os.environ.get(WORKERS_ENV):  # a worker of `run --jobs N`: its timings are under that load
        import torch

        threads = torch.get_num_threads()
        shared = f"; {os.environ[WORKERS_ENV]} parallel jobs x {threads} thread{'s' * (threads > 1)}"
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores{shared})"


def provenance(device: str) -> dict:
    return {
        "versions": package_versions(),
        "git_revision": git_revision(),
        "device": device_description(device),
        "host": platform.node(),
        "platform": platform.platform(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
