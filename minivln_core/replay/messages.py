"""ROS message types in bags, without ROS: the type store and the message type names.

Bags are read and written with `rosbags` (pure Python). Its Kilted type store knows the standard
messages; our `minivln_interfaces/msg/NavigatorStatus` is registered from `msg/NavigatorStatus.msg`
(the single source of truth that rosidl also builds), so bags carry its definition and hash.

Decoded messages have the field names of the rclpy ones, so the replay checks and converts them
with the navigator node's own input checks (`minivln_core.ros_inputs`): the same inputs are
accepted or dropped, and poses become the same (position, heading) floats.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

STRING = "std_msgs/msg/String"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
POSE_ARRAY = "geometry_msgs/msg/PoseArray"
ODOMETRY = "nav_msgs/msg/Odometry"
POSE_STAMPED = "geometry_msgs/msg/PoseStamped"
NAVIGATOR_STATUS = "minivln_interfaces/msg/NavigatorStatus"

STATE_NAMES = {0: "idle", 1: "navigating", 2: "arrived", 3: "failed"}  # NavigatorStatus.STATE_*
STATE_NAVIGATING, STATE_ARRIVED, STATE_FAILED = 1, 2, 3


# -- type store -----------------------------------------------------------------------------------
def _msg_file(name: str) -> Path:
    """msg/<name>.msg of this repository, else of the installed package (<prefix>/share/minivln_ros/msg)."""
    prefixes = [sys.prefix, *filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep))]
    candidates = [Path(__file__).resolve().parents[2] / "msg" / f"{name}.msg",
                  *(Path(prefix) / "share" / "minivln_ros" / "msg" / f"{name}.msg" for prefix in prefixes)]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"{name}.msg not found (looked in {', '.join(str(p) for p in candidates)})")


@lru_cache(maxsize=1)
def typestore() -> Any:
    """rosbags' ROS 2 Kilted type store plus minivln_interfaces/msg/NavigatorStatus (built once)."""
    from rosbags.typesys import Stores, get_typestore, get_types_from_msg

    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg(_msg_file("NavigatorStatus").read_text(), NAVIGATOR_STATUS))
    return store
