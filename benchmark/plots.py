"""results/plots/: accuracy against training cost, one PNG per leaderboard table.

matplotlib is imported lazily with the Agg backend (no display needed); the output is
deterministic for the same points (fixed size, dpi, order and PNG metadata).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

FAMILY_COLOURS = {
    "baseline/cf": "#1f77b4",
    "baseline/content": "#2ca02c",
    "baseline/hybrid": "#9467bd",
    "fusion": "#d62728",
}
FAMILY_NAMES = {"baseline/cf": "CF", "baseline/content": "content", "baseline/hybrid": "hybrid", "fusion": "fusion"}
MIN_SECONDS = 1e-3  # log axis: shorter training times are drawn at 1 ms


@dataclass(frozen=True)
class Point:
    label: str
    family: str
    train_seconds: float  # mean over seeds
    accuracy: float  # mean test Recall@20 over seeds


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def drawable(p: Point) -> bool:
    return bool(np.isfinite(p.accuracy) and np.isfinite(p.train_seconds))


def accuracy_vs_time(
    points: list[Point], path: str | Path, title: str, ylabel: str = "test Recall@20 (mean over seeds)"
) -> Path:
    """Scatter of accuracy against training time (log x), coloured by family, labelled by model."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure  # no pyplot: no global state between calls
    from matplotlib.lines import Line2D

    pts = sorted((p for p in points if drawable(p)), key=lambda p: (p.family, p.label))
    fig = Figure(figsize=(7.0, 4.5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for p in pts:
        x = max(float(p.train_seconds), MIN_SECONDS)
        ax.scatter([x], [p.accuracy], s=36, color=FAMILY_COLOURS.get(p.family, "#7f7f7f"), zorder=3)
        ax.annotate(p.label, (x, p.accuracy), xytext=(4, 3), textcoords="offset points", fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("training time, seconds (log scale; mean over seeds)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    if pts:
        xs = [max(p.train_seconds, MIN_SECONDS) for p in pts]
        ax.set_xlim(min(xs) / 3, max(xs) * 10)  # room for the labels on the right
    families = sorted(
        {p.family for p in pts}, key=lambda f: list(FAMILY_COLOURS).index(f) if f in FAMILY_COLOURS else 99
    )
    handles = [
        Line2D([], [], marker="o", linestyle="", color=FAMILY_COLOURS.get(f, "#7f7f7f"), label=FAMILY_NAMES.get(f, f))
        for f in families
    ]
    if handles:
        ax.legend(handles=handles, fontsize=8, loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", metadata={"Software": None})
    tmp.replace(path)
    return path
