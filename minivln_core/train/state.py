"""Resumable training state: model, optimizer, step, best score — atomic, data-only.

A training checkpoint is one directory:
    config.json + model.safetensors   the model (loadable by `from_pretrained`)
    optimizer.safetensors              every optimizer tensor, keyed "state.<param>.<name>"
    trainer.json                       step, best score, optimizer hyper-parameters, extra state

Randomness is derived from (seed, step, sample index) everywhere in training, so the seed and
the step recorded here are the RNG state: a resumed run draws exactly what the interrupted one
would have drawn. The directory is written under a temporary name and renamed into place; a
run killed mid-write leaves the previous checkpoint intact, and a directory without a complete
`trainer.json` (written last) is never loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from minivln_core.errors import DataError
from minivln_core.io_utils import atomic_directory, read_json, read_json_or_none, restore_interrupted
from minivln_core.models.checkpoint import CONFIG_NAME, WEIGHTS_NAME, write_model_files

OPTIM_NAME = "optimizer.safetensors"
TRAINER_NAME = "trainer.json"


def _optimizer_payload(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (safetensors) and plain data (JSON)."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, entries in sd["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"state.{pid}.{name}"] = value.detach().contiguous().clone()
            else:
                scalars[f"{pid}.{name}"] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], info: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    for key, value in info.get("scalars", {}).items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in info["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_training_state(directory: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        step: int, trainer: dict[str, Any], meta: dict[str, Any] | None = None) -> Path:
    """Atomically write a resumable checkpoint of `model` (a DuetPolicy or a wrapper with
    `.config`) and `optimizer` at `step`; `trainer` holds extra JSON state (best score, ...)."""
    with atomic_directory(directory) as tmp:
        write_model_files(model, tmp, meta)
        tensors, optim_info = _optimizer_payload(optimizer)
        save_file(tensors, str(tmp / OPTIM_NAME))
        record = {"step": int(step), "optimizer": optim_info, "trainer": trainer,
                  "optimizer_bytes": (tmp / OPTIM_NAME).stat().st_size}
        (tmp / TRAINER_NAME).write_text(json.dumps(record, indent=2) + "\n")
    return Path(directory)


def is_complete(directory: str | Path) -> bool:
    """True if `directory` holds a whole training checkpoint (sizes match what was recorded).

    A checkpoint whose replacement was killed between its two renames is first put back.
    """
    directory = Path(directory)
    restore_interrupted(directory)
    record, info = read_json_or_none(directory / TRAINER_NAME), read_json_or_none(directory / CONFIG_NAME)
    if not isinstance(record, dict) or not isinstance(info, dict):
        return False
    weights, optim = directory / WEIGHTS_NAME, directory / OPTIM_NAME
    return (weights.exists() and optim.exists() and weights.stat().st_size == info.get("weights_bytes")
            and optim.stat().st_size == record.get("optimizer_bytes"))


def load_training_state(directory: str | Path, model: torch.nn.Module,
                        optimizer: torch.optim.Optimizer) -> tuple[int, dict[str, Any]]:
    """Restore model and optimizer in place; return (step, trainer state)."""
    directory = Path(directory)
    if not is_complete(directory):
        raise DataError(directory, "training checkpoint is incomplete or damaged; it will not be loaded")
    try:
        model.load_state_dict(load_file(str(directory / WEIGHTS_NAME)), strict=True)
    except RuntimeError as exc:
        raise DataError(directory / WEIGHTS_NAME, f"weights do not fit this model: {exc}") from None
    record = read_json(directory / TRAINER_NAME)
    _restore_optimizer(optimizer, load_file(str(directory / OPTIM_NAME)), record["optimizer"])
    return int(record["step"]), dict(record.get("trainer", {}))
