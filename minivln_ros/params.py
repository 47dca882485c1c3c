"""Every ROS parameter of the two executables: name, type, default, description and range, written once.

`NavigatorParams` / `SimRobotParams` are the parameters (fields made with `param_spec.param`) and,
as instances, their values; `NAVIGATOR` / `SIM_ROBOT` are the same parameters as name -> Spec
tables (`specs_of`). `declare(node, SPECS, cls)` declares them (ranges are enforced by rclpy for
later `set_parameters` calls too) and returns the values; `validate_*` adds the start-up checks
that need more than a range. A bad value raises ParamError naming the parameter, and the
executables log it and exit with status 2. `config/navigator.yaml` and `config/sim_robot.yaml`
set the same names (test/test_ros_params.py checks them against these specs).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rclpy.validate_topic_name import validate_topic_name

from minivln_core.errors import ConfigError, DataError
from minivln_core.models.shipped import resolve_checkpoint
from minivln_core.perception.config import parse_variant
from minivln_core.perception.variant_choice import AUTO
from minivln_ros.param_spec import ParamError, Spec, declare, param, specs_of

__all__ = ["NAVIGATOR", "SIM_ROBOT", "NavigatorParams", "ParamError", "SimRobotParams", "Spec", "declare",
           "validate_navigator", "validate_sim_robot"]


@dataclass(frozen=True)
class NavigatorParams:
    """The navigator's parameters; an instance holds their values."""

    checkpoint: str = param("embedded-student", "checkpoint directory or a shipped checkpoint's name (`minivln "
                                                "checkpoints`); embedded-student navigates the embedded world")
    vit_weights_dir: str = param("", "ViT weights folder; empty = the one recorded in the extractor settings")
    features_file: str = param("", "view feature file whose 'extractor_config' attribute gives the extractor "
                                   "settings, used when the checkpoint has no extractor.json")
    extractor_variant: str = param("auto", "how the ViT runs: 'auto' = the fastest variant that `minivln bench "
                                           "--place` measured to keep >= 99% of this checkpoint's decisions on this "
                                           "CPU model (else one with the same bf16/int8 flags; else as recorded), "
                                           "empty = as recorded with the checkpoint, or "
                                           "<torch|onnx>-<fp32|bf16|int8>[:<distilled extractor folder>]")
    threads: int = param(0, "torch intra-op threads (0 = torch default)", 0, 256)
    int8: bool = param(False, "run the policy dynamically int8-quantised (faster on a CPU; `minivln bench` "
                              "measures its speed and argmax agreement with fp32)")
    policy_runtime: str = param("torch", "runs the policy's per-step modes: 'torch' or 'onnx' (onnxruntime, "
                                         "exported from the checkpoint at start-up and cached; about 2x faster, "
                                         "docs/speed.md)")
    max_steps: int = param(15, "decisions per episode before a forced stop", 1, 1000)
    place_tolerance: float = param(0.5, "metres within which two positions are the same place", 0.01, 10.0)
    arrival_tolerance: float = param(0.5, "metres within which the robot has reached a goal", 0.01, 10.0)
    goal_timeout: float = param(120.0, "seconds to reach a goal before the episode fails", 0.1, 86400.0)
    max_data_age: float = param(5.0, "seconds after which a panorama / waypoint set / pose is stale", 0.01, 3600.0)
    max_clock_skew: float = param(0.5, "seconds an input's stamp may be ahead of the node's clock (clock skew "
                                       "between machines); further ahead it is dropped, not held", 0.0, 60.0)
    max_instruction_chars: int = param(2000, "longest accepted instruction (characters)", 1, 100000)
    max_pano_width: int = param(4096, "widest accepted panorama (pixels); bounds the cost of decoding one "
                                      "(sim_robot's are 768 wide)", 24, 32768)
    max_waypoints: int = param(64, "most waypoints accepted in one PoseArray", 1, 10000)
    feature_cache_size: int = param(512, "places whose ViT features are kept (LRU) across episodes; bounds the "
                                         "navigator's memory", 0, 1_000_000)
    drop_report_period: float = param(10.0, "seconds between warnings that sum up the dropped inputs by reason",
                                      0.1, 86400.0)
    tick_period: float = param(0.05, "seconds between checks whether a decision is due (at most one decision "
                                     "per tick)", 0.001, 1.0)
    map_frame: str = param("map", "frame of goals, waypoints and odometry poses")
    instruction_topic: str = param("instruction", "std_msgs/String instructions (a new one preempts)")
    panorama_topic: str = param("panorama", "sensor_msgs/Image equirectangular panorama (rgb8/bgr8)")
    compressed_panorama_topic: str = param("panorama/compressed", "sensor_msgs/CompressedImage panorama")
    waypoints_topic: str = param("navigable_waypoints", "geometry_msgs/PoseArray candidate positions (map frame)")
    odom_topic: str = param("odom", "nav_msgs/Odometry robot pose, in map_frame (pose_source odom)")
    pose_source: str = param("odom", "where the robot pose comes from: 'odom' (odom_topic, pose in map_frame) or "
                                     "'tf' (the map_frame -> base_frame chain on tf_topic / tf_static_topic)")
    base_frame: str = param("base_link", "robot frame looked up in TF (pose_source tf); its origin is the camera "
                                         "centre")
    tf_topic: str = param("/tf", "dynamic transforms (tf2_msgs/TFMessage; geometry_msgs/TransformStamped "
                                 "without tf2_msgs)")
    tf_static_topic: str = param("/tf_static", "static transforms (transient local), same type as tf_topic")
    goal_topic: str = param("goal_pose", "geometry_msgs/PoseStamped goals (Nav2's goal_pose)")
    status_topic: str = param("navigator_status", "minivln_interfaces/NavigatorStatus")
    path_topic: str = param("trajectory", "nav_msgs/Path of the places where decisions were made")
    markers_topic: str = param("graph_map", "visualization_msgs/MarkerArray of the topological map")
    qos_depth: int = param(5, "history depth of every topic", 1, 1000)
    instruction_transient_local: bool = param(False, "subscribe to instructions with TRANSIENT_LOCAL durability "
                                                     "(then only transient-local publishers match)")


