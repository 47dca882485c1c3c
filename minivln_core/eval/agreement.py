"""Do two policies decide alike? Per-step argmax agreement on an evaluation split.

Used to check a faster copy of a policy (the int8 student) against the original: both agents see
the same observations in lockstep; the reference's greedy decisions drive the episodes, and the
candidate, kept on the same trajectory (its map sees the same observations), is asked at every
step which action it would take. The maps are identical, so both choose among the same nodes.
The candidate may also see other view features at the same places (another extractor, or the
same policy on a faster extractor's features: `minivln bench --place`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from minivln_core.agent.agent import NavigationAgent
from minivln_core.agent.rollout import apply_decisions
from minivln_core.eval.evaluate import EvalSpec, build_env
from minivln_core.models.policy import DuetPolicy


def action_agreement(reference: DuetPolicy, candidate: DuetPolicy, spec: EvalSpec,
                     progress: bool = False, candidate_features=None) -> dict[str, Any]:
    """Fraction of decisions where candidate's argmax equals reference's, over every episode of `spec`.

    `candidate_features` (a store with `get(scan, vp) -> (36, D)`) gives the candidate other view
    features than the reference's (another extractor) at the same places; default: the same."""
    env = build_env(spec)

    def seen(observations):
        if candidate_features is None:
            return observations
        return [replace(o, view_features=np.asarray(candidate_features.get(o.scan, o.viewpoint), np.float32))
                for o in observations]

    ref, cand = NavigationAgent(reference.eval(), spec.max_steps), NavigationAgent(candidate.eval(), spec.max_steps)
    steps = agree = episodes = whole = 0
    margins: list[float] = []        # the reference's top-1 minus top-2 probability at every step
    disagreeing: list[float] = []    # ... at the steps where the candidate chose otherwise
    with torch.inference_mode(), tqdm(total=len(env.episodes), desc="agreement", unit="ep", disable=not progress,
                                      leave=False) as bar:
        for observations in env.iterate_once():
            encodings = [obs.episode.instr_encoding for obs in observations]
            ref_states, cand_states = ref.begin(encodings), cand.begin(encodings)
            all_agree = {obs.index: True for obs in observations}
            active, current = [obs.index for obs in observations], list(observations)
            while active:
                res = ref.step([ref_states[i] for i in active], current)
                chosen = {i: (None if d.action == 0 else nodes[d.action])
                          for i, d, nodes in zip(active, res.decisions, res.nodes)}
                other = cand.step([cand_states[i] for i in active], seen(current), feedback="teacher",
                                  expert=lambda st, obs: chosen[obs.index])
                if other.nodes != res.nodes:
                    raise RuntimeError("reference and candidate maps differ on the same observations")
                mine = other.outputs.fused_logits.argmax(-1).tolist()
                margin = decision_margins(res.outputs.fused_logits).tolist()
                for i, d, a, m in zip(active, res.decisions, mine, margin):
                    same = int(a) == d.action
                    agree += same
                    all_agree[i] &= same
                    margins.append(m)
                    if not same:
                        disagreeing.append(m)
                steps += len(active)
                current = apply_decisions(env, active, res.decisions)
                active = [obs.index for obs in current]
            episodes += len(observations)
            whole += sum(all_agree.values())
            bar.update(len(observations))
    return {"split": spec.split, "episodes": episodes, "steps": steps, "agreeing_steps": agree,
            "agreement": agree / max(steps, 1), "episodes_fully_agreeing": whole / max(episodes, 1),
            # how close were the decisions that flipped? (a flip at a near-tie is not a changed mind)
            "reference_margin_median": float(np.median(margins)) if margins else 0.0,
            "disagreement_margins": sorted(round(m, 4) for m in disagreeing)}


def decision_margins(logits: torch.Tensor) -> torch.Tensor:
    """(B, A) fused logits (-inf where masked) -> (B,) top-1 minus top-2 probability (1 with one action)."""
    probs = torch.softmax(logits.float(), -1)
    if probs.shape[-1] < 2:
        return torch.ones(probs.shape[0])
    top = probs.topk(2, -1).values                                     # (B, 2)
    return top[:, 0] - top[:, 1]
