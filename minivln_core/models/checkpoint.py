"""Self-describing checkpoints: one directory with `config.json` and `model.safetensors`.

Loading never unpickles anything: the config is JSON, the weights are safetensors. A directory
is written under a temporary name and renamed into place, so a crash mid-write never leaves a
directory that looks whole; `config.json` also records the weight file's size as a check.

Replacing a directory takes two renames (old -> `.<name>.old`, new -> `<name>`). A process killed
between them leaves no `<name>`; the next read or write of that checkpoint renames the previous,
complete directory back (`restore_interrupted`), so a resumed run continues from it instead of
starting over. Temporary directories of writes that were killed are removed by the next write.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from safetensors.torch import load_file, save_file

from minivln_core.config import from_dict, to_dict
from minivln_core.errors import ConfigError, DataError
from minivln_core.io_utils import fsync_dir, read_json
from minivln_core.models.config import ModelConfig
from minivln_core.models.policy import DuetPolicy

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "minivln-checkpoint-v1"


def _old_name(directory: Path) -> Path:
    return directory.with_name(f".{directory.name}.old")


def restore_interrupted(directory: str | Path) -> bool:
    """Rename `.<name>.old` back to `<name>` if a swap was killed between its two renames."""
    directory = Path(directory)
    old = _old_name(directory)
    if directory.exists() or not old.is_dir():
        return False
    os.replace(old, directory)
    return True


def _remove_stale_temporaries(directory: Path) -> None:
    """Delete `.<name>.XXXXXXXX` directories left by writes that were killed (one writer per checkpoint)."""
    pattern = re.compile(rf"\.{re.escape(directory.name)}\.[A-Za-z0-9_]{{8}}")
    for path in directory.parent.iterdir():
        if pattern.fullmatch(path.name) and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


@contextmanager
def atomic_directory(directory: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside `directory`; on success fsync its files and swap it in.

    On an exception (or a kill) the temporary directory is never renamed, so `directory` keeps
    its previous complete contents.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    restore_interrupted(directory)
    _remove_stale_temporaries(directory)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        yield tmp
        for path in tmp.iterdir():
            if path.is_file():
                with open(path, "rb") as fh:
                    os.fsync(fh.fileno())
        fsync_dir(tmp)
        old = _old_name(directory)
        shutil.rmtree(old, ignore_errors=True)
        if directory.exists():
            os.replace(directory, old)
        os.replace(tmp, directory)
        fsync_dir(directory.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_model_files(model, directory: Path, meta: dict[str, Any] | None = None) -> None:
    """Write model.safetensors and config.json (with the weight size as a completeness check).

    `model` is a DuetPolicy or any module with a ModelConfig `.config` (e.g. the pretraining model).
    """
    # Shared storage (tied weights) is cloned so safetensors can store each tensor.
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_NAME))
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
    """The checkpoint's config.json, validated (format, model config, weight file size)."""
    directory = Path(directory)
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


def from_pretrained(directory: str | Path, map_location: str = "cpu") -> DuetPolicy:
    """Rebuild the model from a checkpoint directory alone (strict: every weight must match).

    Also takes a fine-tuning run's resumable `last/`, which holds the whole training task: its
    `policy.*` weights are the policy (distillation projections and the like are left out)."""
    directory = Path(directory)
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
    return model


def load_meta(directory: str | Path) -> dict[str, Any]:
    """Free-form metadata saved with the checkpoint (preset, task, training step, ...)."""
    return dict(read_checkpoint_info(directory).get("meta", {}))


__all__ = ["atomic_directory", "restore_interrupted", "write_model_files", "save_pretrained", "from_pretrained",
           "load_config", "load_meta", "read_checkpoint_info"]