@dataclass(frozen=True)
class SimRobotParams:
    """sim_robot's parameters; an instance holds their values."""

    world: str = param("", "world folder made by `minivln synth` (annotations + connectivity); empty = the "
                           "embedded world, built on first use into world_cache")
    world_cache: str = param("", "cache folder of the embedded world (<world_cache>/world); empty = "
                                 "$MINIVLN_CACHE, else $XDG_CACHE_HOME/minivln, else ~/.cache/minivln")
    task: str = param("r2r", "annotation task: r2r")
    split: str = param("val_unseen", "annotation split whose episodes are played")
    first_episode: int = param(0, "index of the first episode played", 0, 1_000_000)
    num_episodes: int = param(1, "episodes played in order (0 = all)", 0, 1_000_000)
    publish_instruction: bool = param(True, "publish each episode's instruction itself (else wait for one)")
    travel_time: float = param(0.2, "seconds the robot takes to reach a goal", 0.0, 3600.0)
    republish_period: float = param(1.0, "seconds between repeated observations at the current place",
                                    0.05, 3600.0)
    goal_tolerance: float = param(0.5, "metres from a goal to the nearest viewpoint", 0.01, 10.0)
    pano_width: int = param(768, "panorama width (multiple of 12; 768 = the training features)", 24, 8192)
    exit_when_done: bool = param(True, "shut down after the last episode")
    map_frame: str = param("map", "frame of published poses")
    instruction_topic: str = param("instruction", "std_msgs/String instructions")
    panorama_topic: str = param("panorama", "sensor_msgs/Image rgb8 panorama")
    waypoints_topic: str = param("navigable_waypoints", "geometry_msgs/PoseArray of neighbour positions")
    odom_topic: str = param("odom", "nav_msgs/Odometry pose")
    goal_topic: str = param("goal_pose", "geometry_msgs/PoseStamped goals")
    status_topic: str = param("navigator_status", "minivln_interfaces/NavigatorStatus from the navigator")
    result_topic: str = param("episode_result", "minivln_interfaces/EpisodeResult scores")
    qos_depth: int = param(5, "history depth of every topic", 1, 1000)
    record: str = param("", "record a rosbag2 bag of the navigator's inputs and outputs into this new folder "
                            "(empty = no recording)")
    record_storage: str = param("mcap", "storage of the recorded bag: mcap or sqlite3")
    survey: bool = param(False, "visit every place of survey_scan once (heading 0) instead of playing episodes")
    survey_scan: str = param("", "building to survey; empty = the scan of episode first_episode")
    survey_bag: str = param("", "play the building recorded in this survey bag instead of rendering the world")
    episodes_file: str = param("", "survey_bag: R2R episodes to play; empty = the world's annotations of split")
    connectivity: str = param("", "survey_bag: connectivity folder; empty = <world>/connectivity")


NAVIGATOR: dict[str, Spec] = specs_of(NavigatorParams)
SIM_ROBOT: dict[str, Spec] = specs_of(SimRobotParams)


