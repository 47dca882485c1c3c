"""Learnable maps from the student's width to the teacher's (the paper's W_e, W_h, W_l and W_r).

The distillation losses compare student and teacher features of different widths, so each
compared student feature goes through a linear map D_student -> D_teacher first. The maps are
trained with the student: they live inside the training task, so the Trainer's optimiser updates
them and `last/` stores them (a resumed run continues with the same maps). The student's own
checkpoints (`policy/`, `best/`) hold the policy alone: inference never uses these maps.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


class KDProjections(nn.Module):
    """One bias-free Linear(student_dim -> teacher_dim) per name (the paper's matrices W)."""

    def __init__(self, names: Iterable[str], student_dim: int, teacher_dim: int, identity: bool = False):
        """identity: start every map at the identity (needs equal widths; self-distillation and tests)."""
        super().__init__()
        names = list(names)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"projection names must be distinct and non-empty, got {names}")
        if identity and student_dim != teacher_dim:
            raise ValueError(f"an identity projection needs equal widths, got {student_dim} -> {teacher_dim}")
        self.student_dim, self.teacher_dim = student_dim, teacher_dim
        self.maps = nn.ModuleDict({name: nn.Linear(student_dim, teacher_dim, bias=False) for name in names})
        if identity:
            with torch.no_grad():
                for layer in self.maps.values():
                    layer.weight.copy_(torch.eye(teacher_dim))

    def __getitem__(self, name: str) -> nn.Linear:
        """The map called `name` (a module, as `losses.hidden_mse` takes it)."""
        if name not in self.maps:
            raise KeyError(f"no projection '{name}' (have {', '.join(self.maps)})")
        return self.maps[name]
