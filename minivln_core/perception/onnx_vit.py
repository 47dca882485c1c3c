"""The extractor's vision model run by onnxruntime: exported from the local torch model at run time.

Why: on the robot's CPU, onnxruntime with dynamic int8 weights (u8 activations x s8 weights,
VNNI kernels) was the fastest way found to run the 36-view ViT (docs/perception.md). The graph is
exported with `torch.onnx.export` (the torch.export-based exporter; it needs the `onnx` and
`onnxscript` packages) from the very function the torch path runs, so both compute the same
features; nothing is downloaded. int8 files come from onnxruntime's `quantize_dynamic` on the
fp32 export: every MatMul with a constant weight gets s8 per-tensor weights, activations are
quantised to u8 per call (attention's activation x activation products stay fp32).

Exports are cached by `minivln_core.onnx_cache` (digest of weights, config, input size and
versions; atomic files), like the policy's own onnxruntime path.
"""

from __future__ import annotations

import logging
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from minivln_core import onnx_cache
from minivln_core.errors import ConfigError
from minivln_core.io_utils import atomic_write

log = logging.getLogger("minivln.perception")

EXPORT_VERSION = 1                 # bump when the exported graph changes for the same weights
INPUT, FEATURES, LOGITS = "pixel_values", "features", "logits"
Forward = Callable[[torch.Tensor], "tuple[torch.Tensor, torch.Tensor | None]"]


def model_digest(model: torch.nn.Module, kind: str, image_size: int) -> str:
    """Hex digest of everything the exported graph depends on: weights, config, size, versions."""
    config = model.config.to_dict() if hasattr(model, "config") else {}
    return onnx_cache.model_digest(model, kind, {"export": EXPORT_VERSION, "image_size": image_size,
                                                 "config": config})


class _Exportable(torch.nn.Module):
    """`forward` as a module, so torch.export sees the model's parameters: pixels -> features (+ logits)."""

    def __init__(self, model: torch.nn.Module, forward: Forward):
        super().__init__()
        self.model = model
        self._forward = forward

    def forward(self, pixel_values: torch.Tensor):  # (B, 3, S, S) -> (B, D) [, (B, C)]
        feats, logits = self._forward(pixel_values)
        return feats if logits is None else (feats, logits)


def export_fp32(model: torch.nn.Module, forward: Forward, image_size: int, with_logits: bool, path: Path) -> None:
    """Export `forward` (fp32, dynamic batch) to `path` atomically."""
    missing = [name for name in ("onnx", "onnxscript") if find_spec(name) is None]  # the exporter needs both
    if missing:
        raise ConfigError(f"config key 'runtime': 'onnx' needs the package(s) {', '.join(missing)} to export "
                          "the model; install requirements.txt")
    module = _Exportable(model, forward).eval()
    example = torch.zeros(2, 3, image_size, image_size)                 # (B, 3, S, S); B is dynamic
    batch = torch.export.Dim("batch", min=1)
    outputs = [FEATURES, LOGITS] if with_logits else [FEATURES]
    started = time.perf_counter()
    with onnx_cache.quiet(), torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(module, (example,), input_names=[INPUT], output_names=outputs,
                                    dynamic_shapes={"pixel_values": {0: batch}}, dynamo=True, verbose=False)
    atomic_write(path, lambda tmp: program.save(tmp))
    log.info("exported the vision model to %s in %.1f s", path, time.perf_counter() - started)


def cached_export(model: torch.nn.Module, forward: Forward, kind: str, image_size: int, with_logits: bool,
                  precision: str, onnx_dir: str | Path | None = None) -> Path:
    """The ONNX file of this model at `precision` ('fp32' | 'int8'), exported (and quantised) if missing."""
    folder = Path(onnx_dir).expanduser() if onnx_dir else onnx_cache.default_onnx_dir()
    stem = f"{kind}-{model_digest(model, kind, image_size)}"
    fp32 = folder / f"{stem}-fp32.onnx"
    if not fp32.is_file():
        export_fp32(model, forward, image_size, with_logits, fp32)
    if precision == "fp32":
        return fp32
    if precision != "int8":
        raise ConfigError(f"config key 'precision': {precision!r} has no onnx runtime (use fp32 or int8)")
    int8 = folder / f"{stem}-int8.onnx"
    if not int8.is_file():
        started = time.perf_counter()
        onnx_cache.quantize_int8(fp32, int8, per_channel=False)
        log.info("quantised %s to int8 in %.1f s", int8.name, time.perf_counter() - started)
    return int8


class OnnxRunner:
    """An onnxruntime session of an exported extractor: `(B, 3, S, S) float32 -> features, logits | None`."""

    def __init__(self, path: str | Path, threads: int = 0):
        self.path = Path(path)
        self.session = onnx_cache.session(path, threads)
        self.with_logits = len(self.session.get_outputs()) > 1

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(B, 3, S, S) float32 -> features (B, D) float32 and logits (B, C) float32 or None."""
        out = self.session.run(None, {INPUT: np.ascontiguousarray(pixels, dtype=np.float32)})
        return out[0], (out[1] if self.with_logits else None)
