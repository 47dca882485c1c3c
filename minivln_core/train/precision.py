"""Training precision on the CPU: fp32, or bf16 autocast with fp32 master weights and optimiser.

`precision: auto` picks bf16 where the CPU computes it natively (`avx512_bf16` or `amx_bf16` in
/proc/cpuinfo: AMD Zen 4, Intel Xeon with AMX) and fp32 elsewhere; `fp32` / `bf16` force either.
Only the forward runs under autocast; backward follows the dtypes the forward chose, and the
parameters, gradients and AdamW state stay fp32. docs/training-speed.md has the measurements.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Literal

import torch

from minivln_core.provenance import cpu_info

Precision = Literal["fp32", "bf16", "auto"]


def native_bf16() -> bool:
    """True when the CPU has bf16 arithmetic (avx512_bf16 or amx_bf16)."""
    flags = cpu_info()["flags"]
    return bool(flags.get("avx512_bf16") or flags.get("amx_bf16"))


def resolve_precision(precision: Precision) -> Literal["fp32", "bf16"]:
    """'auto' -> 'bf16' on a CPU with native bf16, else 'fp32'; the others unchanged."""
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    return precision


def autocast(precision: Precision) -> AbstractContextManager:
    """The forward's context: CPU autocast to bf16, or nothing for fp32."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=resolve_precision(precision) == "bf16")
