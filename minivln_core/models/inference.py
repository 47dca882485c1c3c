"""The policy a deployment runs: one place that turns a trained `DuetPolicy` into its inference form.

runtime 'torch' runs the module itself (precision 'int8': PyTorch dynamic quantisation,
`models.quantize`); runtime 'onnx' runs panorama and navigation mode in onnxruntime
(`models.onnx_policy`; 'int8': onnxruntime dynamic quantisation, per-channel weights, small
sensitive layers kept fp32). All of them are driven by the same `NavigationAgent`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from torch import nn

from minivln_core.errors import ConfigError
from minivln_core.models.policy import DuetPolicy

Runtime = Literal["torch", "onnx"]
RUNTIMES = ("torch", "onnx")
PRECISIONS = ("fp32", "int8")


def for_inference(policy: DuetPolicy, runtime: str = "torch", precision: str = "fp32", threads: int = 0,
                  onnx_dir: str | Path | None = None) -> nn.Module:
    """The policy in eval mode as `runtime` at `precision` (the original is not modified)."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown policy runtime {runtime!r} (choose from {', '.join(RUNTIMES)})")
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown policy precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    policy = policy.eval()
    if runtime == "onnx":
        from minivln_core.models.onnx_policy import OnnxPolicy

        return OnnxPolicy(policy, precision, threads=threads, onnx_dir=onnx_dir)
    if precision == "int8":
        from minivln_core.models.quantize import quantize_int8

        return quantize_int8(policy)
    return policy
