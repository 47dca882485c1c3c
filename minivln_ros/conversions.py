"""numpy -> ROS messages: images, quaternions, poses.

The other direction — the checks that turn the navigator's input messages into arrays, with their
InputError reason names — lives in the core (`minivln_core.robot.inputs`), where the bag replay uses
it too; those functions take any message with the standard field names, so rclpy messages go
straight in. `InputError` is re-exported here for the ROS layer.

Images: the PyPI `cv-bridge` is an unmaintained pure-Python port of ROS 1's cv_bridge that crashes
on numpy 2 (`ndarray.tostring`), mis-sizes buffers in `imgmsg_to_cv2` and has no `header=`; the
real ROS 2 cv_bridge has no wheel. Images are therefore encoded with numpy here (and decoded with
numpy / OpenCV in the core).

Angles: ROS yaw is counter-clockwise from +x; the core's heading is clockwise from +y
(`minivln_core.agent.online.heading_to_yaw`).
"""

from __future__ import annotations

import sys

import numpy as np
from geometry_msgs.msg import PoseStamped, Quaternion
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from minivln_core import frames
from minivln_core.frames import heading_to_yaw
from minivln_core.robot.inputs import InputError

__all__ = ["InputError", "image_from_rgb", "pose_stamped", "quaternion_from_yaw"]


def image_from_rgb(rgb: np.ndarray, header: Header) -> Image:
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image rgb8 (numpy only; see the module docstring)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got {rgb.shape}")
    msg = Image(header=header, height=int(rgb.shape[0]), width=int(rgb.shape[1]), encoding="rgb8",
                is_bigendian=int(sys.byteorder == "big"), step=int(rgb.shape[1] * 3))
    msg.data = rgb.tobytes()
    return msg


def quaternion_from_yaw(yaw: float) -> Quaternion:
    """Rotation about +z by `yaw` radians."""
    x, y, z, w = frames.quaternion_from_yaw(yaw)
    return Quaternion(x=x, y=y, z=z, w=w)


def pose_stamped(position: np.ndarray, heading: float, header: Header) -> PoseStamped:
    """A PoseStamped at `position` facing `heading` (core convention) -> yaw quaternion."""
    msg = PoseStamped(header=header)
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in position)
    msg.pose.orientation = quaternion_from_yaw(heading_to_yaw(heading))
    return msg
