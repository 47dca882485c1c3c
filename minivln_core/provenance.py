"""Where a result came from: the CPU it was measured on and the commit of the code that made it.

A bottom module (standard library only): training records it with every checkpoint, benchmarks
with every report, model cards print it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

CPU_FLAGS = ("avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni", "avx512f")
_REPO = Path(__file__).resolve().parents[1]


def cpu_info() -> dict[str, Any]:
    """The CPU model name and which of the low-precision flags it has (from /proc/cpuinfo)."""
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(), "flags": {f: f in flags for f in CPU_FLAGS}}


def git_commit() -> str:
    """The checkout's commit ('<sha>' or '<sha>+dirty'), or 'unknown' for an installed package."""
    try:
        sha = subprocess.run(["git", "-C", str(_REPO), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(_REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha


def provenance() -> dict[str, Any]:
    """What a training run records with its checkpoints: commit, CPU model and torch version."""
    import torch

    return {"commit": git_commit(), "cpu": cpu_info()["model"], "torch": torch.__version__}
