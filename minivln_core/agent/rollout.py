"""Roll the agent through a NavEnv: one batch of episodes, or every episode once for evaluation."""

from __future__ import annotations

from typing import Any

import torch
from tqdm import tqdm

from minivln_core.agent.agent import NavigationAgent, StepResult
from minivln_core.env.nav_env import NavEnv, Observation


def apply_decisions(env: NavEnv, active: list[int], decisions) -> list[Observation]:
    """Execute one decision per active agent (hop by hop along its map path; stop if asked) and
    return the observations of the agents still navigating, in order."""
    for i, decision in zip(active, decisions):
        env.decide(i)
        env.walk(i, decision.path)
        if decision.stop:
            env.stop(i)
    return [env.observation(i) for i in active if not env.is_done(i)]


def rollout_batch(agent: NavigationAgent, env: NavEnv, observations: list[Observation],
                  feedback: str = "argmax", on_step=None) -> list[dict[str, Any]]:
    """Run the episodes that `env` has just started until every agent stops.

    Each decision is executed hop by hop in the env along the agent's own map. `on_step(active,
    observations, result)` is called after every decision (training collects losses there).
    Returns results records (`instr_id`, `trajectory`, and `predObjId` when objects are predicted).
    """
    if agent.max_steps != env.max_steps:
        raise ValueError(f"agent max_steps={agent.max_steps} differs from env max_steps={env.max_steps}")
    states = agent.begin([obs.episode.instr_encoding for obs in observations])
    obj_pred: dict[int, str | None] = {}
    active = [obs.index for obs in observations]
    current = list(observations)
    while active:
        result: StepResult = agent.step([states[i] for i in active], current, feedback=feedback)
        if on_step is not None:
            on_step(active, current, result)
        for i, decision in zip(active, result.decisions):
            if decision.stop:
                obj_pred[i] = decision.obj_id
        current = apply_decisions(env, active, result.decisions)
        active = [obs.index for obs in current]
    records = env.results()
    if env.objects is not None:
        for i, rec in enumerate(records):
            rec["predObjId"] = obj_pred.get(i)
    return records


def evaluate(agent: NavigationAgent, env: NavEnv, desc: str = "evaluate",
             progress: bool = True) -> list[dict[str, Any]]:
    """Greedy (argmax) rollout of every episode of `env` exactly once, in eval mode, no gradients."""
    was_training = agent.model.training
    agent.model.eval()
    records: list[dict[str, Any]] = []
    try:
        with torch.inference_mode(), tqdm(total=len(env.episodes), desc=desc, unit="ep", disable=not progress,
                                          leave=False) as bar:
            for observations in env.iterate_once():
                records.extend(rollout_batch(agent, env, observations))
                bar.update(len(observations))
    finally:
        agent.model.train(was_training)
    return records
