"""The ROS layer with real rclpy and real DDS on localhost: closed loop, parameters, bad input, preemption."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # never send DDS traffic off the loopback
REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_loopback.xml"))

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("minivln_interfaces.msg", reason="messages not built: run scripts/build_interfaces.sh")

from geometry_msgs.msg import Pose, PoseArray, PoseStamped  # noqa: E402
from minivln_interfaces.msg import EpisodeResult, NavigatorStatus  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header, String  # noqa: E402

from minivln_core.agent.online import heading_to_yaw  # noqa: E402
from minivln_ros.conversions import image_from_rgb, quaternion_from_yaw  # noqa: E402
from minivln_ros.sim_world import SimWorld  # noqa: E402

from fixtures_online import MAX_STEPS, SPLIT, build_online_fixture, offline_goals  # noqa: E402

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.fixture(scope="module")
def online(tmp_path_factory) -> dict[str, Path]:
    return build_online_fixture(tmp_path_factory.mktemp("ros"))


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    ctx.try_shutdown()


def ros_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ, ROS_LOG_DIR=str(tmp / "roslog"), PYTHONUNBUFFERED="1")
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    return env


def spin_until(executor, predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.05)
    return predicate()


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


def test_closed_loop_matches_offline_rollout(online, context, tmp_path) -> None:
    """sim_robot + navigator as separate processes: the goals equal the offline rollout's."""
    env = ros_env(tmp_path)
    nav = subprocess.Popen([sys.executable, "-m", "minivln_ros.navigator_node", "--ros-args", "--params-file",
                            str(REPO / "config" / "navigator.yaml"), "-p", f"checkpoint:={online['checkpoint']}",
                            "-p", f"max_steps:={MAX_STEPS}"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    sim = subprocess.Popen([sys.executable, "-m", "minivln_ros.sim_robot_node", "--ros-args", "--params-file",
                            str(REPO / "config" / "sim_robot.yaml"), "-p", f"world:={online['world']}",
                            "-p", "publish_instruction:=false", "-p", "travel_time:=0.1"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    executor = SingleThreadedExecutor(context=context)
    probe = Probe(context, executor)
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
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
        probe.node.destroy_node()


@pytest.mark.parametrize("override, expected", [
    ("max_steps:=0", "max_steps"),
    ("checkpoint:=/nonexistent", "checkpoint"),
    ("place_tolerance:=-1.0", "place_tolerance"),
])
def test_bad_parameters_exit_with_a_clear_message(online, tmp_path, override, expected) -> None:
    args = [sys.executable, "-m", "minivln_ros.navigator_node", "--ros-args", "--params-file",
            str(REPO / "config" / "navigator.yaml"), "-p", f"checkpoint:={online['checkpoint']}", "-p", override]
    proc = subprocess.run(args, env=ros_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert expected in proc.stdout + proc.stderr


class Robot:
    """Test-side publishers of one place's observations (from SimWorld)."""

    def __init__(self, node, world: SimWorld):
        self.node, self.world = node, world
        self.pano = node.create_publisher(Image, "panorama", RELIABLE)
        self.waypoints = node.create_publisher(PoseArray, "navigable_waypoints", RELIABLE)
        self.odom = node.create_publisher(Odometry, "odom", RELIABLE)

    def header(self, frame: str = "map", age: float = 0.0) -> Header:
        now = self.node.get_clock().now().nanoseconds * 1e-9 - age
        h = Header(frame_id=frame)
        h.stamp.sec, h.stamp.nanosec = int(now), int((now % 1) * 1e9)
        return h

    def publish(self, frame: str = "map", age: float = 0.0, pano=None, position=None) -> None:
        header = self.header(frame, age)
        odom = Odometry(header=header)
        pos = self.world.position() if position is None else position
        odom.pose.pose.position.x, odom.pose.pose.position.y, odom.pose.pose.position.z = (float(v) for v in pos)
        odom.pose.pose.orientation = quaternion_from_yaw(heading_to_yaw(self.world.heading()))
        wps = PoseArray(header=header)
        for wp in self.world.waypoints():
            pose = Pose()
            pose.position.x, pose.position.y, pose.position.z = (float(v) for v in wp)
            wps.poses.append(pose)
        self.odom.publish(odom)
        self.waypoints.publish(wps)
        self.pano.publish(pano if pano is not None else image_from_rgb(self.world.panorama(), header))


def test_bad_input_is_dropped_and_preemption(online, context) -> None:
    from minivln_ros.navigator_node import NavigatorNode

    executor = SingleThreadedExecutor(context=context)
    node = NavigatorNode(context=context, parameter_overrides=[
        Parameter("checkpoint", value=str(online["checkpoint"])), Parameter("max_steps", value=MAX_STEPS),
        Parameter("max_instruction_chars", value=200), Parameter("max_data_age", value=2.0)])
    executor.add_node(node)
    probe = Probe(context, executor)
    world = SimWorld(online["world"], split=SPLIT)
    world.start(world.episodes[0])
    robot = Robot(probe.node, world)
    try:
        assert spin_until(executor, lambda: probe.instruction.get_subscription_count() >= 1
                          and robot.pano.get_subscription_count() >= 1 and probe.last() is not None, 30)
        # bad instructions: empty, oversized, not UTF-8 (raw CDR bytes) -> still idle, episode 0
        probe.instruction.publish(String(data="   "))
        probe.instruction.publish(String(data="walk " * 100))
        raw = bytes(serialize_message(String(data="abcd")))
        probe.instruction.publish(raw[:8] + b"\xff\xfe\x41\x00" + raw[12:])
        spin_until(executor, lambda: False, 0.5)
        assert probe.last().state_name == "idle" and probe.last().episode_id == 0
        # a good instruction, then bad observations: wrong encoding, wrong size, NaN pose, other frame, stale
        probe.instruction.publish(String(data=world.current.episode.instruction))
        assert spin_until(executor, lambda: probe.last().episode_id == 1, 10)
        header = robot.header()
        mono = Image(header=header, height=384, width=768, encoding="mono8", step=768, data=bytes(768 * 384))
        robot.publish(pano=mono)
        robot.publish(pano=image_from_rgb(np.zeros((100, 100, 3), np.uint8), header))
        robot.publish(position=np.array([math.nan, 0.0, 0.0]), pano=mono)
        robot.publish(frame="odom")
        robot.publish(age=30.0)
        spin_until(executor, lambda: False, 1.0)
        assert not probe.goals and probe.last().step == 0 and probe.last().state_name == "navigating"
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
