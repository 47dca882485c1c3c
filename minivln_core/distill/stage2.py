"""Stage 2 of MiniVLN: distillation during fine-tuning (the paper's section IV-B).

`FinetuneDistiller` is FinetuneTask's `extra_loss`, called after every decision of every training
rollout. It runs the frozen fine-tuned teacher on the student's own rollout. Each episode gets a
teacher EpisodeState with its own GraphMap, fed the same observations. The teacher is forced to
take the student's action (`feedback='teacher'` with the student's choice as the expert), so both
maps hold the same nodes in the same order; this is checked at every step. The terms, each summed
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

from typing import Sequence

import torch
from torch import nn

from minivln_core.agent.agent import EpisodeState, NavigationAgent, StepResult
from minivln_core.distill.losses import hidden_mse, soft_cross_entropy
from minivln_core.distill.projections import KDProjections
from minivln_core.distill.teacher import FrozenTeacher, load_policy
from minivln_core.errors import ConfigError

TERMS = ("txt", "pano", "fuse")


class FinetuneDistiller(nn.Module):
    """extra_loss(step_result, states, observations) -> (loss to add, per-term sums for logging)."""

    def __init__(self, teacher: FrozenTeacher, student_dim: int, max_steps: int, kd_weight: float = 0.1,
                 temperature: float = 1.0, txt: bool = True, pano: bool = True, fuse: bool = True):
        super().__init__()
        if kd_weight < 0:
            raise ConfigError(f"config key 'kd_weight' must be >= 0, got {kd_weight}")
        if temperature <= 0:
            raise ConfigError(f"config key 'kd_temperature' must be > 0, got {temperature}")
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


def build_distiller(cfg, student_dim: int, feature_dim: int) -> FinetuneDistiller:
    """The stage-2 distiller of a FinetuneConfig with a teacher (its kd_* keys)."""
    teacher = FrozenTeacher(load_policy(cfg.teacher), cfg.teacher)
    teacher.check_inputs(feature_dim, cfg.task)
    return FinetuneDistiller(teacher, student_dim, cfg.max_steps, cfg.kd_weight, cfg.kd_temperature,
                             cfg.kd_txt, cfg.kd_pano, cfg.kd_fuse)
