"""Dropout whose masks come from numpy's PCG64 instead of torch's CPU generator (training speed).

Why: on a CPU, torch draws dropout masks with its Mersenne-Twister generator at about 8-10 ns per
element (measured: 2.9 ms for one (16, 80, 192) mask against 0.02 ms for multiplying the same
tensor), so in the small presets, whose matrix products are cheap, the masks cost a third of a
training step; attention dropout also pushes `scaled_dot_product_attention` onto its slow
unfused path. numpy's PCG64 draws the same mask several times faster.

The masks stay reproducible: every mask takes its seed from torch's generator (one draw), so the
trainer's per-step `torch.manual_seed` still fixes every mask and a resumed run repeats them. The
keep probability is quantised to 1/65536 (16-bit draws). Evaluation (`model.eval()`) is unaffected.

`use_fast_dropout(model)` swaps every `nn.Dropout` of a model for `FastDropout` in place and makes
the attention layers apply theirs to the materialised attention probabilities (the fused kernel
cannot take an external mask); the computation is otherwise the same.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from minivln_core.models.layers import Attention

_LEVELS = 65536  # 16-bit draws: p is quantised to 1/65536


def keep_mask(shape: tuple[int, ...] | torch.Size, p: float) -> torch.Tensor:
    """Bool tensor of `shape`, True with probability 1 - p; seeded from torch's default generator."""
    seed = int(torch.randint(0, 2**62, (1,)))
    draws = np.random.default_rng(seed).integers(0, _LEVELS, math.prod(shape), dtype=np.uint16)
    # torch has no comparison for uint16: reinterpret as int16 (uniform over [-32768, 32767]).
    signed = torch.from_numpy(draws.view(np.int16)).view(tuple(shape))
    return signed >= int(round(p * _LEVELS)) - _LEVELS // 2


class FastDropout(nn.Module):
    """`nn.Dropout` with `keep_mask` masks (same scaling: kept values are divided by 1 - p)."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * keep_mask(x.shape, self.p).to(x.dtype) * (1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_fast_dropout(model: nn.Module) -> nn.Module:
    """Replace every `nn.Dropout` in `model` by a `FastDropout` of the same p (in place); returns model."""
    for module in model.modules():
        for name, child in list(module.named_children()):
            if type(child) is nn.Dropout:
                setattr(module, name, FastDropout(child.p).train(child.training))
        if isinstance(module, Attention):
            module.fused_dropout = False
    return model
