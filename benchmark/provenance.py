"""What a run record carries so a number can be traced back: versions, revision, machine."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REVISION_ENV = "FUSEBENCH_GIT_REVISION"  # set in `run`'s workers: the revision at the run's start
# set in the workers of `run --jobs N` (benchmark.jobs): how the run shared the machine
WORKERS_ENV = "FUSEBENCH_PARALLEL_RUNS"

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
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
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


# CPU features that decide which BLAS / MKL / oneDNN kernels run, and so the last bits of a float
NUMERIC_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512vl", "avx512_bf16", "avx512_vnni", "amx_tile")
# settings that pin or change those kernels and the thread counts
NUMERIC_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "MKL_CBWR",
    "OPENBLAS_CORETYPE",
    "MKL_ENABLE_INSTRUCTIONS",
    "NUMBA_THREADING_LAYER",
    "CUBLAS_WORKSPACE_CONFIG",
)


def _cpuinfo() -> tuple[str | None, list[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or None, []
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model is None:
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return model, [f for f in NUMERIC_FLAGS if f in flags]


def numerics() -> dict:
    """What explains a difference in the last bits between two machines running the same code:
    the CPU and its vector features, each BLAS/OpenMP library loaded (implementation, version,
    kernel architecture, threads) and the settings that pin them. Taken when a record is written,
    after training loaded every library it uses."""
    model, flags = _cpuinfo()
    pools = []
    try:
        from threadpoolctl import threadpool_info

        for info in threadpool_info():
            pools.append(
                {
                    k: info.get(k)
                    for k in ("internal_api", "version", "architecture", "threading_layer", "num_threads")
                    if info.get(k) is not None
                }
            )
    except Exception:  # noqa: BLE001 - threadpoolctl missing or a library it cannot query
        pass
    out: dict = {
        "cpu": model,
        "cpu_flags": flags,
        "thread_pools": pools,
        "env": {k: os.environ[k] for k in NUMERIC_ENV if k in os.environ},
    }
    import sys

    if "torch" in sys.modules:
        import torch

        out["torch"] = {
            "threads": torch.get_num_threads(),
            "mkl": torch.backends.mkl.is_available(),
            "mkldnn": torch.backends.mkldnn.is_available(),
            "deterministic": torch.are_deterministic_algorithms_enabled(),
        }
    return out


def provenance(device: str) -> dict:
    return {
        "numerics": numerics(),
        "versions": package_versions(),
        "git_revision": git_revision(),
        "device": device_description(device),
        "host": platform.node(),
        "platform": platform.platform(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
