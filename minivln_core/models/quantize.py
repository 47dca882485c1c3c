"""Dynamic int8 quantisation of a policy for CPU inference (the int8 student of `minivln bench`).

Every nn.Linear gets int8 weights (per output channel) and activations quantised on the fly per
call (PyTorch's dynamic quantisation, fbgemm/x86 kernels); embeddings and LayerNorms stay fp32.
The quantised copy has the same three modes and the same `config`, so `NavigationAgent` and the
ROS node run it unchanged. It is for inference only (no gradients through int8 weights).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from minivln_core.models.policy import DuetPolicy


def dynamic_int8(module: nn.Module, inplace: bool = False) -> nn.Module:
    """`module` in eval mode with every nn.Linear dynamically int8-quantised (also the ViT's, perception)."""
    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao; the eager dynamic path still works.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantized = torch.ao.quantization.quantize_dynamic(module.eval(), {nn.Linear}, dtype=torch.qint8,
                                                           inplace=inplace)
    return quantized.eval()


def quantize_int8(policy: DuetPolicy) -> DuetPolicy:
    """A dynamically int8-quantised copy of `policy` in eval mode (the original is untouched)."""
    return dynamic_int8(policy)
