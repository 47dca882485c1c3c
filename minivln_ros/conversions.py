"""ROS messages <-> numpy: panoramas, poses, waypoints. Every check raises InputError with what is wrong.

Images: the PyPI `cv-bridge` is an unmaintained pure-Python port of ROS 1's cv_bridge that crashes
on numpy 2 (`ndarray.tostring`), mis-sizes buffers in `imgmsg_to_cv2` and has no `header=`; the
real ROS 2 cv_bridge has no wheel. So messages are decoded with `rosbags-image` (duck-typed, it
accepts rclpy messages; it also decodes CompressedImage) and images are encoded with numpy.

Angles: ROS yaw is counter-clockwise from +x; the core's heading is clockwise from +y
(`minivln_core.agent.online.yaw_to_heading`).
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np
from geometry_msgs.msg import Pose, PoseArray, PoseStamped, Quaternion
from nav_msgs.msg import Odometry
from rosbags.image import ImageError, compressed_image_to_cvimage, image_to_cvimage
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from minivln_core.agent.online import heading_to_yaw, yaw_to_heading

PANORAMA_ENCODINGS = ("rgb8", "bgr8")


class InputError(ValueError):
    """A message that cannot be used; `kind` groups errors so each kind is logged once."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


# -- images -------------------------------------------------------------------------------------
def _check_pano_shape(shape: tuple[int, ...], max_width: int, where: str) -> None:
    height, width = shape[:2]
    if height < 2 or width != 2 * height:
        raise InputError(f"{where}-size", f"{where} is {width}x{height}: an equirectangular panorama is 2:1")
    if width > max_width:
        raise InputError(f"{where}-size", f"{where} is {width} px wide, more than max_pano_width={max_width}")


def panorama_from_image(msg: Image, max_width: int) -> np.ndarray:
    """sensor_msgs/Image (rgb8 or bgr8, 2:1) -> (H, W, 3) uint8 RGB."""
    if msg.encoding not in PANORAMA_ENCODINGS:
        raise InputError("panorama-encoding", f"panorama encoding '{msg.encoding}' is not one of "
                                              f"{', '.join(PANORAMA_ENCODINGS)}")
    _check_pano_shape((msg.height, msg.width), max_width, "panorama")
    if msg.step < 3 * msg.width or len(msg.data) < msg.step * msg.height:
        raise InputError("panorama-data", f"panorama data has {len(msg.data)} bytes, step {msg.step}: "
                                          f"too short for {msg.width}x{msg.height} {msg.encoding}")
    try:
        return np.ascontiguousarray(image_to_cvimage(msg, "rgb8"), dtype=np.uint8)
    except (ImageError, ValueError) as exc:
        raise InputError("panorama-data", f"cannot decode the panorama: {exc}") from None


def panorama_from_compressed(msg: CompressedImage, max_width: int) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG/PNG, 2:1) -> (H, W, 3) uint8 RGB."""
    if not len(msg.data):
        raise InputError("compressed-data", "compressed panorama is empty")
    if len(msg.data) > 3 * max_width * max_width:
        raise InputError("compressed-size", f"compressed panorama has {len(msg.data)} bytes: too large")
    try:
        pano = compressed_image_to_cvimage(msg, "rgb8")
    except Exception as exc:  # rosbags-image / OpenCV raise several types for corrupt data
        raise InputError("compressed-data", f"cannot decode the compressed panorama ({msg.format}): {exc}") from None
    if pano is None or pano.ndim != 3 or pano.shape[2] != 3:
        raise InputError("compressed-data", f"compressed panorama ({msg.format}) is not a colour image")
    _check_pano_shape(pano.shape, max_width, "compressed panorama")
    return np.ascontiguousarray(pano, dtype=np.uint8)


def image_from_rgb(rgb: np.ndarray, header: Header) -> Image:
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image rgb8 (numpy only; see the module docstring)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got {rgb.shape}")
    msg = Image(header=header, height=int(rgb.shape[0]), width=int(rgb.shape[1]), encoding="rgb8",
                is_bigendian=int(sys.byteorder == "big"), step=int(rgb.shape[1] * 3))
    msg.data = rgb.tobytes()
    return msg


# -- poses --------------------------------------------------------------------------------------
def quaternion_from_yaw(yaw: float) -> Quaternion:
    """Rotation about +z by `yaw` radians."""
    return Quaternion(x=0.0, y=0.0, z=math.sin(yaw / 2.0), w=math.cos(yaw / 2.0))


def yaw_from_quaternion(q: Quaternion) -> float:
    """Yaw (rotation about +z) of a quaternion; InputError if it is not finite or not normalisable."""
    values = (q.x, q.y, q.z, q.w)
    norm = math.sqrt(sum(v * v for v in values))
    if not all(math.isfinite(v) for v in values) or norm < 1e-6:
        raise InputError("pose-nan", f"orientation {values} is not a finite rotation")
    x, y, z, w = (v / norm for v in values)
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def _position(pose: Pose, what: str) -> np.ndarray:
    p = np.array([pose.position.x, pose.position.y, pose.position.z], dtype=np.float64)
    if not np.all(np.isfinite(p)):
        raise InputError("pose-nan", f"{what} position {p.tolist()} is not finite")
    return p


def _check_frame(header: Header, frame: str, what: str) -> None:
    if header.frame_id.lstrip("/") != frame:
        raise InputError(f"{what}-frame", f"{what} is in frame '{header.frame_id}', expected '{frame}'")


def robot_pose_from_odometry(msg: Odometry, frame: str) -> tuple[np.ndarray, float]:
    """nav_msgs/Odometry in `frame` -> (position (3,), heading in the core convention)."""
    _check_frame(msg.header, frame, "odometry")
    position = _position(msg.pose.pose, "odometry")
    return position, yaw_to_heading(yaw_from_quaternion(msg.pose.pose.orientation))


def waypoints_from_pose_array(msg: PoseArray, frame: str, max_count: int) -> list[np.ndarray]:
    """geometry_msgs/PoseArray in `frame` -> list of (3,) positions (orientations are ignored)."""
    _check_frame(msg.header, frame, "waypoints")
    if len(msg.poses) > max_count:
        raise InputError("waypoints-count", f"{len(msg.poses)} waypoints, more than max_waypoints={max_count}")
    return [_position(p, "waypoint") for p in msg.poses]


def pose_stamped(position: np.ndarray, heading: float, header: Header) -> PoseStamped:
    """A PoseStamped at `position` facing `heading` (core convention) -> yaw quaternion."""
    msg = PoseStamped(header=header)
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in position)
    msg.pose.orientation = quaternion_from_yaw(heading_to_yaw(heading))
    return msg


def stamp_seconds(header: Any) -> float:
    """Header stamp in seconds."""
    return float(header.stamp.sec) + 1e-9 * float(header.stamp.nanosec)
