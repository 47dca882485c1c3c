"""Closed-loop replay over ROS: `sim_robot` plays the survey bag to the real `navigator` node.

Two processes on localhost DDS, started as `minivln ros-demo` starts them (`minivln_core.robot.launch`;
the core never imports rclpy): `sim_robot` with `survey_bag` publishes the recorded observations
of each place the navigator sends it to (`survey.SurveyWorld`, the world the in-process loop
uses), and prints one JSON line per finished episode with its trajectory and goals. Both nodes
get the replay's topic names and navigator settings, so the run is the in-process one over real
topics.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from minivln_core.errors import DataError
from minivln_core.replay.config import ReplayConfig
from minivln_core.robot.launch import node_command, ros_environment, run_navigator_and_sim

NODE_TOPICS = ("instruction", "panorama", "waypoints", "odom", "goal", "status")  # <role>_topic parameters


def node_commands(bag: Path, checkpoint: Path, episodes_file: Path, connectivity: Path, config: ReplayConfig,
                  limit: int = 0, features_file: str | None = None, vit_weights: str | None = None,
                  goal_timeout: float = 30.0) -> tuple[list[str], list[str]]:
    """(navigator command, sim_robot command) with the params files of config/ and the replay's settings."""
    topics = {f"{role}_topic": getattr(config.topics, role) for role in NODE_TOPICS}
    nav = {"checkpoint": checkpoint, "max_steps": config.max_steps, "place_tolerance": config.place_tolerance,
           "threads": config.threads, "map_frame": config.map_frame, "max_pano_width": config.max_pano_width,
           "max_waypoints": config.max_waypoints, "max_instruction_chars": config.max_instruction_chars,
           "feature_cache_size": config.feature_cache_size, "goal_timeout": goal_timeout,
           "extractor_variant": config.extractor_variant}
    if features_file:
        nav["features_file"] = features_file
    if vit_weights:
        nav["vit_weights_dir"] = vit_weights
    sim = {"survey_bag": bag, "episodes_file": episodes_file, "connectivity": connectivity, "num_episodes": limit,
           "travel_time": 0.05, "goal_tolerance": config.match_tolerance, "map_frame": config.map_frame}
    return node_command("navigator", {**nav, **topics}), node_command("sim_robot", {**sim, **topics})


def play_over_ros(bag: Path, checkpoint: Path, episodes_file: Path, connectivity: Path, config: ReplayConfig,
                  limit: int = 0, features_file: str | None = None, vit_weights: str | None = None,
                  timeout: float = 600.0, log_dir: Path | None = None) -> list[dict[str, Any]]:
    """Run navigator + sim_robot(survey_bag) until every episode is played; sim_robot's JSON records."""
    nav_cmd, sim_cmd = node_commands(bag, checkpoint, episodes_file, connectivity, config, limit, features_file,
                                     vit_weights)

    def report(record: dict[str, Any]) -> None:
        print(f"[replay] {record['instr_id']}: {record['state']}, {len(record['goals'])} goal(s)", flush=True)

    with tempfile.TemporaryDirectory(prefix="minivln-replay-") as tmp:
        logs = Path(log_dir or tmp)
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / "sim_robot.log", "w+") as sim_log:  # stderr to a file: a full pipe would block the node
            nodes = run_navigator_and_sim(nav_cmd, sim_cmd, ros_environment(logs / "roslog"), timeout,
                                          on_record=report, sim_stderr=sim_log)
            sim_log.seek(0)
            tail = (sim_log.read().strip().splitlines() or ["(no output)"])[-1]
    if nodes.sim_code != 0 or not nodes.records:
        within = f" within --timeout {timeout:g} s" if nodes.timed_out else ""
        raise DataError(bag, f"the ROS replay did not finish{within} (sim_robot exit {nodes.sim_code}, navigator exit "
                             f"{nodes.navigator_code}): {tail}")
    return nodes.records
