"""What every onnxruntime path of the project shares: the export cache, int8 files and sessions.

Two models run in onnxruntime on the robot's CPU: the vision extractor (`perception.onnx_vit`)
and the navigation policy's per-step modes (`models.onnx_policy`). Both are exported from the
local torch model at run time (nothing is downloaded) and cached as
`<onnx_dir>/<kind>-<digest>-{fp32,int8}.onnx`, where the digest covers the weights, the config,
the export settings and the torch/onnxruntime versions: a changed model is exported anew, an
unchanged one only once. Files are written atomically (`io_utils.atomic_write`), so processes
starting together never read a half-written export.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from minivln_core.io_utils import atomic_write
from minivln_core.paths import default_cache_dir

log = logging.getLogger("minivln.onnx")


def default_onnx_dir() -> Path:
    """`<MINIVLN_CACHE, else XDG_CACHE_HOME/minivln, else ~/.cache/minivln>/onnx`."""
    return default_cache_dir() / "onnx"


def model_digest(model: torch.nn.Module, kind: str, settings: dict[str, Any]) -> str:
    """Hex digest of everything an exported graph depends on: weights, `settings`, versions."""
    import onnxruntime

    h = hashlib.blake2b(digest_size=12)
    h.update(json.dumps({"kind": kind, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                         **settings}, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())            # raw bytes, no copy
    return h.hexdigest()


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


@contextmanager
def quiet() -> Iterator[None]:
    """Silence the exporters' and the quantiser's chatter (per-node INFO lines, some sent to the
    root logger itself, advice such as "torchvision is not installed", deprecation warnings)
    while they run; their errors still pass."""
    root = logging.getLogger()
    named = {name: logging.getLogger(name) for name in ("torch.onnx", "onnx_ir", "onnxscript")}
    levels = {name: logger.level for name, logger in named.items()}
    root.addFilter(_errors_only)            # a filter: the root logger's own level is left alone
    for logger in named.values():
        logger.setLevel(logging.ERROR)      # a level: it also holds for their child loggers
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeFilter(_errors_only)
        for name, logger in named.items():
            logger.setLevel(levels[name])


def quantize_int8(src: Path, path: Path, per_channel: bool, keep_fp32: tuple[str, ...] = ()) -> None:
    """Dynamic int8 of every constant-weight MatMul (s8 weights, per output channel or per
    tensor; u8 activations quantised per call), written atomically. Activation x activation
    products (attention) stay fp32, and so do the nodes whose names contain a `keep_fp32` part."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = [n.name for n in onnx.load(src, load_external_data=False).graph.node
             if any(part in n.name for part in keep_fp32)] if keep_fp32 else []
    with quiet():
        atomic_write(path, lambda tmp: quantize_dynamic(src, tmp, weight_type=QuantType.QInt8,
                                                        per_channel=per_channel, nodes_to_exclude=nodes))


_shared_pool: int | None = None   # threads of the process-wide pool, once created


def session(path: str | Path, threads: int = 0):
    """An onnxruntime CPU session with every graph optimisation, on the process-wide thread pool.

    Every session of the process (the ViT's, the policy's panorama and navigation modes, a
    benchmark's teacher and student) runs on one pool of intra-op threads, created by the first
    session with `threads` threads (0 = os.cpu_count()); later `threads` values are ignored.
    Why one pool: sessions take turns, and with a pool each, the idle workers of one spin against
    the running workers of the other (measured: the student's decision went from 8 to 17-29 ms).
    onnxruntime also refuses a session with its own pool once the shared pool exists."""
    import onnxruntime as ort

    global _shared_pool
    if _shared_pool is None:
        size = threads or os.cpu_count() or 1
        ort.capi._pybind_state.set_global_thread_pool_sizes(size, 1)
        _shared_pool = size
    elif threads and threads != _shared_pool:
        log.debug("onnxruntime pool already has %d threads; %d requested for %s", _shared_pool, threads, path)
    options = ort.SessionOptions()
    options.use_per_session_threads = False
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
