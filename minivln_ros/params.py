"""Every ROS parameter of the two executables, declared in one place with descriptions and ranges.

`declare(node, SPECS)` declares them (ranges are enforced by rclpy for later `set_parameters`
calls too) and returns a plain dataclass of the values after start-up validation; a bad value
raises ParamError naming the parameter, and the executables log it and exit with status 2.
`config/navigator.yaml` and `config/sim_robot.yaml` document the same names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node


class ParamError(ValueError):
    """A parameter value that cannot be used."""


@dataclass(frozen=True)
class Spec:
    """One parameter: default (its type is the parameter type), description, inclusive range."""

    default: Any
    description: str
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class NavigatorParams:
    """Values of the navigator's parameters."""

    checkpoint: str
    vit_weights_dir: str
    features_file: str
    threads: int
    int8: bool
    policy_runtime: str
    max_steps: int
    place_tolerance: float
    arrival_tolerance: float
    goal_timeout: float
    max_data_age: float
    max_instruction_chars: int
    max_pano_width: int
    max_waypoints: int
    feature_cache_size: int
    drop_report_period: float
    tick_period: float
    map_frame: str
    instruction_topic: str
    panorama_topic: str
    compressed_panorama_topic: str
    waypoints_topic: str
    odom_topic: str
    pose_source: str
    base_frame: str
    tf_topic: str
    tf_static_topic: str
    goal_topic: str
    status_topic: str
    path_topic: str
    markers_topic: str
    qos_depth: int
    instruction_transient_local: bool


NAVIGATOR = {
    "checkpoint": Spec("", "checkpoint directory (config.json + model.safetensors, from save_pretrained)"),
    "vit_weights_dir": Spec("", "ViT weights folder; empty = the one recorded in the extractor settings"),
    "features_file": Spec("", "view feature file whose 'extractor_config' attribute gives the extractor "
                              "settings, used when the checkpoint has no extractor.json"),
    "threads": Spec(0, "torch intra-op threads (0 = torch default)", 0, 256),
    "int8": Spec(False, "run the policy dynamically int8-quantised (faster on a CPU; `minivln bench` measures "
                        "its speed and argmax agreement with fp32)"),
    "policy_runtime": Spec("torch", "runs the policy's per-step modes: 'torch' or 'onnx' (onnxruntime, exported from the "
                                    "checkpoint at start-up and cached; about 2x faster, docs/speed.md)"),
    "max_steps": Spec(15, "decisions per episode before a forced stop", 1, 1000),
    "place_tolerance": Spec(0.5, "metres within which two positions are the same place", 0.01, 10.0),
    "arrival_tolerance": Spec(0.5, "metres within which the robot has reached a goal", 0.01, 10.0),
    "goal_timeout": Spec(120.0, "seconds to reach a goal before the episode fails", 0.1, 86400.0),
    "max_data_age": Spec(5.0, "seconds after which a panorama / waypoint set / pose is stale", 0.01, 3600.0),
    "max_instruction_chars": Spec(2000, "longest accepted instruction (characters)", 1, 100000),
    "max_pano_width": Spec(8192, "widest accepted panorama (pixels)", 24, 32768),
    "max_waypoints": Spec(64, "most waypoints accepted in one PoseArray", 1, 10000),
    "feature_cache_size": Spec(512, "places whose ViT features are kept (LRU) across episodes; bounds the "
                                    "navigator's memory", 0, 1_000_000),
    "drop_report_period": Spec(10.0, "seconds between warnings that sum up the dropped inputs by reason", 0.1, 86400.0),
    "tick_period": Spec(0.05, "seconds between checks whether a decision is due (at most one decision per tick)",
                        0.001, 1.0),
    "map_frame": Spec("map", "frame of goals, waypoints and odometry poses"),
    "instruction_topic": Spec("instruction", "std_msgs/String instructions (a new one preempts)"),
    "panorama_topic": Spec("panorama", "sensor_msgs/Image equirectangular panorama (rgb8/bgr8)"),
    "compressed_panorama_topic": Spec("panorama/compressed", "sensor_msgs/CompressedImage panorama"),
    "waypoints_topic": Spec("navigable_waypoints", "geometry_msgs/PoseArray candidate positions (map frame)"),
    "odom_topic": Spec("odom", "nav_msgs/Odometry robot pose, in map_frame (pose_source odom)"),
    "pose_source": Spec("odom", "where the robot pose comes from: 'odom' (odom_topic, pose in map_frame) or "
                                "'tf' (the map_frame -> base_frame chain on tf_topic / tf_static_topic)"),
    "base_frame": Spec("base_link", "robot frame looked up in TF (pose_source tf); its origin is the camera centre"),
    "tf_topic": Spec("/tf", "dynamic transforms (tf2_msgs/TFMessage; geometry_msgs/TransformStamped "
                            "without tf2_msgs)"),
    "tf_static_topic": Spec("/tf_static", "static transforms (transient local), same type as tf_topic"),
    "goal_topic": Spec("goal_pose", "geometry_msgs/PoseStamped goals (Nav2's goal_pose)"),
    "status_topic": Spec("navigator_status", "minivln_interfaces/NavigatorStatus"),
    "path_topic": Spec("trajectory", "nav_msgs/Path of the places where decisions were made"),
    "markers_topic": Spec("graph_map", "visualization_msgs/MarkerArray of the topological map"),
    "qos_depth": Spec(5, "history depth of every topic", 1, 1000),
    "instruction_transient_local": Spec(False, "subscribe to instructions with TRANSIENT_LOCAL durability "
                                               "(then only transient-local publishers match)"),
}


