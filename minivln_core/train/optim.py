"""AdamW with BERT-style weight-decay groups and a warm-up + linear-decay learning rate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from minivln_core.config import Validated
from minivln_core.errors import ConfigError


@dataclass(frozen=True)
class OptimConfig(Validated):
    """Optimiser settings (DUET pretraining: lr 5e-5, betas (0.9, 0.98), wd 0.01, clip 5)."""

    lr: float = 1e-4
    weight_decay: float = 0.01             # not applied to biases and LayerNorm weights
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 100                # linear warm-up from 0
    schedule: Literal["linear", "constant"] = "linear"  # after warm-up: decay to 0 at the last step, or hold
    grad_clip: float = 5.0                 # max global gradient norm (0 = off)

    def validate(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"config key 'lr' must be > 0, got {self.lr}")
        if self.warmup_steps < 0 or self.grad_clip < 0 or self.weight_decay < 0:
            raise ConfigError("config keys 'warmup_steps', 'grad_clip' and 'weight_decay' must be >= 0")


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over trainable parameters; biases and LayerNorm weights (the 1-D ones) get no decay."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def lr_at(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """Learning rate at `step` (0-based): a pure function of the step, so resuming needs no state."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    remaining = max(total_steps - cfg.warmup_steps, 1)
    return cfg.lr * max(0.0, 1.0 - (step - cfg.warmup_steps) / remaining)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
