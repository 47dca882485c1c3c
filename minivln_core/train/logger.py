"""Metrics a person can plot: TensorBoard scalars, a JSON-lines log and a PNG learning curve."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping

from minivln_core.io_utils import atomic_write, finish_figure


class RunLogger:
    """Scalars of one run. Resume-safe: `truncate(step)` drops log lines written after a checkpoint."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.path = self.run_dir / "metrics.jsonl"
        self._tb = None
        if enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))

    def truncate(self, step: int) -> None:
        """Keep only records with step <= `step` (the resumed checkpoint's step)."""
        if not self.enabled or not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines()
                if (row := _row(line)) is not None and row.get("step", 0) <= step]

        def write(tmp: str) -> None:
            Path(tmp).write_text("".join(line + "\n" for line in kept))

        atomic_write(self.path, write)

    def log(self, step: int, scalars: Mapping[str, float], prefix: str = "") -> None:
        """Record scalars (finite numbers only) under `prefix/`."""
        if not self.enabled:
            return
        row = {f"{prefix}{k}": float(v) for k, v in scalars.items() if v is not None and math.isfinite(float(v))}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": int(step), **row}) + "\n")
        if self._tb is not None:
            for key, value in row.items():
                self._tb.add_scalar(key, value, step)
            self._tb.flush()

    def read(self) -> dict[str, list[tuple[int, float]]]:
        """Every series in the log: name -> [(step, value), ...]."""
        series: dict[str, list[tuple[int, float]]] = defaultdict(list)
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    for key, value in row.items():
                        if key != "step":
                            series[key].append((row["step"], value))
        return dict(series)

    def plot(self, path: str | Path | None = None, title: str = "learning curves") -> Path | None:
        """Draw losses (left) and validation metrics (right) into a PNG; returns its path."""
        if not self.enabled:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        series = self.read()
        if not series:
            return None
        path = Path(path or self.run_dir / "learning_curves.png")
        fig, (ax_loss, ax_eval) = plt.subplots(1, 2, figsize=(12, 4.5))
        for key, points in sorted(series.items()):
            ax = ax_loss if key.startswith("train/") else ax_eval
            if key.startswith("train/") and "loss" not in key:
                continue
            steps, values = zip(*points)
            ax.plot(steps, values, label=key, marker="." if len(points) < 30 else None)
        ax_loss.set(title="training losses", xlabel="step", yscale="log")
        ax_eval.set(title="validation (%)", xlabel="step")
        for ax in (ax_loss, ax_eval):
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=7)
        return finish_figure(fig, path, title)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _row(line: str) -> dict[str, Any] | None:
    """One decoded log line; None for a blank line or one cut short by a kill mid-write."""
    try:
        return json.loads(line) if line.strip() else None
    except json.JSONDecodeError:
        return None


def mean_dict(rows: list[Mapping[str, Any]]) -> dict[str, float]:
    """Average each key over the rows that have it."""
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        for k, v in row.items():
            sums[k] += float(v)
            counts[k] += 1
    return {k: sums[k] / counts[k] for k in sums}
