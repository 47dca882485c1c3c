"""Helpers of the ROS tests: spinning, message builders, and a test-side robot that follows the navigator's goals.

Import after `pytest.importorskip("rclpy")`. The session's private ROS domain, the loopback-only
discovery and the `ros_context` / `online` fixtures come from conftest.py.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, PoseArray, PoseStamped, TransformStamped
from nav_msgs.msg import Odometry
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from minivln_core.frames import heading_to_yaw
from minivln_core.robot.inputs import goal_from_pose_stamped
from minivln_ros.conversions import image_from_rgb, quaternion_from_yaw
from minivln_ros.tf_pose import HAVE_TF2_MSGS, TF_MESSAGE_TYPE

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def spin_until(executor, predicate: Callable[[], bool], timeout: float, period: float = 0.05) -> bool:
    """Spin `executor` until `predicate()` holds (True) or `timeout` seconds pass (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        executor.spin_once(timeout_sec=period)
    return predicate()


def now_seconds(node) -> float:
    """The node clock's time in seconds."""
    return node.get_clock().now().nanoseconds * 1e-9


# -- messages (stamps in seconds) -----------------------------------------------------------------
def stamp_of(seconds: float) -> Time:
    sec = math.floor(seconds)
    return Time(sec=int(sec), nanosec=int((seconds - sec) * 1e9))


def header(seconds: float, frame: str = "map") -> Header:
    return Header(frame_id=frame, stamp=stamp_of(seconds))


def pose_array(positions: Sequence[np.ndarray], stamp: float, frame: str = "map") -> PoseArray:
    msg = PoseArray(header=header(stamp, frame))
    for p in positions:
        pose = Pose()
        pose.position.x, pose.position.y, pose.position.z = (float(v) for v in p)
        msg.poses.append(pose)
    return msg


def odometry(position, yaw: float, stamp: float, frame: str = "map", quat=None) -> Odometry:
    """Odometry at `position` with yaw `yaw` (or the raw quaternion `quat`, x y z w)."""
    msg = Odometry(header=header(stamp, frame))
    msg.pose.pose.position.x, msg.pose.pose.position.y, msg.pose.pose.position.z = (float(v) for v in position)
    if quat is None:
        msg.pose.pose.orientation = quaternion_from_yaw(yaw)
    else:
        q = msg.pose.pose.orientation
        q.x, q.y, q.z, q.w = (float(v) for v in quat)
    return msg


def transform(parent: str, child: str, xyz, yaw: float, stamp: float):
    """One transform as the navigator's TF message type (TFMessage, or TransformStamped without tf2_msgs)."""
    ts = TransformStamped(header=header(stamp, parent), child_frame_id=child)
    ts.transform.translation.x, ts.transform.translation.y, ts.transform.translation.z = (float(v) for v in xyz)
    ts.transform.rotation = quaternion_from_yaw(yaw)
    return TF_MESSAGE_TYPE(transforms=[ts]) if HAVE_TF2_MSGS else ts


def place_messages(world, stamp: float, frame: str = "map", position=None) -> tuple[Odometry, PoseArray, Image]:
    """Odometry, waypoints and panorama of the robot's place in `world` (a SimWorld), all stamped `stamp`."""
    pos = world.position() if position is None else position
    return (odometry(pos, heading_to_yaw(world.heading()), stamp, frame), pose_array(world.waypoints(), stamp, frame),
            image_from_rgb(world.panorama(), header(stamp, frame)))


# -- the robot side of an episode -----------------------------------------------------------------
def follow_goals(spin: Callable[[Callable[[], bool], float], bool], world, goals: list[PoseStamped], seen: int,
                 finished: Callable[[], bool], publish_place: Callable[[], None], timeout: float) -> None:
    """Play the robot until `finished()`: drive to each new goal (`world.move_to`), then publish the new place.

    `goals` is the list a goal_pose subscription appends to, `seen` its length when the episode
    started; `spin(predicate, seconds)` spins the test's executor.
    """
    while True:
        assert spin(lambda: finished() or len(goals) > seen + len(world.current.goals), timeout), \
            "neither a goal nor the end of the episode came"
        if finished():
            return
        position, heading = goal_from_pose_stamped(goals[seen + len(world.current.goals)], "map")
        world.move_to(position, heading)
        publish_place()
