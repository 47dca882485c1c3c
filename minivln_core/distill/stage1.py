"""Stage 1 of MiniVLN: the student learns DUET's pretraining tasks while distilling a frozen
pretrained teacher layer by layer (the paper's section IV-A, TinyBERT's intermediate-layer terms).

Teacher and student see the same samples. `build_batch` draws a sample from (seed, step, sample
index) alone, so building the batch once per model gives the same masked instruction, the same
walk and the same map nodes (checked). Each build records its encoders' traces through
`TraceRecorder`. Per paired encoder (language, panorama, and the global and local cross-modal
encoders) the terms are:
- embedding:  MSE(E_t, E_s W_e), on the encoder's input embeddings;
- attention:  per-head MSE of pre-softmax self-attention scores, over valid (query, key) pairs;
- hidden:     MSE(H_t, H_s W_h), over valid tokens.
For the attention and hidden terms, student layer m learns from teacher layer k*m (`layer_map`).
Each kind is averaged over its (encoder, layer) pairs, so a term's scale does not depend on the
depth; this is our reading of the paper's "distillation normalisation". The total is
pretraining loss + kd_embedding * emb + kd_attention * att + kd_hidden * hid.
Letters in shapes: B samples, H heads, L tokens, Ds / Dt student / teacher width.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from minivln_core.distill.losses import attention_mse, hidden_mse, layer_map
from minivln_core.distill.projections import KDProjections
from minivln_core.distill.teacher import FrozenTeacher
from minivln_core.errors import ConfigError
from minivln_core.models.config import ModelConfig
from minivln_core.models.encoders import Trace
from minivln_core.models.loading import load_policy
from minivln_core.models.policy import DuetPolicy, NavigationOutputs
from minivln_core.train.pretrain import PretrainConfig, PretrainTask, run_pretrain
from minivln_core.train.pretrain_tasks import PretrainBatch, build_batch, task_loss

log = logging.getLogger("minivln.distill")

ENCODERS = ("language", "panorama", "global", "local")
KD_TERMS = ("embedding", "attention", "hidden")


@dataclass(frozen=True)
class DistillPretrainConfig(PretrainConfig):
    """Stage-1 settings: pretraining settings (`preset` is the student's size), the teacher and the
    weight of each distillation term (0 switches a term off)."""

    preset: str = "minivln-small"           # the student (the paper's: minivln)
    teacher: str | None = None              # pretrained teacher: a pretraining run's policy/ or best/
    kd_embedding: float = 1.0               # MSE(E_t, E_s W_e) per encoder
    kd_attention: float = 1.0               # per-head MSE of pre-softmax self-attention scores
    kd_hidden: float = 1.0                  # MSE(H_t, H_s W_h) per paired layer

    def validate(self) -> None:
        """Raise ConfigError naming the first bad key (the teacher is checked when the run starts)."""
        super().validate()
        for term in KD_TERMS:
            if getattr(self, f"kd_{term}") < 0:
                raise ConfigError(f"config key 'kd_{term}' must be >= 0, got {getattr(self, f'kd_{term}')}")


def layer_pairs(teacher: ModelConfig, student: ModelConfig) -> dict[str, list[tuple[int, int]]]:
    """Per encoder, the 0-based (student, teacher) layer pairs (language 3m, the others 2m in the paper)."""
    counts = {"language": (teacher.num_l_layers, student.num_l_layers),
              "panorama": (teacher.num_pano_layers, student.num_pano_layers),
              "global": (teacher.num_x_layers, student.num_x_layers),
              "local": (teacher.num_x_layers, student.num_x_layers)}
    pairs = {}
    for name, (t, s) in counts.items():
        try:
            pairs[name] = layer_map(t, s)
        except ValueError as exc:
            raise ConfigError(f"{name} encoder: {exc}") from None
    return pairs


class TraceRecorder:
    """Stands in for a DuetPolicy in `build_batch` and records the trace of every language and
    panorama encoding made through it, in call order, with the valid-token masks (B, L)."""

    def __init__(self, policy: DuetPolicy):
        self.policy = policy
        self.language: list[tuple[Trace, torch.Tensor]] = []
        self.panorama: list[tuple[Trace, torch.Tensor]] = []

    def parameters(self):
        return self.policy.parameters()

    @property
    def config(self):
        return self.policy.config

    def encode_language(self, txt_ids: torch.Tensor, txt_masks: torch.Tensor) -> torch.Tensor:
        trace = Trace()
        out = self.policy.encode_language(txt_ids, txt_masks, trace)                  # (B, L, D)
        self.language.append((trace, txt_masks))
        return out

    def encode_panorama(self, **inputs) -> tuple[torch.Tensor, torch.Tensor]:
        trace = Trace()
        out, masks = self.policy.encode_panorama(**inputs, trace=trace)               # (P, V', D), (P, V')
        self.panorama.append((trace, masks))
        return out, masks


def paired_traces(student: TraceRecorder, teacher: TraceRecorder, s_out: NavigationOutputs,
                  t_out: NavigationOutputs, valid_nodes: torch.Tensor,
                  valid_local: torch.Tensor) -> list[tuple[str, Trace, Trace, torch.Tensor]]:
    """(encoder, student trace, teacher trace, valid (B, L)) for every encoder call of a sample batch.

    Panorama calls made without gradient for the student (nodes beyond max_traj_nodes) are skipped."""
    if len(student.language) != len(teacher.language) or len(student.panorama) != len(teacher.panorama):
        raise RuntimeError("teacher and student encoded different samples (the batch builds diverged)")
    out = [("language", s, t, m) for (s, m), (t, _) in zip(student.language, teacher.language)]
    for (s, m), (t, _) in zip(student.panorama, teacher.panorama):
        if torch.is_grad_enabled() and not s.hidden[-1].requires_grad:
            continue
        out.append(("panorama", s, t, m))
    out.append(("global", s_out.traces["global"], t_out.traces["global"], valid_nodes))
    out.append(("local", s_out.traces["local"], t_out.traces["local"], valid_local))
    return out


class DistillPretrainTask(PretrainTask):
    """PretrainTask plus the stage-1 KD terms against a frozen teacher; trains W_e / W_h per encoder."""

    def __init__(self, model, cfg: DistillPretrainConfig, episodes, env, info, teacher: FrozenTeacher):
        super().__init__(model, cfg, episodes, env, info)
        student = model.policy.config
        if cfg.kd_attention > 0:
            teacher.check_heads(student)
        self.pairs = layer_pairs(teacher.config, student)
        self.teacher = teacher                          # a plain object: not a submodule, not optimised
        names = [f"{enc}_{kind}" for enc in ENCODERS for kind in ("embedding", "hidden")]
        self.projections = KDProjections(names, student.hidden_size, teacher.config.hidden_size)

    def forward(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        task, episodes, positions = self.samples(step)
        seed, nodes = self.cfg.loop.seed, self.cfg.max_traj_nodes
        student = TraceRecorder(self.model.policy)
        batch = build_batch(student, self.env, task, episodes, positions, step, seed, nodes)
        loss, stats = task_loss(self.model, batch)
        scalars = {f"{task}_loss": float(loss.detach()), **{f"{task}_{k}": v for k, v in stats.items() if k != "n"}}
        teacher = TraceRecorder(self.teacher.policy)
        with torch.no_grad():
            t_batch = build_batch(teacher, self.env, task, episodes, positions, step, seed, nodes)
            t_out = self.teacher.policy.navigate(t_batch.inputs, traces=True)
        s_out = self.model.policy.navigate(batch.inputs, traces=True)
        terms = self.distill(student, teacher, s_out, t_out, batch, t_batch)
        for term, value in terms.items():
            weight = getattr(self.cfg, f"kd_{term}")
            loss = loss + weight * value
            scalars[f"kd_{term}"] = float(value.detach())
        return loss, scalars

    def distill(self, student: TraceRecorder, teacher: TraceRecorder, s_out: NavigationOutputs,
                t_out: NavigationOutputs, batch: PretrainBatch, t_batch: PretrainBatch) -> dict[str, torch.Tensor]:
        """The mean embedding, attention and hidden terms over all paired encoders and layers
        (terms whose weight is 0 are not computed)."""
        if batch.nodes != t_batch.nodes:
            raise RuntimeError("teacher and student maps differ: the KD pairs would compare different nodes")
        wanted = [t for t in KD_TERMS if getattr(self.cfg, f"kd_{t}") > 0]
        parts: dict[str, list[torch.Tensor]] = {t: [] for t in wanted}
        encoders = paired_traces(student, teacher, s_out, t_out, batch.inputs.gmap_masks, batch.inputs.vp_masks)
        for name, s, t, valid in encoders:
            if "embedding" in parts:
                parts["embedding"].append(hidden_mse(s.embedding, t.embedding, self.projections[f"{name}_embedding"],
                                                     valid))
            for sm, tm in self.pairs[name]:
                if "attention" in parts:
                    parts["attention"].append(attention_mse(s.scores[sm], t.scores[tm], valid, valid))
                if "hidden" in parts:
                    parts["hidden"].append(hidden_mse(s.hidden[sm], t.hidden[tm], self.projections[f"{name}_hidden"],
                                                      valid))
        return {term: torch.stack(values).mean() for term, values in parts.items()}


def run_distill_pretrain(cfg: DistillPretrainConfig, run_dir: Path, meta: dict[str, Any] | None = None,
                         progress: bool = True) -> dict[str, Any]:
    """Stage-1 distillation; writes `policy/` (the student), `best/` and `last/` like `run_pretrain`."""
    if not cfg.teacher:
        raise ConfigError("stage-1 distillation needs a teacher: pass --teacher CKPT (config key 'teacher')")
    teacher = FrozenTeacher(load_policy(cfg.teacher), cfg.teacher)
    log.info("stage-1 distillation: teacher %s (%d params) -> student %s", cfg.teacher,
             teacher.policy.num_parameters(), cfg.preset)

    def make_task(model, task_cfg, episodes, env, info) -> nn.Module:
        teacher.check_inputs(model.config.image_feat_size, task_cfg.task)
        return DistillPretrainTask(model, task_cfg, episodes, env, info, teacher)

    record = {"kind": "distill-pretrain", "teacher": cfg.teacher, **(meta or {})}
    return run_pretrain(cfg, run_dir, record, progress, make_task=make_task)
