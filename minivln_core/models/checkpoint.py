"""Self-describing checkpoints: one directory with `config.json` and `model.safetensors`.

Loading never unpickles anything: the config is JSON, the weights are safetensors. A directory
is written under a temporary name and renamed into place (`io_utils.atomic_directory`), so a crash
mid-write never leaves a directory that looks whole; `config.json` also records the weight file's
size as a check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from minivln_core.config import from_dict, to_dict
from minivln_core.errors import ConfigError, DataError
from minivln_core.io_utils import atomic_directory, default_mode, read_json, restore_interrupted
from minivln_core.models.config import ModelConfig
from minivln_core.models.policy import DuetPolicy
from minivln_core.models.shipped import resolve_checkpoint

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "minivln-checkpoint-v1"


def write_model_files(model, directory: Path, meta: dict[str, Any] | None = None) -> None:
    """Write model.safetensors and config.json (with the weight size as a completeness check).

    `model` is a DuetPolicy or any module with a ModelConfig `.config` (e.g. the pretraining model).
    """
    # Shared storage (tied weights) is cloned so safetensors can store each tensor.
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_NAME))
    default_mode(directory / WEIGHTS_NAME)
    info = {"format": FORMAT, "model": to_dict(model.config), "meta": meta or {},
            "weights_bytes": (directory / WEIGHTS_NAME).stat().st_size,
            "num_parameters": sum(p.numel() for p in model.parameters())}
    (directory / CONFIG_NAME).write_text(json.dumps(info, indent=2) + "\n")


def save_pretrained(model: DuetPolicy, directory: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write `model` to `directory` atomically (replacing an existing checkpoint there)."""
    with atomic_directory(directory) as tmp:
        write_model_files(model, tmp, meta)
    return Path(directory)


def read_checkpoint_info(directory: str | Path) -> dict[str, Any]:
    """The checkpoint's config.json, validated (format, model config, weight file size).

    `directory` is a folder or a shipped checkpoint's name (`models.shipped`), as everywhere here."""
    directory = resolve_checkpoint(directory)
    path = directory / CONFIG_NAME
    restore_interrupted(directory)
    if not directory.is_dir():
        raise DataError(directory, "checkpoint directory does not exist")
    info = read_json(path, "missing: not a checkpoint directory (or it was never completely written)")
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise DataError(path, f"not a {FORMAT} checkpoint", field="format")
    weights = directory / WEIGHTS_NAME
    if not weights.exists():
        raise DataError(weights, "weight file is missing")
    if weights.stat().st_size != info.get("weights_bytes"):
        raise DataError(weights, f"weight file has {weights.stat().st_size} bytes, config.json records "
                                 f"{info.get('weights_bytes')}: the checkpoint is incomplete")
    return info


def load_config(directory: str | Path) -> ModelConfig:
    """The ModelConfig stored in a checkpoint."""
    info = read_checkpoint_info(directory)
    try:
        return from_dict(ModelConfig, info.get("model", {}))
    except ConfigError as exc:
        raise DataError(Path(directory) / CONFIG_NAME, str(exc), field="model") from None


def from_pretrained(directory: str | Path, map_location: str = "cpu", dtype: torch.dtype | None = None) -> DuetPolicy:
    """Rebuild the model from a checkpoint directory alone (strict: every weight must match).

    Also takes a fine-tuning run's resumable `last/`, which holds the whole training task: its
    `policy.*` weights are the policy (distillation projections and the like are left out).
    Weights stored in fp16 (shipped checkpoints) load into fp32 parameters unless `dtype` asks
    for another type."""
    directory = resolve_checkpoint(directory)
    model = DuetPolicy(load_config(directory))
    try:
        state = load_file(str(directory / WEIGHTS_NAME), device=map_location)
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise DataError(directory / WEIGHTS_NAME, f"cannot read safetensors weights ({exc})") from None
    probe = "embeddings.word_embeddings.weight"
    if probe not in state and f"policy.{probe}" in state:
        state = {k[len("policy."):]: v for k, v in state.items() if k.startswith("policy.")}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensors whose shapes differ from the config's
        raise DataError(directory / WEIGHTS_NAME, f"weights do not match the config ({exc})") from None
    if missing or unexpected:
        raise DataError(directory / WEIGHTS_NAME,
                        f"weights do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.eval()
    return model if dtype is None else model.to(dtype)


def load_meta(directory: str | Path) -> dict[str, Any]:
    """Free-form metadata saved with the checkpoint (preset, task, training step, ...)."""
    return dict(read_checkpoint_info(directory).get("meta", {}))


__all__ = ["write_model_files", "save_pretrained", "from_pretrained",
           "load_config", "load_meta", "read_checkpoint_info"]
