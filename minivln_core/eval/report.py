"""Reports a person would rather look at than read: a Markdown table, JSON and a bar chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from minivln_core.io_utils import atomic_write_json, atomic_write_text, finish_figure

BAR_METRICS = ("sr", "spl", "ndtw")


def render_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of SR / SPL / nDTW / NE per policy and split."""
    lines = ["| policy | split | params | episodes | SR | SPL | nDTW | NE (m) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['policy']} | {r['split']} | {r['params']:,} | {int(r['num_episodes'])} | "
                     f"{r['sr']:.1f} | {r['spl']:.1f} | {r['ndtw']:.1f} | {r['ne']:.2f} |")
    return "\n".join(lines)


def plot_bars(rows: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """Grouped bars of SR, SPL and nDTW, one panel per split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    splits = list(dict.fromkeys(r["split"] for r in rows))
    fig, axes = plt.subplots(1, len(splits), figsize=(6 * len(splits), 4.2), squeeze=False)
    for ax, split in zip(axes[0], splits):
        sub = [r for r in rows if r["split"] == split]
        x = np.arange(len(sub))
        width = 0.8 / len(BAR_METRICS)
        for k, metric in enumerate(BAR_METRICS):
            bars = ax.bar(x + (k - 1) * width, [r[metric] for r in sub], width, label=metric.upper())
            ax.bar_label(bars, fmt="%.0f", fontsize=7)
        ax.set_xticks(x, [r["policy"] for r in sub], rotation=20, ha="right", fontsize=8)
        ax.set(title=split, ylim=(0, 105), ylabel="%")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    return finish_figure(fig, path, title)


def write_report(out: Path, title: str, rows: Sequence[dict[str, Any]], extra: dict[str, Any]) -> None:
    """report.json (rows + extra), report.md (table) and report.png (bars) in `out`."""
    atomic_write_json(out / "report.json", {**extra, "results": list(rows)})
    atomic_write_text(out / "report.md", f"# {title}\n\n{render_table(rows)}\n\n![results](report.png)\n")
    plot_bars(rows, out / "report.png", title)
