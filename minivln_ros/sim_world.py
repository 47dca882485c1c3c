"""The simulated robot's world, without ROS: where it stands, what it sees, where it can go, its score.

The robot lives on the navigation graph of a world made by `minivln synth` (its houses are
re-rendered by `data.synth.render.Renderer`). What it publishes matches what
`minivln features --world` computed offline:

* Panoramas are equirectangular, DEFAULT_PANO_WIDTH (768) x 384, centred on the robot heading.
  A place's heading-0 panorama is rendered once; the panorama at heading ``k * 30 deg`` is its
  whole-column roll by ``k * 64`` columns, so slicing it at that heading gives exactly the views
  the training features were encoded from.
* Headings are therefore kept on the 30-degree grid: the episode's start heading is snapped to
  it, and on arrival the robot faces the goal orientation snapped to it (the training
  environment also faces the centre of the view it arrived through).
* Waypoints are the positions of the graph neighbours of the current viewpoint (a "prior
  navigation graph" waypoint source), positions are camera centres in the map frame.
* A goal moves the robot to the viewpoint nearest the goal position (within a tolerance),
  walking the full graph's shortest path, which is what the trajectory records for scoring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minivln_core.agent.online import snap_heading
from minivln_core.data.connectivity import ScanGraph, load_connectivity
from minivln_core.data.episodes import Episode
from minivln_core.data.synth.render import Renderer
from minivln_core.data.synth.world import load_houses
from minivln_core.data.world import WorldPaths, load_episodes
from minivln_core.env.geometry import NUM_VIEWS, VIEW_STEP
from minivln_core.errors import DataError
from minivln_core.eval.metrics import episode_metrics
from minivln_core.perception.panorama import DEFAULT_PANO_WIDTH

VIEWS_PER_ROW = NUM_VIEWS // 3


@dataclass
class SimEpisode:
    """The episode being played and what happened so far."""

    episode: Episode
    viewpoint: str
    heading: float                                      # on the 30-degree grid
    trajectory: list[str] = field(default_factory=list)  # every viewpoint passed, start included
    goals: list[str] = field(default_factory=list)       # viewpoints sent as goals


class SimWorld:
    """A robot on one generated world: `start(episode)`, then `panorama/pose/waypoints`, `move_to`, `score`."""

    def __init__(self, world: str | Path, task: str = "r2r", split: str = "val_unseen",
                 pano_width: int = DEFAULT_PANO_WIDTH, goal_tolerance: float = 0.5):
        if pano_width <= 0 or pano_width % VIEWS_PER_ROW:
            raise ValueError(f"pano_width must be a positive multiple of {VIEWS_PER_ROW}, got {pano_width}")
        self.paths = WorldPaths(Path(world))
        self.episodes = load_episodes(self.paths, task, split)
        if not self.episodes:
            raise DataError(self.paths.annotations(task, split), "no episodes")
        self.graphs: dict[str, ScanGraph] = load_connectivity(self.paths.connectivity,
                                                               sorted({e.scan for e in self.episodes}))
        self.houses = load_houses(self.paths.root)
        self.pano_width = int(pano_width)
        self.goal_tolerance = float(goal_tolerance)
        self._renderers: dict[str, Renderer] = {}
        self._panos: dict[tuple[str, str], np.ndarray] = {}
        self.current: SimEpisode | None = None

    # -- episode ------------------------------------------------------------------------------
    def episode(self, key: int | str) -> Episode:
        """An episode by index into the split or by instr_id."""
        if isinstance(key, int):
            if not 0 <= key < len(self.episodes):
                raise IndexError(f"episode index {key} outside 0..{len(self.episodes) - 1}")
            return self.episodes[key]
        for ep in self.episodes:
            if ep.instr_id == key:
                return ep
        raise KeyError(f"no episode with instr_id {key!r}")

    def start(self, episode: Episode) -> SimEpisode:
        """Place the robot at the episode's start, heading snapped to the 30-degree grid."""
        self.current = SimEpisode(episode, episode.start, snap_heading(episode.heading), [episode.start])
        return self.current

    def _require(self) -> SimEpisode:
        if self.current is None:
            raise RuntimeError("no episode started")
        return self.current

    @property
    def graph(self) -> ScanGraph:
        """Navigation graph of the current episode's house."""
        return self.graphs[self._require().episode.scan]

    # -- sensing -------------------------------------------------------------------------------
    def position(self) -> np.ndarray:
        """Camera centre of the current viewpoint, (3,) map frame."""
        return self.graph.position(self._require().viewpoint).copy()

    def heading(self) -> float:
        """Current heading (project convention, on the 30-degree grid)."""
        return self._require().heading

    def waypoints(self) -> list[np.ndarray]:
        """Positions of the navigable neighbours of the current viewpoint."""
        cur = self._require()
        return [self.graph.position(vp).copy() for vp in self.graph.neighbors(cur.viewpoint)]

    def panorama(self) -> np.ndarray:
        """(W/2, W, 3) uint8 RGB equirect panorama centred on the robot heading."""
        cur = self._require()
        key = (cur.episode.scan, cur.viewpoint)
        pano0 = self._panos.get(key)
        if pano0 is None:
            renderer = self._renderers.get(cur.episode.scan)
            if renderer is None:
                renderer = self._renderers[cur.episode.scan] = Renderer(self.houses[cur.episode.scan])
            pano0 = renderer.render_equirect(renderer.camera_position(cur.viewpoint), heading=0.0,
                                             width=self.pano_width, height=self.pano_width // 2)  # (H, W, 3)
            self._panos[key] = pano0
        col = int(round(cur.heading / VIEW_STEP)) % VIEWS_PER_ROW
        return np.roll(pano0, -col * (self.pano_width // VIEWS_PER_ROW), axis=1)

    # -- acting --------------------------------------------------------------------------------
    def viewpoint_at(self, position: np.ndarray) -> str | None:
        """The viewpoint of the current house nearest `position`, if within the goal tolerance."""
        graph = self.graph
        ids = list(graph.viewpoints)
        dist = np.linalg.norm(np.stack([graph.position(v) for v in ids]) - np.asarray(position, float), axis=1)
        best = int(np.argmin(dist))
        return ids[best] if dist[best] <= self.goal_tolerance else None

    def move_to(self, position: np.ndarray, heading: float) -> str:
        """Drive to the viewpoint at `position` along the graph; ValueError if there is none."""
        cur = self._require()
        if not (np.all(np.isfinite(np.asarray(position, float))) and math.isfinite(heading)):
            raise ValueError("goal pose is not finite")
        target = self.viewpoint_at(position)
        if target is None:
            raise ValueError(f"no viewpoint within {self.goal_tolerance} m of goal {np.round(position, 2).tolist()}")
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
