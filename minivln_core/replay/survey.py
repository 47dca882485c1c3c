"""A building played from a survey bag: one recorded panorama, waypoint set and pose per place.

A survey bag is recorded by walking a building (or by `sim_robot` with `survey: true`, which
visits every place once). `read_survey` indexes it: each panorama is taken with the latest
pose and waypoint set recorded before it, the pose is matched to a viewpoint of the building
(`places.PlaceMatcher`), and the first recording of each place is kept. The building is the scan
of the episodes file whose viewpoints match every recorded pose; poses that match none mean the
bag comes from another building.

`SurveyWorld` then answers goals with those recordings. Like `minivln_ros.sim_world.SimWorld`, it
is a `minivln_core.env.graph_robot.GraphRobot` (the same episodes, moves and scores; goals reach
the surveyed places), so `sim_robot` plays it over ROS (parameter `survey_bag`) exactly as the
in-process closed loop (`closedloop.play_episodes`) does. Like sim_robot, the robot arrives at a
goal facing the goal heading snapped to the 30-degree view grid, and the panorama is the recorded
one turned to that heading by whole pixel columns, so with a survey recorded on the grid (as
sim_robot records it) the panoramas equal the rendered ones pixel for pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from tqdm import tqdm

from minivln_core.data.connectivity import ScanGraph
from minivln_core.data.episodes import Episode
from minivln_core.env.graph_robot import GraphRobot
from minivln_core.replay.bag import BagError, BagReader
from minivln_core.replay.config import ReplayConfig
from minivln_core.replay.places import PlaceMatcher
from minivln_core.ros_inputs import (InputError, panorama_from_message, robot_pose_from_odometry,
                                     waypoints_from_pose_array)

ROLES = ("panorama", "compressed_panorama", "waypoints", "odom")
NEED = (("panorama", "compressed_panorama"), ("waypoints",), ("odom",))


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


def read_survey(bag: str | Path, graphs: Mapping[str, ScanGraph], config: ReplayConfig,
                progress: bool = True) -> Survey:
    """Index a survey bag against the buildings in `graphs` (see the module docstring)."""
    bag = Path(bag)
    matchers = {scan: PlaceMatcher(g, config.match_tolerance) for scan, g in graphs.items()}
    found: dict[str, dict[str, SurveyPlace]] = {scan: {} for scan in graphs}
    misses: dict[str, list[tuple[np.ndarray, int]]] = {scan: [] for scan in graphs}
    pose: tuple[np.ndarray, float, int] | None = None
    wps: list[np.ndarray] | None = None
    dropped: list[str] = []
    recordings = 0
    with BagReader(bag, config.topics, ROLES, NEED) as reader:
        total = sum(c.msgcount for conns in reader.connections.values() for c in conns)
        for m in tqdm(reader.messages(), total=total, desc=f"survey {bag.name}", unit="msg", disable=not progress):
            try:
                if m.role == "odom":
                    position, heading = robot_pose_from_odometry(m.msg, config.map_frame)
                    pose = (position, heading, m.index)
                elif m.role == "waypoints":
                    wps = waypoints_from_pose_array(m.msg, config.map_frame, config.max_waypoints)
                elif pose is not None and wps is not None:  # a panorama with a pose and waypoints before it
                    pano = panorama_from_message(m.msg, config.max_pano_width)
                    recordings += 1
                    for scan, matcher in matchers.items():
                        vp = matcher.match(pose[0])
                        if vp is None:
                            misses[scan].append((pose[0], pose[2]))
                        elif vp not in found[scan]:
                            found[scan][vp] = SurveyPlace(vp, pose[0].copy(), pose[1], pano, list(wps),
                                                          f"topic {m.topic} message {m.index}")
            except InputError as err:
                dropped.append(f"topic {m.topic} message {m.index}: {err}")
    if not recordings:
        raise BagError(bag, "holds no panorama recorded after a pose and a waypoint set: not a survey bag",
                       reader.topic("panorama"))
    scan = min(graphs, key=lambda s: (len(misses[s]), -len(found[s]), s))
    if misses[scan]:
        position, index = misses[scan][0]
        vp, dist = matchers[scan].nearest(position)
        raise BagError(bag, f"{len(misses[scan])} of {recordings} recorded poses match no place of any building of "
                            f"the episodes ({', '.join(sorted(graphs))}); this one, "
                            f"{np.round(position, 2).tolist()}, is {dist:.2f} m from the nearest place of scan {scan} "
                            f"(tolerance {config.match_tolerance} m): the bag comes from another building",
                       reader.topic("odom"), index)
    return Survey(bag, scan, graphs[scan], found[scan], dropped)


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


def load_survey_world(bag: str | Path, episodes: Sequence[Episode], connectivity: str | Path,
                      config: ReplayConfig, progress: bool = True) -> SurveyWorld:
    """Read the episodes' buildings from `connectivity`, index the survey bag, build the world."""
    from minivln_core.data.connectivity import load_connectivity

    graphs = load_connectivity(connectivity, sorted({ep.scan for ep in episodes}))
    return SurveyWorld(read_survey(bag, graphs, config, progress), episodes, config.match_tolerance)

