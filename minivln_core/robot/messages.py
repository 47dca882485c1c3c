"""ROS message types in bags, without ROS: the type store and the message type names.

Bags are read and written with `rosbags` (pure Python). Its Kilted type store knows the standard
messages; our `minivln_interfaces/msg/NavigatorStatus` is registered from `msg/NavigatorStatus.msg`
(the single source of truth that rosidl also builds), so bags carry its definition and hash.

Decoded messages have the field names of the rclpy ones, so the replay checks and converts them
with the navigator node's own input checks (`minivln_core.robot.inputs`): the same inputs are
accepted or dropped, and poses become the same (position, heading) floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from minivln_core.paths import share_file

STRING = "std_msgs/msg/String"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
POSE_ARRAY = "geometry_msgs/msg/PoseArray"
ODOMETRY = "nav_msgs/msg/Odometry"
POSE_STAMPED = "geometry_msgs/msg/PoseStamped"
NAVIGATOR_STATUS = "minivln_interfaces/msg/NavigatorStatus"

STATE_NAMES = {0: "idle", 1: "navigating", 2: "arrived", 3: "failed"}  # NavigatorStatus.STATE_*
STATE_NAVIGATING, STATE_ARRIVED, STATE_FAILED = 1, 2, 3
STORAGES = ("mcap", "sqlite3")  # rosbag2 storage plugins rosbags reads and writes


@dataclass(frozen=True)
class BagTopics:
    """Topic names in the bag (a leading '/' is ignored when matching, as ros2 bag record adds one)."""

    instruction: str = "instruction"                  # std_msgs/String
    panorama: str = "panorama"                        # sensor_msgs/Image (rgb8/bgr8, 2:1)
    compressed_panorama: str = "panorama/compressed"  # sensor_msgs/CompressedImage (JPEG/PNG, 2:1)
    waypoints: str = "navigable_waypoints"            # geometry_msgs/PoseArray (map frame)
    odom: str = "odom"                                # nav_msgs/Odometry (pose in the map frame)
    goal: str = "goal_pose"                           # geometry_msgs/PoseStamped (the navigator's goals)
    status: str = "navigator_status"                  # minivln_interfaces/NavigatorStatus


# -- type store -----------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def typestore() -> Any:
    """rosbags' ROS 2 Kilted type store plus minivln_interfaces/msg/NavigatorStatus (built once)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg(share_file("msg", "NavigatorStatus.msg").read_text(), NAVIGATOR_STATUS))
    return store
