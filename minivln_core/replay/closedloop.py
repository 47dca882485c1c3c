"""Closed-loop replay in-process: the navigator's decisions drive a robot in a world, episode after episode.

The loop is the navigator node's sequencing without the clock: decide at the robot's place with
`OnlineNavigator.decide`; a decision that moves sends the robot to the goal (`world.move_to`,
which arrives at once); the episode ends when the agent stops (after driving to the stop place)
or fails (`decide` or the world refuses the goal, where the node reports `failed`). One
navigator serves every episode in order, as in the node, so its place registry and feature
cache evolve the same way. `world` is a `minivln_core.sim.graph_robot.GraphRobot` (sim_robot's
`SimWorld`, or for replay a `minivln_core.sim.survey_robot.SurveyWorld`, which `sim_robot` drives over ROS too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from tqdm import tqdm

from minivln_core.agent.online import OnlineNavigator
from minivln_core.data.episodes import Episode


@dataclass
class PlayedEpisode:
    """What one closed-loop episode did."""

    instr_id: str
    state: str                          # arrived / failed
    message: str
    trajectory: list[str]               # viewpoints passed, start first
    goals: list[str]                    # viewpoints the robot was sent to
    decisions: list[dict[str, Any]] = field(default_factory=list)  # place, goal, stop, stop_prob per decision


def play_episode(navigator: OnlineNavigator, world: Any, episode: Episode) -> PlayedEpisode:
    """Run one episode to its end (see the module docstring)."""
    cur = world.start(episode)
    navigator.begin(episode.instruction)
    state, message, decisions = "arrived", "stopped", []
    while navigator.active:
        here = cur.viewpoint
        try:
            out = navigator.decide(world.panorama(), world.position(), world.heading(), world.waypoints())
        except ValueError as err:
            state, message = "failed", str(err)
            break
        goal = None
        if out.moves:
            try:
                goal = world.move_to(out.goal_position, out.goal_heading)
            except ValueError as err:
                state, message = "failed", str(err)
                break
        decisions.append({"step": navigator.step, "place": here, "goal": goal, "stop": bool(out.decision.stop),
                          "stop_prob": round(float(out.decision.stop_prob), 4)})
        if out.decision.stop and goal is not None:
            message = "stopped at the chosen node"
    navigator.cancel()
    return PlayedEpisode(episode.instr_id, state, message, list(cur.trajectory), list(cur.goals), decisions)


def play_episodes(navigator: OnlineNavigator, world: Any, episodes: Sequence[Episode],
                  progress: bool = True) -> list[PlayedEpisode]:
    """`play_episode` for each episode in order, with one navigator."""
    return [play_episode(navigator, world, ep)
            for ep in tqdm(episodes, desc="closed loop", unit="episode", disable=not progress)]
