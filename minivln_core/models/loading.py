"""The one way to load a policy from any checkpoint the project writes.

`load_policy` takes a policy directory (pretraining's `policy/`, fine-tuning's `best/` or `last/`,
a shipped checkpoint) or a whole pretraining model (pretraining's `best/`, with the MLM/MRC heads),
and returns a DuetPolicy in eval mode. Nothing is unpickled (`models.checkpoint`).
"""

from __future__ import annotations

from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file

from minivln_core.errors import DataError
from minivln_core.models.checkpoint import WEIGHTS_NAME, from_pretrained, load_config, load_meta, read_checkpoint_info
from minivln_core.models.policy import DuetPolicy
from minivln_core.models.pretrain import DuetPretrainModel
from minivln_core.models.shipped import resolve_checkpoint


def load_pretrain_model(directory: str | Path) -> DuetPretrainModel:
    """Rebuild a pretraining model from a `best/` directory written by `train.pretrain.run_pretrain`."""
    directory = resolve_checkpoint(directory)
    meta = load_meta(directory)
    if "mrc_classes" not in meta:
        raise DataError(directory, "not a pretraining checkpoint (meta has no 'mrc_classes')")
    model = DuetPretrainModel(load_config(directory), int(meta["mrc_classes"]))
    model.load_state_dict(load_file(str(Path(directory) / WEIGHTS_NAME)), strict=True)
    model.eval()
    return model


def load_policy(directory: str | Path) -> DuetPolicy:
    """The navigation policy of a checkpoint: a policy directory or a whole pretraining model.

    `directory` may also be a shipped checkpoint's name (`models.shipped`)."""
    directory = resolve_checkpoint(directory)
    read_checkpoint_info(directory)                   # DataError if it is not a whole checkpoint
    with safe_open(str(Path(directory) / WEIGHTS_NAME), "pt") as weights:
        whole_pretraining_model = any(k.startswith("mlm_head.") for k in weights.keys())
    if whole_pretraining_model:
        return load_pretrain_model(directory).to_policy().eval()
    return from_pretrained(directory)
