"""One picture per replayed episode: the building's places seen from above, the reference path,
the path taken and the goal, so a reader sees at a glance where the robot went wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from minivln_core.data.connectivity import ScanGraph
from minivln_core.data.episodes import Episode
from minivln_core.io_utils import atomic_save_figure


def plot_episode(graph: ScanGraph, episode: Episode, taken: Sequence[str], path: Path,
                 metrics: Mapping[str, float] | None = None, marks: Sequence[str] = (),
                 marks_label: str = "") -> Path:
    """Top-down map (x east, y north) of `episode` with the path `taken`; `marks` are extra places to ring."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xy = graph.positions[:, :2]                                           # (N, 2)
    fig, ax = plt.subplots(figsize=(6.4, 6.0))
    for a, b in graph.edges():
        pa, pb = graph.position(a), graph.position(b)
        ax.plot([pa[0], pb[0]], [pa[1], pb[1]], color="0.85", lw=1, zorder=1)
    ax.scatter(xy[:, 0], xy[:, 1], s=18, color="0.55", zorder=2, label="places")

    def line(vps: Sequence[str], **style) -> None:
        pts = [graph.position(vp) for vp in vps]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], **style)

    line(episode.path, color="tab:green", lw=5, alpha=0.45, zorder=3, label="reference path")
    if taken:
        line(taken, color="tab:blue", lw=1.8, marker="o", ms=4, zorder=4, label="path taken")
        end = graph.position(taken[-1])
        ax.scatter([end[0]], [end[1]], s=90, facecolor="none", edgecolor="tab:blue", lw=2, zorder=5, label="stopped")
    if marks:
        pts = [graph.position(vp) for vp in marks]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=140, marker="x", color="tab:orange", zorder=6,
                   label=marks_label or "marked")
    start, goal = graph.position(episode.start), graph.position(episode.goal)
    ax.scatter([start[0]], [start[1]], s=110, marker="^", color="black", zorder=6, label="start")
    ax.scatter([goal[0]], [goal[1]], s=220, marker="*", color="tab:red", zorder=6, label="goal")
    title = f"{episode.instr_id} ({episode.scan})"
    if metrics:
        title += "\n" + "  ".join(f"{k.upper()} {metrics[k]:.2f}" for k in ("sr", "spl", "ndtw", "ne") if k in metrics)
    ax.set(title=title, xlabel="x (m, east)", ylabel="y (m, north)", aspect="equal")
    ax.grid(alpha=0.25)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    atomic_save_figure(fig, path)
    plt.close(fig)
    return path
