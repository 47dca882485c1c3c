"""Both cores for one training run without torchrun: `loop.processes: 2` spawns gloo ranks here.

`run_finetune` / `run_pretrain` call `spawn_ranks` when the config asks for several processes and
the process is not already one rank of a job (torchrun sets WORLD_SIZE). Each rank runs the same
function with RANK / WORLD_SIZE / MASTER_* set, one torch thread unless the config says otherwise
(measured faster than one process with two intra-op threads: docs/training-speed.md); rank 0's
return value comes back to the caller through a JSON file.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
import torch.multiprocessing as mp


def free_port() -> int:
    """A free TCP port on loopback for the ranks' rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, processes: int, port: int, out: str, fn: Callable[..., Any], args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(processes), LOCAL_RANK=str(rank))
    # The cores shared out (a config's own `threads` still wins): N ranks x default threads would
    # oversubscribe them, which slows OpenMP down many times.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // processes))
    result = fn(*args)
    if rank == 0:
        Path(out).write_text(json.dumps(result))


def spawn_ranks(fn: Callable[..., Any], processes: int, *args: Any) -> Any:
    """fn(*args) in `processes` spawned ranks (fn and args must pickle); rank 0's JSON-able result."""
    with tempfile.TemporaryDirectory(prefix="minivln-ranks-") as tmp:
        out = str(Path(tmp) / "result.json")
        mp.start_processes(_rank, args=(processes, free_port(), out, fn, args), nprocs=processes, join=True,
                           start_method="spawn")
        return json.loads(Path(out).read_text())
