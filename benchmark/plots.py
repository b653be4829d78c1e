"""results/plots/: accuracy against training cost, and the tuning budget curves, one PNG each
per leaderboard table.

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
    pts = sorted((p for p in points if drawable(p)), key=lambda p: (p.family, p.label))
    fig, ax = _figure()
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
    _legend(ax, {p.family for p in pts})
    return _save(fig, path)


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure  # no pyplot: no global state between calls

    fig = Figure(figsize=(7.0, 4.5), dpi=100)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", metadata={"Software": None})
    tmp.replace(path)
    return path


def budget_curves(
    curves: dict[str, list[float | None]], families: dict[str, str], path: str | Path, title: str, ylabel: str
) -> Path:
    """Best-so-far validation metric against trial number, one line per model, coloured by family."""
    fig, ax = _figure()
    for label in sorted(curves, key=lambda m: (families.get(m, ""), m)):
        ys = [np.nan if v is None else v for v in curves[label]]
        xs = np.arange(1, len(ys) + 1)
        colour = FAMILY_COLOURS.get(families.get(label, ""), "#7f7f7f")
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1, color=colour)
        last = next((i for i in range(len(ys) - 1, -1, -1) if np.isfinite(ys[i])), None)
        if last is not None:
            ax.annotate(label, (xs[last], ys[last]), xytext=(4, 0), textcoords="offset points", fontsize=6)
    n = max((len(c) for c in curves.values()), default=1)
    ax.set_xlim(0.5, n + 2.5)  # room for the labels on the right
    ax.set_xticks(range(1, n + 1))
    ax.set_xlabel("trial (1 = the defaults)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax, {families.get(m, "") for m in curves})
    return _save(fig, path)


def _legend(ax, families: set[str]) -> None:
    from matplotlib.lines import Line2D

    order = sorted(families, key=lambda f: list(FAMILY_COLOURS).index(f) if f in FAMILY_COLOURS else 99)
    handles = [
        Line2D([], [], marker="o", linestyle="", color=FAMILY_COLOURS.get(f, "#7f7f7f"), label=FAMILY_NAMES.get(f, f))
        for f in order
    ]
    if handles:
        ax.legend(handles=handles, fontsize=8, loc="best")
