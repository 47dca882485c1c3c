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

Episodes, moves and scores are `graph_robot.GraphRobot`'s (shared with the
replay's surveyed building); this file adds the generated world and what the robot senses there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from minivln_core.data.connectivity import ScanGraph, load_connectivity
from minivln_core.data.synth.render import Renderer
from minivln_core.data.synth.world import load_houses
from minivln_core.data.world import WorldPaths, load_episodes
from minivln_core.errors import DataError
from minivln_core.frames import VIEW_STEP, VIEWS_PER_ROW
from minivln_core.perception.panorama import DEFAULT_PANO_WIDTH
from minivln_core.sim.graph_robot import GraphRobot


class SimWorld(GraphRobot):
    """A robot on one generated world: `start(episode)`, then `panorama/pose/waypoints`, `move_to`, `score`."""

    def __init__(self, world: str | Path, task: str = "r2r", split: str = "val_unseen",
                 pano_width: int = DEFAULT_PANO_WIDTH, goal_tolerance: float = 0.5):
        if pano_width <= 0 or pano_width % VIEWS_PER_ROW:
            raise ValueError(f"pano_width must be a positive multiple of {VIEWS_PER_ROW}, got {pano_width}")
        self.paths = WorldPaths(Path(world))
        super().__init__(load_episodes(self.paths, task, split), goal_tolerance)
        if not self.episodes:
            raise DataError(self.paths.annotations(task, split), "no episodes")
        self.graphs: dict[str, ScanGraph] = load_connectivity(self.paths.connectivity,
                                                               sorted({e.scan for e in self.episodes}))
        self.houses = load_houses(self.paths.root)
        self.pano_width = int(pano_width)
        self._renderers: dict[str, Renderer] = {}
        self._panos: dict[tuple[str, str], np.ndarray] = {}

    @property
    def graph(self) -> ScanGraph:
        """Navigation graph of the current episode's house."""
        return self.graphs[self._require().episode.scan]

    # -- sensing -------------------------------------------------------------------------------
    def position(self) -> np.ndarray:
        """Camera centre of the current viewpoint, (3,) map frame."""
        return self.graph.position(self._require().viewpoint).copy()

    def waypoints(self) -> list[np.ndarray]:
        """Positions of the navigable neighbours of the current viewpoint."""
        cur = self._require()
        return [self.graph.position(vp).copy() for vp in self.graph.neighbors(cur.viewpoint)]

    def panorama(self) -> np.ndarray:
        """(W/2, W, 3) uint8 RGB equirect panorama centred on the robot heading."""
        cur = self._require()
        pano0 = self.heading0_panorama(cur.episode.scan, cur.viewpoint)
        col = int(round(cur.heading / VIEW_STEP)) % VIEWS_PER_ROW
        return np.roll(pano0, -col * (self.pano_width // VIEWS_PER_ROW), axis=1)

    def heading0_panorama(self, scan: str, viewpoint: str) -> np.ndarray:
        """(W/2, W, 3) uint8 RGB panorama of a viewpoint facing heading 0 (rendered once, then cached)."""
        key = (scan, viewpoint)
        pano0 = self._panos.get(key)
        if pano0 is None:
            renderer = self._renderers.get(scan)
            if renderer is None:
                renderer = self._renderers[scan] = Renderer(self.houses[scan])
            pano0 = renderer.render_equirect(renderer.camera_position(viewpoint), heading=0.0,
                                             width=self.pano_width, height=self.pano_width // 2)  # (H, W, 3)
            self._panos[key] = pano0
        return pano0
