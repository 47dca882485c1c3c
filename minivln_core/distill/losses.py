"""Knowledge-distillation losses of MiniVLN's two stages (TinyBERT-style terms, -inf-safe logits).

Stage 1 (pretraining): embedding MSE, per-head MSE of pre-softmax attention scores and
hidden-state MSE through learnable projections, student layer m paired with teacher layer k*m.
Stage 2 (fine-tuning): MSE of text-encoder and panorama-encoder outputs through projections and
the cross-entropy between the fused navigation distributions at a temperature.
Letters in shapes: B batch, H heads, Lq/Lk query/key tokens, D hidden size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Scores at or below this are masked entries (the models add -10000 to padded keys): excluded,
# as TinyBERT zeroes them, when no explicit mask is given.
MASKED_SCORE = -100.0


def layer_map(teacher_layers: int, student_layers: int) -> list[tuple[int, int]]:
    """0-based (student, teacher) layer pairs: student layer m (1-based) learns from teacher layer k*m,
    k = teacher_layers / student_layers (3 for the language encoder 9/3, 2 for 2/1 and 4/2)."""
    if student_layers < 1 or teacher_layers < student_layers or teacher_layers % student_layers:
        raise ValueError(f"cannot map {student_layers} student layers onto {teacher_layers} teacher layers "
                         "(the teacher's count must be a multiple of the student's)")
    k = teacher_layers // student_layers
    return [(m - 1, k * m - 1) for m in range(1, student_layers + 1)]


def attention_mse(student: torch.Tensor, teacher: torch.Tensor, query_valid: torch.Tensor | None = None,
                  key_valid: torch.Tensor | None = None) -> torch.Tensor:
    """Per-head MSE of pre-softmax scores (B, H, Lq, Lk), averaged over heads and valid entries.

    Padding is excluded: by the explicit (B, Lq) / (B, Lk) masks when given, else every entry
    that either model scored <= -100 (a masked key)."""
    if student.shape != teacher.shape:
        raise ValueError(f"attention shapes differ: student {tuple(student.shape)} vs teacher {tuple(teacher.shape)} "
                         "(the student needs as many heads as the teacher)")
    valid = (student > MASKED_SCORE) & (teacher > MASKED_SCORE)                       # (B, H, Lq, Lk)
    if query_valid is not None:
        valid = valid & query_valid[:, None, :, None]
    if key_valid is not None:
        valid = valid & key_valid[:, None, None, :]
    diff = (student - teacher).masked_fill(~valid, 0.0)
    return diff.pow(2).sum() / valid.sum().clamp(min=1)


def hidden_mse(student: torch.Tensor, teacher: torch.Tensor, projection: torch.nn.Module,
               valid: torch.Tensor | None = None) -> torch.Tensor:
    """MSE(teacher (B, L, Dt), projection(student (B, L, Ds))) over valid (B, L) tokens."""
    projected = projection(student)                                                   # (B, L, Dt)
    if projected.shape != teacher.shape:
        raise ValueError(f"projected student {tuple(projected.shape)} does not match teacher {tuple(teacher.shape)}")
    if valid is None:
        return F.mse_loss(projected, teacher)
    mask = valid[..., None].to(projected.dtype)                                       # (B, L, 1)
    return ((projected - teacher).pow(2) * mask).sum() / (mask.sum() * teacher.shape[-1]).clamp(min=1)


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                       temperature: float = 1.0) -> torch.Tensor:
    """Mean over the batch of -sum softmax(t/T) * log_softmax(s/T), safe where logits are -inf.

    Masked actions (visited nodes, padding) are -inf in both: their teacher probability is 0 and
    their student log-probability is ignored instead of making 0 * -inf = NaN."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    t = teacher_logits.detach() / temperature                                          # (B, N)
    s = student_logits / temperature
    p_t = torch.softmax(t, dim=-1)
    log_p_s = torch.log_softmax(s, dim=-1)
    usable = torch.isfinite(log_p_s) & (p_t > 0)
    return -(p_t * log_p_s.masked_fill(~usable, 0.0)).sum(-1).mean()
