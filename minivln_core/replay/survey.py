"""A building played from a survey bag: one recorded panorama, waypoint set and pose per place.

A survey bag is recorded by walking a building (or by `sim_robot` with `survey: true`, which
visits every place once). `read_survey` indexes it: each panorama is taken with the latest
pose and waypoint set recorded before it, the pose is matched to a viewpoint of the building
(`places.PlaceMatcher`), and the first recording of each place is kept. The building is the scan
of the episodes file whose viewpoints match every recorded pose; poses that match none mean the
bag comes from another building.

`minivln_core.sim.survey_robot.SurveyWorld` then answers goals with those recordings
(`load_survey_world` builds it from a bag).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from tqdm import tqdm

from minivln_core.data.connectivity import ScanGraph
from minivln_core.data.episodes import Episode
from minivln_core.replay.config import ReplayConfig
from minivln_core.replay.places import PlaceMatcher
from minivln_core.robot.bag import BagError, BagReader
from minivln_core.robot.inputs import (
    InputError,
    panorama_from_message,
    robot_pose_from_odometry,
    waypoints_from_pose_array,
)
from minivln_core.sim.survey_robot import Survey, SurveyPlace, SurveyWorld

ROLES = ("panorama", "compressed_panorama", "waypoints", "odom")
NEED = (("panorama", "compressed_panorama"), ("waypoints",), ("odom",))


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


def load_survey_world(bag: str | Path, episodes: Sequence[Episode], connectivity: str | Path,
                      config: ReplayConfig, progress: bool = True) -> SurveyWorld:
    """Read the episodes' buildings from `connectivity`, index the survey bag, build the world."""
    from minivln_core.data.connectivity import load_connectivity

    graphs = load_connectivity(connectivity, sorted({ep.scan for ep in episodes}))
    return SurveyWorld(read_survey(bag, graphs, config, progress), episodes, config.match_tolerance)