def validate_navigator(p: NavigatorParams) -> None:
    """Start-up checks that need more than a range (paths, frames, topic names)."""
    if not p.checkpoint:
        raise ParamError("parameter 'checkpoint' is required (a checkpoint directory or a shipped name)")
    try:
        folder = resolve_checkpoint(p.checkpoint)
    except DataError as exc:
        raise ParamError(f"parameter 'checkpoint': {exc}") from None
    if not (folder / "config.json").is_file():
        raise ParamError(f"parameter 'checkpoint': {p.checkpoint} is not a checkpoint directory (no config.json)")
    if p.vit_weights_dir and not Path(p.vit_weights_dir).is_dir():
        raise ParamError(f"parameter 'vit_weights_dir': {p.vit_weights_dir} is not a directory")
    if p.features_file and not Path(p.features_file).is_file():
        raise ParamError(f"parameter 'features_file': {p.features_file} does not exist")
    if p.extractor_variant and p.extractor_variant != AUTO:
        try:
            _, _, folder = parse_variant(p.extractor_variant)
        except ConfigError as exc:
            raise ParamError(f"parameter 'extractor_variant': {exc}") from None
        if folder and not Path(folder).is_dir():
            raise ParamError(f"parameter 'extractor_variant': {folder} is not a directory")
    if p.policy_runtime not in ("torch", "onnx"):
        raise ParamError(f"parameter 'policy_runtime' must be 'torch' or 'onnx', got {p.policy_runtime!r}")
    if p.pose_source not in ("odom", "tf"):
        raise ParamError(f"parameter 'pose_source' must be 'odom' or 'tf', got {p.pose_source!r}")
    if not p.base_frame or " " in p.base_frame or p.base_frame.lstrip("/") == p.map_frame.lstrip("/"):
        raise ParamError(f"parameter 'base_frame' must be a frame name other than map_frame, got {p.base_frame!r}")
    _check_names(p, "map_frame")


def validate_sim_robot(p: SimRobotParams) -> None:
    """Start-up checks of sim_robot's parameters."""
    if p.world and not (Path(p.world) / "world.json").is_file():
        raise ParamError(f"parameter 'world': {p.world!r} is not a generated world (no world.json)")
    if p.task != "r2r":
        raise ParamError(f"parameter 'task' must be 'r2r', got {p.task!r}")
    if p.pano_width % 12:
        raise ParamError(f"parameter 'pano_width' must be a multiple of 12, got {p.pano_width}")
    _check_names(p, "map_frame")
    _validate_sim_robot_bags(p)


def _validate_sim_robot_bags(p: SimRobotParams) -> None:
    """sim_robot's recording, survey and survey-bag parameters."""
    from minivln_core.robot.messages import STORAGES

    if p.record_storage not in STORAGES:
        raise ParamError(f"parameter 'record_storage' must be one of {', '.join(STORAGES)}, got {p.record_storage!r}")
    if p.record and Path(p.record).exists():
        raise ParamError(f"parameter 'record': {p.record} exists already (a bag is recorded into a new folder)")
    if p.survey and p.survey_bag:
        raise ParamError("parameters 'survey' (record a building) and 'survey_bag' (play one) exclude each other")
    if p.survey_bag:
        if not Path(p.survey_bag).is_dir():
            raise ParamError(f"parameter 'survey_bag': {p.survey_bag} is not a bag folder")
        for name in ("episodes_file", "connectivity"):
            if not getattr(p, name) and not p.world:
                raise ParamError(f"parameter '{name}' (or 'world') is required with 'survey_bag'")
        if p.episodes_file and not Path(p.episodes_file).is_file():
            raise ParamError(f"parameter 'episodes_file': {p.episodes_file} does not exist")
        if p.connectivity and not Path(p.connectivity).is_dir():
            raise ParamError(f"parameter 'connectivity': {p.connectivity} is not a folder")
    elif p.episodes_file or p.connectivity:
        raise ParamError("parameters 'episodes_file' and 'connectivity' are only used with 'survey_bag'")


def _check_names(p: Any, frame_field: str) -> None:
    """Topic and frame names are non-empty, without spaces; topic names also valid ROS names."""
    for f in dataclasses.fields(p):
        value = getattr(p, f.name)
        if (f.name.endswith("_topic") or f.name == frame_field) and (not value or " " in value):
            raise ParamError(f"parameter '{f.name}' must be a non-empty name without spaces, got {value!r}")
        if f.name.endswith("_topic"):
            # else rclpy refuses the name only when the node creates the topic, as an unexplained crash
            try:
                validate_topic_name(value)
            except Exception as exc:  # InvalidTopicNameException; its message draws a caret under the fault
                reason = str(exc).splitlines()[0].rstrip(":")
                raise ParamError(f"parameter '{f.name}': {reason} (got {value!r})") from None
