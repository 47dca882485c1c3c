"""The ROS layer with real rclpy and real DDS on localhost: closed loop, parameters, bad input, preemption."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("minivln_interfaces.msg", reason="messages not built: run scripts/build_interfaces.sh")

from geometry_msgs.msg import PoseArray, PoseStamped  # noqa: E402
from minivln_interfaces.msg import EpisodeResult, NavigatorStatus  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from minivln_core.frames import heading_to_yaw  # noqa: E402
from minivln_core.robot.launch import node_command, ros_environment, stop_process  # noqa: E402
from minivln_ros.conversions import image_from_rgb  # noqa: E402
from minivln_core.sim.world_robot import SimWorld  # noqa: E402

from fixtures_online import MAX_STEPS, SPLIT, offline_goals  # noqa: E402
from fixtures_ros import (LATCHED, RELIABLE, header, now_seconds, place_messages, pose_array,  # noqa: E402
                          spin_until, transform)

REPO = Path(__file__).resolve().parents[1]


def test_ros_tests_run_in_a_private_domain(ros_context, tmp_path) -> None:
    """conftest.py gives the session its own ROS_DOMAIN_ID: rclpy and the nodes it starts use it, and a
    session starting now, even from the same id, gets another one."""
    domain = int(os.environ["ROS_DOMAIN_ID"])
    assert 1 <= domain <= 101 and ros_context.get_domain_id() == domain
    env = ros_environment(tmp_path / "roslog")
    assert env["ROS_DOMAIN_ID"] == str(domain) and env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    other = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import conftest; "
                            "print(conftest.claim_domain_id(conftest.DOMAIN_LOCKS, int(sys.argv[2])))",
                            str(REPO / "test"), str(domain)], capture_output=True, text=True, timeout=60)
    assert other.returncode == 0, other.stderr
    assert 1 <= int(other.stdout) <= 101 and int(other.stdout) != domain


class Probe:
    """A test-side node: publishes instructions, records statuses, goals and results."""

    def __init__(self, context, executor):
        self.node = rclpy.create_node("probe", context=context)
        executor.add_node(self.node)
        self.instruction = self.node.create_publisher(String, "instruction", RELIABLE)
        self.statuses: list[NavigatorStatus] = []
        self.goals: list[PoseStamped] = []
        self.results: list[EpisodeResult] = []
        self.node.create_subscription(NavigatorStatus, "navigator_status", self.statuses.append, LATCHED)
        self.node.create_subscription(PoseStamped, "goal_pose", self.goals.append, RELIABLE)
        self.node.create_subscription(EpisodeResult, "episode_result", self.results.append, LATCHED)

    def last(self) -> NavigatorStatus | None:
        return self.statuses[-1] if self.statuses else None


def test_closed_loop_matches_offline_rollout(online, ros_context, tmp_path) -> None:
    """sim_robot + navigator as separate processes: the goals equal the offline rollout's."""
    env = ros_environment(tmp_path / "roslog")
    with open(tmp_path / "nodes.log", "w") as log:  # a file, not an unread pipe that could fill and block a node
        nav = subprocess.Popen(node_command("navigator", {"checkpoint": online["checkpoint"], "max_steps": MAX_STEPS}),
                               env=env, stdout=log, stderr=subprocess.STDOUT)
        sim = subprocess.Popen(node_command("sim_robot", {"world": online["world"], "publish_instruction": False,
                                                          "travel_time": 0.1}),
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    executor = SingleThreadedExecutor(context=ros_context)
    probe = Probe(ros_context, executor)
    try:
        episode = SimWorld(online["world"], split=SPLIT).episodes[0]
        assert spin_until(executor, lambda: probe.instruction.get_subscription_count() >= 1
                          and probe.last() is not None, 60), "navigator did not come up"
        probe.instruction.publish(String(data=episode.instruction))
        assert spin_until(executor, lambda: probe.results, 60), "episode did not finish"
        result = probe.results[0]
        final = [s for s in probe.statuses if s.state in (NavigatorStatus.STATE_ARRIVED, NavigatorStatus.STATE_FAILED)]
        assert final and final[-1].state_name in ("arrived", "failed") and final[-1].episode_id == 1
        assert final[-1].step >= 1 and final[-1].num_map_nodes >= 2
        expected = offline_goals(online["world"], online["checkpoint"], 0)
        assert list(result.goals) == expected["goals"]
        assert len(probe.goals) == len(expected["goals"]) and result.instr_id == episode.instr_id
        graph = SimWorld(online["world"], split=SPLIT).graphs[episode.scan]
        for msg, vp in zip(probe.goals, expected["goals"]):  # the goal_pose topic carries those places
            p = msg.pose.position
            assert np.allclose([p.x, p.y, p.z], graph.position(vp))
        assert sim.wait(timeout=20) == 0  # exit_when_done after the one episode
    finally:
        for proc in (sim, nav):
            stop_process(proc)
        probe.node.destroy_node()


@pytest.mark.parametrize("override, expected", [
    ("max_steps:=0", "max_steps"),
    ("checkpoint:=/nonexistent", "checkpoint"),
    ("place_tolerance:=-1.0", "place_tolerance"),
    ("policy_runtime:=tensorrt", "policy_runtime"),
    ("extractor_variant:=onnx-bf16", "extractor_variant"),
])
def test_bad_parameters_exit_with_a_clear_message(online, tmp_path, override, expected) -> None:
    args = node_command("navigator", {"checkpoint": online["checkpoint"]}) + ["-p", override]
    proc = subprocess.run(args, env=ros_environment(tmp_path / "roslog"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert expected in proc.stdout + proc.stderr


class Robot:
    """Test-side publishers of one place's observations (from SimWorld)."""

    def __init__(self, node, world: SimWorld):
        self.node, self.world = node, world
        self.pano = node.create_publisher(Image, "panorama", RELIABLE)
        self.waypoints = node.create_publisher(PoseArray, "navigable_waypoints", RELIABLE)
        self.odom = node.create_publisher(Odometry, "odom", RELIABLE)

    def publish(self, frame: str = "map", age: float = 0.0, pano=None, position=None) -> None:
        """The place's odometry, waypoints and panorama (or `pano`), in `frame`, stamped `age` s ago."""
        odom, waypoints, image = place_messages(self.world, now_seconds(self.node) - age, frame, position)
        self.odom.publish(odom)
        self.waypoints.publish(waypoints)
        self.pano.publish(pano if pano is not None else image)


def test_bad_input_is_dropped_and_preemption(online, ros_context) -> None:
    from minivln_ros.navigator_node import NavigatorNode

    executor = SingleThreadedExecutor(context=ros_context)
    node = NavigatorNode(context=ros_context, parameter_overrides=[
        Parameter("checkpoint", value=str(online["checkpoint"])), Parameter("max_steps", value=MAX_STEPS),
        Parameter("max_instruction_chars", value=200), Parameter("max_data_age", value=2.0)])
    executor.add_node(node)
    probe = Probe(ros_context, executor)
    world = SimWorld(online["world"], split=SPLIT)
    world.start(world.episodes[0])
    robot = Robot(probe.node, world)
    try:
        assert spin_until(executor, lambda: probe.instruction.get_subscription_count() >= 1
                          and robot.pano.get_subscription_count() >= 1 and probe.last() is not None, 30)
        # bad instructions: empty, oversized, not UTF-8 (raw CDR bytes) -> still idle, episode 0
        for _ in range(3):  # the same kind three times: counted three times, logged once
            probe.instruction.publish(String(data="   "))
        probe.instruction.publish(String(data="walk " * 100))
        raw = bytes(serialize_message(String(data="abcd")))
        probe.instruction.publish(raw[:8] + b"\xff\xfe\x41\x00" + raw[12:])
        spin_until(executor, lambda: False, 0.5)
        assert probe.last().state_name == "idle" and probe.last().episode_id == 0
        assert node.dropped["instruction-empty"] == 3 and node.warned["instruction-empty"] == 1
        assert node.dropped["instruction-long"] == 1 and node.dropped["instruction-utf8"] == 1
        # a good instruction, then bad observations: wrong encoding, wrong size, NaN pose, other frame, stale
        probe.instruction.publish(String(data=world.current.episode.instruction))
        assert spin_until(executor, lambda: probe.last().episode_id == 1, 10)
        now = header(now_seconds(probe.node))
        mono = Image(header=now, height=384, width=768, encoding="mono8", step=768, data=bytes(768 * 384))
        robot.publish(pano=mono)
        robot.publish(pano=image_from_rgb(np.zeros((100, 100, 3), np.uint8), now))
        robot.publish(position=np.array([math.nan, 0.0, 0.0]), pano=mono)
        robot.publish(frame="odom", pano=mono)  # the pano stays bad: a good one would complete the inputs
        robot.publish(age=30.0)
        spin_until(executor, lambda: False, 1.0)
        assert not probe.goals and probe.last().step == 0 and probe.last().state_name == "navigating"
        for kind in ("panorama-encoding", "panorama-size", "pose-nan", "odometry-frame", "waypoints-frame",
                     "panorama-stale", "waypoints-stale"):
            assert node.dropped[kind] >= 1 and node.warned[kind] == 1, kind
        assert set(node.warned.values()) == {1}
        # good observations -> the first decision and its goal
        robot.publish()
        assert spin_until(executor, lambda: probe.goals or probe.last().state_name == "arrived", 20)
        assert probe.last().step == 1 and probe.last().num_map_nodes == 1 + len(world.waypoints())
        # preemption: a new instruction restarts at step 0 with a new episode id; it is served too
        probe.instruction.publish(String(data="turn around and stop at the sofa"))
        assert spin_until(executor, lambda: probe.last().episode_id == 2 and probe.last().step == 0, 10)
        goals = len(probe.goals)
        robot.publish()
        assert spin_until(executor, lambda: probe.last().step == 1, 20)
        assert probe.last().episode_id == 2 and probe.last().instruction == "turn around and stop at the sofa"
        assert len(probe.goals) >= goals
    finally:
        executor.remove_node(node)
        node.destroy_node()
        probe.node.destroy_node()


def test_compressed_panorama_and_tf_pose(online, ros_context) -> None:
    """JPEG panoramas on panorama/compressed and the pose from a map -> odom -> base_link TF chain (with the
    ViT run dynamically int8-quantised, `extractor_variant`)."""
    import cv2
    from sensor_msgs.msg import CompressedImage

    from minivln_ros.navigator_node import NavigatorNode
    from minivln_ros.tf_pose import TF_MESSAGE_TYPE

    executor = SingleThreadedExecutor(context=ros_context)
    node = NavigatorNode(context=ros_context, parameter_overrides=[
        Parameter("checkpoint", value=str(online["checkpoint"])), Parameter("max_steps", value=MAX_STEPS),
        Parameter("pose_source", value="tf"), Parameter("extractor_variant", value="torch-int8")])
    assert node.navigator.extractor.extractor.precision == "int8"   # the ViT runs the asked way
    executor.add_node(node)
    probe = Probe(ros_context, executor)
    world = SimWorld(online["world"], split=SPLIT)
    world.start(world.episodes[0])
    robot = Robot(probe.node, world)
    compressed = probe.node.create_publisher(CompressedImage, "panorama/compressed", RELIABLE)
    tf = probe.node.create_publisher(TF_MESSAGE_TYPE, "/tf", RELIABLE)
    tf_static = probe.node.create_publisher(TF_MESSAGE_TYPE, "/tf_static", LATCHED)
    try:
        assert spin_until(executor, lambda: compressed.get_subscription_count() >= 1
                          and tf.get_subscription_count() >= 1 and tf_static.get_subscription_count() >= 1
                          and probe.last() is not None, 30)
        # map -> odom (static: shifted by (1, 2) and turned 90 degrees), odom -> base_link (dynamic)
        target, heading = world.position(), world.heading()
        odom_shift, odom_yaw = np.array([1.0, 2.0, 0.0]), math.pi / 2
        rel = target - odom_shift  # base_link in odom = R(-90 deg) (target - shift)
        in_odom = np.array([rel[1], -rel[0], rel[2]])
        tf_static.publish(transform("map", "odom", odom_shift, odom_yaw, now_seconds(probe.node)))
        tf.publish(transform("odom", "base_link", in_odom, heading_to_yaw(heading) - odom_yaw, now_seconds(probe.node)))
        tf.publish(transform("odom", "base_link", [math.nan, 0, 0], 0.0, now_seconds(probe.node)))
        assert spin_until(executor, lambda: node.robot_pose() is not None and node.dropped["tf-nan"] == 1, 10)
        position, got_heading = node.robot_pose().value
        assert np.allclose(position, target) and math.isclose(math.cos(got_heading - heading), 1.0)
        probe.instruction.publish(String(data=world.current.episode.instruction))
        assert spin_until(executor, lambda: probe.last().episode_id == 1, 10)
        stamp = now_seconds(probe.node)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(world.panorama(), cv2.COLOR_RGB2BGR))
        assert ok
        compressed.publish(CompressedImage(header=header(stamp), format="rgb8; jpeg compressed bgr8",
                                           data=jpeg.tobytes()))
        compressed.publish(CompressedImage(header=header(stamp), format="jpeg", data=b"not a jpeg"))
        robot.waypoints.publish(pose_array(world.waypoints(), stamp))
        tf.publish(transform("odom", "base_link", in_odom, heading_to_yaw(heading) - odom_yaw, now_seconds(probe.node)))
        assert spin_until(executor, lambda: probe.last().step == 1, 20), "no decision on the compressed panorama"
        assert probe.last().num_map_nodes == 1 + len(world.waypoints())
        assert node.dropped["compressed-data"] == 1 and node.warned["compressed-data"] == 1
    finally:
        executor.remove_node(node)
        node.destroy_node()
        probe.node.destroy_node()


def test_auto_extractor_variant_follows_the_place_measurement(online, ros_context, tmp_path, monkeypatch) -> None:
    """The default `extractor_variant: auto` runs the ViT as recorded until `minivln bench --place` has measured
    a faster variant that keeps the checkpoint's decisions on this CPU; then it runs that one."""
    import shutil

    from minivln_core.perception.variant_choice import RECORD_FILE, append_record, checkpoint_digest
    from minivln_core.provenance import cpu_info
    from minivln_ros.navigator_node import NavigatorNode

    monkeypatch.setenv("MINIVLN_CACHE", str(tmp_path / "cache"))
    ckpt = shutil.copytree(online["checkpoint"], tmp_path / "ckpt")

    def precision() -> str:
        node = NavigatorNode(context=ros_context, parameter_overrides=[Parameter("checkpoint", value=str(ckpt))])
        try:
            assert node.p.extractor_variant == "auto"
            return node.navigator.extractor.extractor.precision
        finally:
            node.destroy_node()

    assert precision() == "fp32"
    append_record(ckpt / RECORD_FILE, {
        "checkpoint_digest": checkpoint_digest(ckpt), "cpu": cpu_info(), "threads": 2, "measured": "2026-12-06",
        "fastest_meeting_bar": "torch-int8", "variants": {"torch-fp32": {"median_ms": 90.0, "agreement": 1.0},
                                                          "torch-int8": {"median_ms": 40.0, "agreement": 1.0}}})
    assert precision() == "int8"


def test_launch_description() -> None:
    launch_ros = pytest.importorskip("launch_ros", reason="launch_ros is not installable from PyPI (real ROS 2 only)")
    import importlib.util

    spec = importlib.util.spec_from_file_location("navigate_launch", REPO / "launch" / "navigate.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    names = {getattr(e, "name", None) for e in description.entities}
    assert {"params_file", "checkpoint", "use_sim", "namespace", "log_level"} <= names
    assert launch_ros is not None


def test_sim_robot_without_world_uses_the_embedded_world(online, ros_context, tmp_path, monkeypatch) -> None:
    """world:='' -> sim_robot asks minivln_core.experiments.embedded_world for the cached world (built on first use)."""
    import minivln_core.experiments.embedded_world as embedded
    from minivln_ros.sim_robot_node import SimRobotNode

    calls: list[str] = []
    monkeypatch.setattr(embedded, "ensure_embedded_world", lambda cache: calls.append(cache) or online["world"])
    node = SimRobotNode(context=ros_context, parameter_overrides=[
        Parameter("world_cache", value=str(tmp_path / "cache")), Parameter("split", value=SPLIT)])
    try:
        assert calls == [str(tmp_path / "cache")]
        assert node.world.paths.root == Path(online["world"]) and node.world.current is not None
    finally:
        node.destroy_node()


def test_ros_demo_default_navigates_the_embedded_world_with_the_shipped_student(embedded_world, tmp_path) -> None:
    """`minivln ros-demo` with no world and no checkpoint: the embedded world and the navigator's default
    `checkpoint` parameter, the shipped embedded-student, resolved by name in the node."""
    env = dict(ros_environment(tmp_path / "roslog"), MINIVLN_CACHE=str(embedded_world.parent))
    proc = subprocess.run([sys.executable, "-m", "minivln_core", "ros-demo", "--episodes", "2", "--timeout", "400",
                           "--workdir", str(tmp_path)], env=env, capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "embedded-student" in proc.stdout and "[ros-demo] 2 episode(s)" in proc.stdout
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"instr_id"')]
    assert len(records) == 2 and all(len(r["trajectory"]) >= 2 for r in records)


def test_ros_demo_smoke(tmp_path) -> None:
    """`minivln ros-demo --tiny`: tiny world, two ROS processes, one scored episode (~20 s)."""
    proc = subprocess.run([sys.executable, "-m", "minivln_core", "ros-demo", "--tiny", "--max-steps", "3", "--timeout", "90",
                           "--workdir", str(tmp_path)], env=ros_environment(tmp_path / "roslog"), capture_output=True,
                          text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "[ros-demo] 1 episode(s)" in proc.stdout
    assert any(line.startswith('{"instr_id"') for line in proc.stdout.splitlines())
