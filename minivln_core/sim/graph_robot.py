"""A robot playing episodes on a building's navigation graph: where it stands, where a goal takes it, its score.

The simulated robot (`minivln_core.sim.world_robot.SimWorld`, rendered panoramas) and the replay's
surveyed building (`minivln_core.sim.survey_robot.SurveyWorld`, recorded panoramas) move and score
the same way and differ only in what the robot senses and which places a goal can reach, so both
extend `GraphRobot`:

* an episode starts at its start viewpoint with the start heading snapped to the 30-degree view
  grid (the grid the training features were encoded on);
* a goal pose takes the robot to the place nearest the goal position, if within `goal_tolerance`
  metres, walking the graph's shortest path (which the trajectory records for scoring), and the
  robot arrives facing the goal heading snapped to the grid;
* the score is the core metrics (`eval.metrics.episode_metrics`) of the trajectory so far.

A subclass gives `graph` (the current building) and the sensing (`position`, `waypoints`,
`panorama`); it may restrict the places goals reach (`_goal_places`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from minivln_core.data.connectivity import ScanGraph
from minivln_core.data.episodes import Episode
from minivln_core.eval.metrics import episode_metrics
from minivln_core.frames import snap_heading


@dataclass
class RobotEpisode:
    """The episode being played and what happened so far."""

    episode: Episode
    viewpoint: str
    heading: float                                      # on the 30-degree grid
    trajectory: list[str] = field(default_factory=list)  # every viewpoint passed, start included
    goals: list[str] = field(default_factory=list)       # viewpoints sent as goals


class GraphRobot:
    """`start(episode)`, then `heading`, `viewpoint_at`, `move_to`, `score` (see the module docstring)."""

    places_name = "viewpoint"  # what goals reach, for error messages

    def __init__(self, episodes: Sequence[Episode], goal_tolerance: float = 0.5):
        self.episodes = list(episodes)
        self.goal_tolerance = float(goal_tolerance)
        self.current: RobotEpisode | None = None

    @property
    def graph(self) -> ScanGraph:
        """Navigation graph of the current episode's building."""
        raise NotImplementedError

    def _goal_places(self) -> tuple[list[str], np.ndarray]:
        """(viewpoints a goal can reach, their positions (P, 3)); default: every viewpoint of `graph`."""
        return self.graph.viewpoints, self.graph.positions

    # -- episode ------------------------------------------------------------------------------
    def episode(self, key: int | str) -> Episode:
        """An episode by index or by instr_id."""
        if isinstance(key, int):
            if not 0 <= key < len(self.episodes):
                raise IndexError(f"episode index {key} outside 0..{len(self.episodes) - 1}")
            return self.episodes[key]
        for ep in self.episodes:
            if ep.instr_id == key:
                return ep
        raise KeyError(f"no episode with instr_id {key!r}")

    def start(self, episode: Episode) -> RobotEpisode:
        """Place the robot at the episode's start, heading snapped to the 30-degree grid."""
        self.current = RobotEpisode(episode, episode.start, snap_heading(episode.heading), [episode.start])
        return self.current

    def _require(self) -> RobotEpisode:
        if self.current is None:
            raise RuntimeError("no episode started")
        return self.current

    def heading(self) -> float:
        """Current heading (project convention, on the 30-degree grid)."""
        return self._require().heading

    # -- acting -------------------------------------------------------------------------------
    def viewpoint_at(self, position: np.ndarray) -> str | None:
        """The place nearest `position` that a goal can reach, if within the goal tolerance."""
        ids, positions = self._goal_places()
        dist = np.linalg.norm(positions - np.asarray(position, dtype=np.float64), axis=1)  # (P,)
        best = int(np.argmin(dist))
        return ids[best] if dist[best] <= self.goal_tolerance else None

    def move_to(self, position: np.ndarray, heading: float) -> str:
        """Go to the place at `position` along the graph; ValueError if there is none."""
        cur = self._require()
        if not (np.all(np.isfinite(np.asarray(position, float))) and math.isfinite(heading)):
            raise ValueError("goal pose is not finite")
        target = self.viewpoint_at(position)
        if target is None:
            raise ValueError(f"no {self.places_name} within {self.goal_tolerance} m of goal "
                             f"{np.round(position, 2).tolist()}")
        cur.goals.append(target)
        if target != cur.viewpoint:
            cur.trajectory.extend(self.graph.shortest_path(cur.viewpoint, target)[1:])
        cur.viewpoint = target
        cur.heading = snap_heading(heading)
        return target

    def score(self) -> dict[str, float]:
        """Core metrics (`eval.metrics.episode_metrics`) of the trajectory so far."""
        cur = self._require()
        return episode_metrics(self.graph, cur.trajectory, cur.episode)
