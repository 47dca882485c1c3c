"""Stage 2 of MiniVLN: distillation during fine-tuning (the paper's section IV-B).

`run_distill_finetune` is fine-tuning (`train.finetune.run_finetune`) with a task whose `extra_loss`
is a `FinetuneDistiller`, called after every decision of every training rollout (stage 1 hooks into
pretraining the same way: `distill.stage1`). It runs the frozen fine-tuned teacher on the student's
own rollout. Each episode gets a teacher EpisodeState with its own GraphMap, fed the same
observations. The teacher is forced to take the student's action (`feedback='teacher'` with the
student's choice as the expert), so both maps hold the same nodes in the same order; this is
checked at every step. The terms, each summed
over the step's episodes like the navigation loss, are:
- L_txt  = MSE(f_L teacher, f_L student W_l), once per episode (the instruction encoding);
- L_pano = MSE(R teacher, R student W_r), with R the current node's panorama summary: the
  encoder outputs averaged over its tokens, as kept in the map;
- L_fuse = CE(softmax(Z_t / t), log_softmax(Z_s / t)) over the fused navigation logits. Entries
  that are -inf (visited or padded nodes) are excluded, so they cannot produce NaN.
The step's loss is kd_weight * (L_txt + L_pano + L_fuse); a switched-off term is not computed.
W_l and W_r are trained with the student and stored in `last/`, never in the student's `best/`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from minivln_core.agent.agent import EpisodeState, NavigationAgent, StepResult
from minivln_core.distill.losses import hidden_mse, soft_cross_entropy
from minivln_core.distill.projections import KDProjections
from minivln_core.distill.teacher import FrozenTeacher
from minivln_core.errors import ConfigError
from minivln_core.models.loading import load_policy
from minivln_core.train.finetune import FinetuneConfig, FinetuneTask, run_finetune

log = logging.getLogger("minivln.distill")

TERMS = ("txt", "pano", "fuse")


@dataclass(frozen=True)
class DistillFinetuneConfig(FinetuneConfig):
    """Stage-2 settings: fine-tuning settings (`preset` / `init` are the student) plus the frozen
    fine-tuned teacher and its terms; without a teacher this is plain fine-tuning."""

    teacher: str | None = None              # teacher checkpoint; None = no distillation
    kd_weight: float = 0.1                  # KDWeight: (L_txt + L_pano + L_fuse) * kd_weight joins the loss
    kd_temperature: float = 1.0             # temperature t of L_fuse
    kd_txt: bool = True                     # L_txt: text-encoder outputs through W_l
    kd_pano: bool = True                    # L_pano: the current node's panorama summary through W_r
    kd_fuse: bool = True                    # L_fuse: fused navigation distributions

    def validate(self) -> None:
        """Raise ConfigError naming the first bad key."""
        super().validate()
        if self.kd_weight < 0:
            raise ConfigError(f"config key 'kd_weight' must be >= 0, got {self.kd_weight}")
        if self.kd_temperature <= 0:
            raise ConfigError(f"config key 'kd_temperature' must be > 0, got {self.kd_temperature}")


class FinetuneDistiller(nn.Module):
    """extra_loss(step_result, states, observations) -> (loss to add, per-term sums for logging)."""

    def __init__(self, teacher: FrozenTeacher, student_dim: int, max_steps: int, kd_weight: float = 0.1,
                 temperature: float = 1.0, txt: bool = True, pano: bool = True, fuse: bool = True):
        super().__init__()
        self.teacher = teacher                      # a plain object: not a submodule, not optimised
        self.agent = NavigationAgent(teacher.policy, max_steps)
        self.kd_weight = kd_weight
        self.temperature = temperature
        self.terms = [t for t, on in zip(TERMS, (txt, pano, fuse)) if on] if kd_weight > 0 else []
        self.projections = KDProjections(["text", "panorama"], student_dim, teacher.config.hidden_size)
        # id(student state) -> (student state, teacher state) of the episodes of the current rollouts
        self._pairs: dict[int, tuple[EpisodeState, EpisodeState]] = {}

    def forward(self, result: StepResult, states: Sequence[EpisodeState],
                observations: Sequence) -> tuple[torch.Tensor, dict[str, float]]:
        if not self.terms:
            return torch.zeros(()), {}
        with torch.no_grad():
            t_states, new = self._teacher_states(states, observations)
            targets = {id(ts): result.nodes[i][d.action]                  # the student's choice (None = stop)
                       for i, (ts, d) in enumerate(zip(t_states, result.decisions))}
            t_result = self.agent.step(t_states, observations, feedback="teacher",
                                       expert=lambda st, _obs: targets[id(st)])
        if t_result.nodes != result.nodes:
            raise RuntimeError("the teacher's map differs from the student's: L_fuse would compare different nodes")
        parts: dict[str, torch.Tensor] = {}
        if "txt" in self.terms:
            parts["txt"] = sum((hidden_mse(states[i].txt_embeds[None], t_states[i].txt_embeds[None],
                                           self.projections["text"]) for i in new), torch.zeros(()))
        if "pano" in self.terms:
            s_pano = torch.stack([st.graph_map.embedding(obs.viewpoint)
                                  for st, obs in zip(states, observations)])     # (B, Ds)
            t_pano = torch.stack([ts.graph_map.embedding(obs.viewpoint)
                                  for ts, obs in zip(t_states, observations)])   # (B, Dt)
            parts["pano"] = hidden_mse(s_pano[:, None], t_pano[:, None], self.projections["panorama"]) * len(states)
        if "fuse" in self.terms:
            s_logits, t_logits = result.outputs.fused_logits, t_result.outputs.fused_logits   # (B, N) each
            parts["fuse"] = soft_cross_entropy(s_logits, t_logits, self.temperature) * len(states)
        loss = self.kd_weight * sum(parts.values(), torch.zeros(()))
        return loss, {f"kd_{name}": float(value.detach()) for name, value in parts.items()}

    def _teacher_states(self, states: Sequence[EpisodeState],
                        observations: Sequence) -> tuple[list[EpisodeState], list[int]]:
        """The teacher's state of each student episode, begun at the episode's first decision;
        also the positions of the episodes begun now."""
        new = [i for i, st in enumerate(states) if id(st) not in self._pairs]
        if new:
            late = [i for i in new if states[i].step != 1]
            if late:
                raise RuntimeError(f"the teacher joined {len(late)} episodes after their first decision: "
                                   "it must follow the whole rollout")
            self._pairs = {k: v for k, v in self._pairs.items() if not v[0].done}   # finished rollouts
            begun = self.agent.begin([observations[i].episode.instr_encoding for i in new])
            for i, ts in zip(new, begun):
                self._pairs[id(states[i])] = (states[i], ts)
        return [self._pairs[id(st)][1] for st in states], new


def run_distill_finetune(cfg: DistillFinetuneConfig, run_dir: Path, meta: dict[str, Any] | None = None,
                         progress: bool = True) -> dict[str, Any]:
    """Stage-2 distillation (plain fine-tuning when `cfg.teacher` is None); writes `best/` and `last/`
    like `run_finetune`. W_l and W_r live in the task's `extra_loss`: saved in `last/`, not in `best/`."""
    if not cfg.teacher:
        return run_finetune(cfg, Path(run_dir), meta, progress)

    def make_task(policy, task_cfg, episodes, env, info) -> nn.Module:
        # The teacher is loaded here, after the student is built: model construction draws from
        # torch's seeded generator, so this order keeps a run's weights what they always were.
        teacher = FrozenTeacher(load_policy(task_cfg.teacher), task_cfg.teacher)
        feature_dim = env.features.get(episodes[0].scan, episodes[0].start).shape[1]
        teacher.check_inputs(feature_dim, task_cfg.task)
        log.info("stage-2 distillation: teacher %s (%d params)", task_cfg.teacher, teacher.policy.num_parameters())
        distiller = FinetuneDistiller(teacher, policy.config.hidden_size, task_cfg.max_steps, task_cfg.kd_weight,
                                      task_cfg.kd_temperature, task_cfg.kd_txt, task_cfg.kd_pano, task_cfg.kd_fuse)
        return FinetuneTask(policy, task_cfg, episodes, env, info, distiller)

    return run_finetune(cfg, Path(run_dir), meta, progress, make_task=make_task)
