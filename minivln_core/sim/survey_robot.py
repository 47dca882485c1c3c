"""A robot in a surveyed building: the recorded panorama, waypoints and pose of each place.

`replay.survey.read_survey` indexes a survey bag into a `Survey` (one recording per place);
`SurveyWorld` then answers goals with those recordings. Like `world_robot.SimWorld`, it is a
`graph_robot.GraphRobot` (the same episodes, moves and scores; goals reach the surveyed places), so
`sim_robot` plays it over ROS (parameter `survey_bag`) exactly as the in-process closed loop
(`replay.closedloop.play_episodes`) does. The robot arrives at a goal facing the goal heading
snapped to the 30-degree view grid, and the panorama is the recorded one turned to that heading by
whole pixel columns, so with a survey recorded on the grid (as sim_robot records it) the panoramas
equal the rendered ones pixel for pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from minivln_core.data.connectivity import ScanGraph
from minivln_core.data.episodes import Episode
from minivln_core.robot.bag import BagError
from minivln_core.sim.graph_robot import GraphRobot


@dataclass
class SurveyPlace:
    """The recording of one place."""

    viewpoint: str
    position: np.ndarray              # (3,) recorded position (map frame)
    heading: float                    # heading the panorama is centred on
    panorama: np.ndarray              # (H, W, 3) uint8 RGB
    waypoints: list[np.ndarray]       # (3,) each
    source: str                       # "topic T message i" of the panorama


@dataclass
class Survey:
    """The places of one building recorded in a bag."""

    bag: Path
    scan: str
    graph: ScanGraph
    places: dict[str, SurveyPlace]
    dropped: list[str] = field(default_factory=list)

    def missing(self) -> list[str]:
        """Viewpoints of the building without a recording."""
        return [vp for vp in self.graph.viewpoints if vp not in self.places]


class SurveyWorld(GraphRobot):
    """A robot in a surveyed building: `start(episode)`, then `panorama/position/waypoints`, `move_to`, `score`."""

    places_name = "surveyed place"

    def __init__(self, survey: Survey, episodes: Sequence[Episode], goal_tolerance: float = 0.5):
        super().__init__([ep for ep in episodes if ep.scan == survey.scan], goal_tolerance)
        self.survey = survey
        self.graphs = {survey.scan: survey.graph}
        self._ids = list(survey.places)
        self._positions = np.stack([survey.places[vp].position for vp in self._ids])  # (P, 3)
        if not self.episodes:
            scans = sorted({ep.scan for ep in episodes})
            raise BagError(survey.bag, f"surveys scan {survey.scan}, but the episodes are in {', '.join(scans)}")
        for ep in self.episodes:
            if ep.start not in survey.places:
                raise BagError(survey.bag, f"has no recording of viewpoint {ep.start}, where episode {ep.instr_id} "
                                           "starts: survey every place the episodes use")

    @property
    def graph(self) -> ScanGraph:
        return self.survey.graph

    def _goal_places(self) -> tuple[list[str], np.ndarray]:
        """Goals reach the surveyed places, at their recorded positions."""
        return self._ids, self._positions

    def _place(self) -> SurveyPlace:
        return self.survey.places[self._require().viewpoint]

    # -- sensing (the recordings) ---------------------------------------------------------------
    def position(self) -> np.ndarray:
        return self._place().position.copy()

    def waypoints(self) -> list[np.ndarray]:
        return [wp.copy() for wp in self._place().waypoints]

    def panorama(self) -> np.ndarray:
        """The recorded panorama turned (whole columns) to be centred on the current heading."""
        place = self._place()
        width = place.panorama.shape[1]
        shift = int(round((self._require().heading - place.heading) * width / (2 * math.pi))) % width
        return np.roll(place.panorama, -shift, axis=1)
