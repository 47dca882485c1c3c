"""The navigation agent: observation + instruction + graph map -> next waypoint.

This is the one decision procedure of the project: offline evaluation, training rollouts, the
benchmarks and the ROS node all call `NavigationAgent.step`. One call makes one decision for a
batch of episodes in progress (batch 1 on a robot).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Literal, Sequence

import torch

from minivln_core.agent.grounding import InstructionGrounding
from minivln_core.agent.inputs import navigation_batch, object_token_start, panorama_batch, panorama_tokens
from minivln_core.data.tokenizer import PAD_ID
from minivln_core.errors import ConfigError
from minivln_core.graph.graph_map import GraphMap
from minivln_core.models.config import ModelConfig
from minivln_core.models.policy import DuetPolicy, NavigationOutputs

Feedback = Literal["argmax", "sample", "teacher"]
# expert(state, observation) -> the viewpoint to go to (a global node of the updated map) or None = stop.
Expert = Callable[["EpisodeState", object], "str | None"]


@dataclass
class EpisodeState:
    """What the agent keeps for one episode in progress."""

    txt_embeds: torch.Tensor           # (L, D) encoded once per instruction
    txt_kv: torch.Tensor               # (S, H, L, d) its cross-attention keys/values, also once
    graph_map: GraphMap | None = None  # created on the first observation
    start: str | None = None           # viewpoint of the first observation
    step: int = 0                      # decisions made so far
    done: bool = False


@dataclass
class Decision:
    """One decision: where to go next (a global node), the hops to get there, and why."""

    target: str                        # viewpoint to go to (after a stop: the best visited node)
    path: list[str]                    # hops after the current node, ending at `target` (may be empty)
    stop: bool                         # the episode ends at `target`
    stop_prob: float                   # softmax probability of [stop] at this step
    obj_id: str | None = None          # REVERIE: object predicted at `target`
    nodes: list[str | None] = field(default_factory=list)  # global tokens ([None] = stop)
    action: int = 0                    # index into `nodes` that was chosen


@dataclass
class StepResult:
    """Decisions plus the raw outputs (training computes its losses from these)."""

    decisions: list[Decision]
    outputs: NavigationOutputs
    nodes: list[list[str | None]]
    labels: torch.Tensor | None = None  # (B,) expert's action index in `nodes` (0 = stop), if asked
    tokens: list = field(default_factory=list)  # PanoramaTokens per item (local token layout)
    obj_start: int = 0                          # local index of every item's first object token


@lru_cache(maxsize=None)
def _grounding(feature_size: int) -> InstructionGrounding:
    """One builder per feature width and process: teacher and student share its word embeddings."""
    return InstructionGrounding(feature_size)


def policy_grounding(config: ModelConfig) -> InstructionGrounding | None:
    """The grounding-column builder a policy with `ground_feat_size` > 0 takes (None otherwise)."""
    if not config.ground_feat_size:
        return None
    grounding = _grounding(config.image_feat_size)
    if grounding.size != config.ground_feat_size:
        raise ConfigError(f"ground_feat_size is {config.ground_feat_size}, but {config.image_feat_size}-wide view "
                          f"features give {grounding.size} grounding columns")
    return grounding


class NavigationAgent:
    """Runs a DuetPolicy over episodes: language once, then panorama + navigation per decision."""

    def __init__(self, model: DuetPolicy, max_steps: int = 15):
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.model = model
        self.max_steps = max_steps
        self.grounding = policy_grounding(model.config)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def begin(self, instr_encodings: Sequence[Sequence[int]]) -> list[EpisodeState]:
        """Encode instructions (language mode, once per episode) and return fresh episode states."""
        if any(len(e) == 0 for e in instr_encodings):
            raise ValueError("an instruction encoding is empty")
        length = max(len(e) for e in instr_encodings)
        ids = torch.full((len(instr_encodings), length), PAD_ID, dtype=torch.long)
        for i, enc in enumerate(instr_encodings):
            ids[i, : len(enc)] = torch.as_tensor(list(enc), dtype=torch.long)
        masks = ids != PAD_ID
        masks[:, 0] = True
        txt = self.model.encode_language(ids.to(self.device), masks.to(self.device))  # (B, L, D)
        kv = self.model.text_key_values(txt)                                          # (B, S, H, L, d)
        return [EpisodeState(txt[i, : len(e)], kv[i, :, :, : len(e)]) for i, e in enumerate(instr_encodings)]

    def step(self, states: Sequence[EpisodeState], observations: Sequence, feedback: Feedback = "argmax",
             expert: Expert | None = None,
             generators: Sequence[torch.Generator] | None = None) -> StepResult:
        """Make one decision for each (state, observation) pair; updates the states' maps.

        feedback: 'argmax' (evaluation), 'sample' (from the fused distribution) or 'teacher'
        (follow `expert`). `expert(state, obs)` is asked after the map update for the target
        viewpoint (None = stop); its answers are also returned as `labels` for training.
        generators: one per episode for 'sample', so draws do not depend on how episodes are batched.
        """
        if len(states) != len(observations) or not states:
            raise ValueError("step() needs one observation per episode state (and at least one)")
        if feedback == "teacher" and expert is None:
            raise ValueError("feedback='teacher' needs an expert")
        with _torch_threads(getattr(self.model, "torch_threads", None)):
            return self._step(states, observations, feedback, expert, generators)

    def _step(self, states, observations, feedback, expert, generators) -> StepResult:
        model = self.model
        for st, obs in zip(states, observations):
            if st.done:
                raise ValueError("step() called for an episode that has already stopped")
            if st.graph_map is None:
                st.graph_map, st.start = GraphMap(), obs.viewpoint
            st.graph_map.update(obs.viewpoint, obs.position,
                                {c.viewpoint: c.position for c in obs.candidates}, st.step)
        tokens = [panorama_tokens(obs, self.grounding) for obs in observations]
        pano, pano_masks = model.encode_panorama(**panorama_batch(tokens, self.device, self.grounding is not None))
        for i, (st, tok) in enumerate(zip(states, tokens)):
            valid = pano[i][pano_masks[i]]                                                 # (V'_i, D)
            st.graph_map.set_visited_embedding(observations[i].viewpoint, valid.mean(0))
            # Candidate tokens come first: token k observes candidate k's node (visited ones skipped).
            st.graph_map.add_ghost_embeddings(tok.cand_viewpoints, pano[i, : len(tok.cand_viewpoints)])
        txt, txt_masks = _pad_text([st.txt_embeds for st in states])
        inputs, nodes = navigation_batch([st.graph_map for st in states], [st.start for st in states],
                                         observations, tokens, pano, pano_masks, txt, txt_masks)
        inputs.txt_kv = _pad_key_values([st.txt_kv for st in states], txt.shape[1])
        out = model.navigate(inputs)
        probs = torch.softmax(out.fused_logits.detach(), -1)                              # (B, N)
        obj_start = object_token_start(tokens)
        labels = None
        if expert is not None:
            labels = torch.tensor([_node_index(nodes[i], expert(st, obs))
                                   for i, (st, obs) in enumerate(zip(states, observations))], device=probs.device)
        decisions = []
        for i, (st, obs, tok) in enumerate(zip(states, observations, tokens)):
            gmap = st.graph_map
            gmap.set_stop_score(obs.viewpoint, float(probs[i, 0]))
            if out.obj_logits is not None and tok.obj_ids:
                best = int(out.obj_logits[i, obj_start: obj_start + len(tok.obj_ids)].argmax())
                gmap.set_object_prediction(obs.viewpoint, tok.obj_ids[best])
            action = self._choose(probs[i], feedback, None if labels is None else int(labels[i]),
                                  None if generators is None else generators[i])
            forced = st.step + 1 >= self.max_steps or not gmap.ghosts
            if action == 0 or forced:
                # A stop returns to the visited node with the highest stop probability (DUET);
                # under teacher forcing the expert's stop is where the episode ends.
                teacher_stop = feedback == "teacher" and action == 0
                target = obs.viewpoint if teacher_stop else gmap.best_stop_node()
                decision = Decision(target, gmap.path(obs.viewpoint, target), True, float(probs[i, 0]),
                                    gmap.object_prediction(target), nodes[i], action)
                st.done = True
            else:
                target = nodes[i][action]
                decision = Decision(target, gmap.path(obs.viewpoint, target), False, float(probs[i, 0]),
                                    None, nodes[i], action)
            st.step += 1
            decisions.append(decision)
        return StepResult(decisions, out, nodes, labels, tokens, obj_start)

    @staticmethod
    def _choose(probs: torch.Tensor, feedback: Feedback, label: int | None,
                generator: torch.Generator | None) -> int:
        if feedback == "argmax":
            return int(probs.argmax())
        if feedback == "sample":
            return int(torch.multinomial(probs, 1, generator=generator))
        return label


@contextmanager
def _torch_threads(threads: int | None):
    """Run the block with `threads` torch threads (None: unchanged), then restore the count.

    A policy that computes in another runtime says how many threads torch's own small per-step
    work should use (`OnnxPolicy.torch_threads`); setting the count costs well under a microsecond."""
    previous = torch.get_num_threads()
    if not threads or threads == previous:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _node_index(nodes: list[str | None], target: str | None) -> int:
    """Index of the expert's target among the global tokens (0 = stop)."""
    if target is None:
        return 0
    try:
        return nodes.index(target)
    except ValueError:
        raise ValueError(f"expert target {target!r} is not a global node of the map") from None


def _pad_key_values(caches: list[torch.Tensor], length: int) -> torch.Tensor:
    """List of (S, H, L_i, d) -> (B, S, H, length, d), zeros past each L_i (those keys are masked)."""
    if all(c.shape[2] == length for c in caches):
        return torch.stack(caches)
    return torch.stack([torch.nn.functional.pad(c, (0, 0, 0, length - c.shape[2])) for c in caches])


def _pad_text(embeds: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (L_i, D) -> (B, L, D) and (B, L) bool mask."""
    length = max(e.shape[0] for e in embeds)
    out = embeds[0].new_zeros(len(embeds), length, embeds[0].shape[1])
    masks = torch.zeros(len(embeds), length, dtype=torch.bool, device=out.device)
    for i, e in enumerate(embeds):
        out[i, : e.shape[0]] = e
        masks[i, : e.shape[0]] = True
    return out, masks
