"""Atomic file writes: a crash never leaves a half-written file under the final name."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)` for a temporary file beside `path`, fsync it, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    atomic_write(path, write)


def atomic_write_json(path: str | Path, data: Any, indent: int = 2) -> None:
    """Write JSON atomically (NaN/inf are refused so files stay standard JSON)."""
    atomic_write_text(path, json.dumps(data, indent=indent, allow_nan=False) + "\n")


def atomic_save_figure(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG atomically (the caller closes it)."""

    def write(tmp: str) -> None:
        fig.savefig(tmp, format="png", dpi=dpi)

    atomic_write(path, write)
    return Path(path)