@dataclass(frozen=True)
class SimRobotParams:
    """Values of sim_robot's parameters."""

    world: str
    world_cache: str
    task: str
    split: str
    first_episode: int
    num_episodes: int
    publish_instruction: bool
    travel_time: float
    republish_period: float
    goal_tolerance: float
    pano_width: int
    exit_when_done: bool
    map_frame: str
    instruction_topic: str
    panorama_topic: str
    waypoints_topic: str
    odom_topic: str
    goal_topic: str
    status_topic: str
    result_topic: str
    qos_depth: int
    record: str
    record_storage: str
    survey: bool
    survey_scan: str
    survey_bag: str
    episodes_file: str
    connectivity: str


SIM_ROBOT = {
    "world": Spec("", "world folder made by `minivln synth` (annotations + connectivity); empty = the "
                      "embedded world, built on first use into world_cache"),
    "world_cache": Spec("", "cache folder of the embedded world (<world_cache>/world); empty = $MINIVLN_CACHE, "
                            "else $XDG_CACHE_HOME/minivln, else ~/.cache/minivln"),
    "task": Spec("r2r", "annotation task: r2r"),
    "split": Spec("val_unseen", "annotation split whose episodes are played"),
    "first_episode": Spec(0, "index of the first episode played", 0, 1_000_000),
    "num_episodes": Spec(1, "episodes played in order (0 = all)", 0, 1_000_000),
    "publish_instruction": Spec(True, "publish each episode's instruction itself (else wait for one)"),
    "travel_time": Spec(0.2, "seconds the robot takes to reach a goal", 0.0, 3600.0),
    "republish_period": Spec(1.0, "seconds between repeated observations at the current place", 0.05, 3600.0),
    "goal_tolerance": Spec(0.5, "metres from a goal to the nearest viewpoint", 0.01, 10.0),
    "pano_width": Spec(768, "panorama width (multiple of 12; 768 = the training features)", 24, 8192),
    "exit_when_done": Spec(True, "shut down after the last episode"),
    "map_frame": Spec("map", "frame of published poses"),
    "instruction_topic": Spec("instruction", "std_msgs/String instructions"),
    "panorama_topic": Spec("panorama", "sensor_msgs/Image rgb8 panorama"),
    "waypoints_topic": Spec("navigable_waypoints", "geometry_msgs/PoseArray of neighbour positions"),
    "odom_topic": Spec("odom", "nav_msgs/Odometry pose"),
    "goal_topic": Spec("goal_pose", "geometry_msgs/PoseStamped goals"),
    "status_topic": Spec("navigator_status", "minivln_interfaces/NavigatorStatus from the navigator"),
    "result_topic": Spec("episode_result", "minivln_interfaces/EpisodeResult scores"),
    "qos_depth": Spec(5, "history depth of every topic", 1, 1000),
    "record": Spec("", "record a rosbag2 bag of the navigator's inputs and outputs into this new folder "
                       "(empty = no recording)"),
    "record_storage": Spec("mcap", "storage of the recorded bag: mcap or sqlite3"),
    "survey": Spec(False, "visit every place of survey_scan once (heading 0) instead of playing episodes"),
    "survey_scan": Spec("", "building to survey; empty = the scan of episode first_episode"),
    "survey_bag": Spec("", "play the building recorded in this survey bag instead of rendering the world"),
    "episodes_file": Spec("", "survey_bag: R2R episodes to play; empty = the world's annotations of split"),
    "connectivity": Spec("", "survey_bag: connectivity folder; empty = <world>/connectivity"),
}

T = TypeVar("T")


def _descriptor(name: str, spec: Spec) -> ParameterDescriptor:
    desc = ParameterDescriptor(name=name, description=spec.description)
    if spec.low is not None and isinstance(spec.default, bool):
        raise TypeError(f"bool parameter {name} cannot have a range")
    if spec.low is not None and isinstance(spec.default, int):
        desc.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)]
    elif spec.low is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high),
                                                        step=0.0)]
    return desc


def declare(node: Node, specs: dict[str, Spec], cls: type[T]) -> T:
    """Declare `specs` on `node` and return their values as `cls`; ParamError for a bad value."""
    values: dict[str, Any] = {}
    for name, spec in specs.items():
        try:
            param = node.declare_parameter(name, spec.default, _descriptor(name, spec))
        except Exception as exc:  # rclpy raises InvalidParameterValueException / type errors here
            raise ParamError(f"parameter '{name}': {exc}") from None
        value = param.value
        if type(value) is not type(spec.default):
            raise ParamError(f"parameter '{name}' must be a {type(spec.default).__name__}, got {value!r}")
        values[name] = value
    missing = {f.name for f in dataclasses.fields(cls)} - set(values)
    assert not missing, f"{cls.__name__} fields without a spec: {missing}"
    return cls(**values)


def validate_navigator(p: NavigatorParams) -> None:
    """Start-up checks that need more than a range (paths, frames, topic names)."""
    if not p.checkpoint:
        raise ParamError("parameter 'checkpoint' is required (a directory written by save_pretrained)")
    if not (Path(p.checkpoint) / "config.json").is_file():
        raise ParamError(f"parameter 'checkpoint': {p.checkpoint} is not a checkpoint directory (no config.json)")
    if p.vit_weights_dir and not Path(p.vit_weights_dir).is_dir():
        raise ParamError(f"parameter 'vit_weights_dir': {p.vit_weights_dir} is not a directory")
    if p.features_file and not Path(p.features_file).is_file():
        raise ParamError(f"parameter 'features_file': {p.features_file} does not exist")
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
    from minivln_core.replay.config import STORAGES

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
    for f in dataclasses.fields(p):
        value = getattr(p, f.name)
        if (f.name.endswith("_topic") or f.name == frame_field) and (not value or " " in value):
            raise ParamError(f"parameter '{f.name}' must be a non-empty name without spaces, got {value!r}")
