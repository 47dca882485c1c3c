"""The navigator's input checks: ROS message fields -> arrays, or an InputError naming the reason.

One copy for everything that reads the navigator's inputs: the navigator node (rclpy messages,
`minivln_ros.navigator_node`) and the replay of bags (rosbags messages, `minivln_core.replay`).
Both kinds of message have the same field names, so the functions take any object with those
fields (duck typing) and never import rclpy or rosbags: a replayed bag accepts and drops exactly
the inputs the node would, and poses become the same floats.

`InputError.kind` is the reason name (`panorama-encoding`, `pose-nan`, `instruction-long`, ...):
the node counts and logs dropped messages by it, the replay lists them.

Images: raw rgb8/bgr8 images are read with numpy, honouring `step` (rows may be padded). A
CompressedImage is decoded with OpenCV only after its PNG/JPEG header has shown a size within
`max_pano_width`, so a small file that would decode to gigabytes (a decompression bomb) never is;
the width limit is what bounds the cost of one decode (the navigator's default, 4096 px, about
eight times the pixels of sim_robot's 768 px panoramas: at most 25 MB decoded).

Text fields a sender chooses (frame ids, image encodings and formats) are quoted with repr() in
the reasons, like instructions in the node's log: a newline in them cannot forge a log line.

Stamps: a stamp ahead of the clock by more than `max_skew` is refused rather than held, since
every real input after it would look out of order until the clock caught up with it.

Positions must be finite and within MAX_COORDINATE metres of the origin: larger values are
garbage for a building-scale map and overflow distances to inf inside the agent.

Angles: ROS yaw is counter-clockwise from +x; the core's heading is clockwise from +y
(`minivln_core.frames.yaw_to_heading`).
"""

from __future__ import annotations

import io
import math
import threading
from typing import Any

import numpy as np

from minivln_core.frames import yaw_of_unit_quaternion, yaw_to_heading

PANORAMA_ENCODINGS = ("rgb8", "bgr8")
MAX_COORDINATE = 1e6  # metres; see the module docstring


class InputError(ValueError):
    """A message that cannot be used; `kind` names the reason (each kind is logged once by the node)."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


# -- stamps ---------------------------------------------------------------------------------------
def stamp_seconds(header: Any) -> float:
    """Header stamp in seconds."""
    return float(header.stamp.sec) + 1e-9 * float(header.stamp.nanosec)


def check_age(stamp: float, now: float, max_age: float, max_skew: float, what: str, stale: bool = True,
              name: str = "") -> None:
    """InputError `<what>-stale` (more than `max_age` s old; only if `stale`) or `<what>-future` (more
    than `max_skew` s ahead of `now`, the clock skew allowed between sender and node).

    `name` says which input in the message (default: `what`).
    """
    age, name = now - stamp, name or what
    if stale and age > max_age:
        raise InputError(f"{what}-stale", f"{name} stamped {age:.1f} s ago, older than max_data_age={max_age}")
    if -age > max_skew:
        raise InputError(f"{what}-future", f"{name} stamped {-age:.3f} s ahead of the node's clock, more than "
                                           f"max_clock_skew={max_skew}")


def check_order(stamp: float, held: float | None, what: str, name: str = "") -> None:
    """InputError `<what>-order` if `stamp` is older than `held`, the stamp of the input held (if any)."""
    if held is not None and stamp < held:
        raise InputError(f"{what}-order", f"{name or what} stamped {held - stamp:.3f} s before the "
                                          f"{'one' if name else what} held (out of order)")


# -- instructions -------------------------------------------------------------------------------
def instruction_text(text: str, max_chars: int) -> str:
    """The instruction of a std_msgs/String `data`; InputError `instruction-utf8`, `-long` or `-empty`."""
    if "\ufffd" in text:  # rclpy decodes invalid UTF-8 with replacement characters
        raise InputError("instruction-utf8", "instruction is not valid UTF-8")
    if len(text) > max_chars:
        raise InputError("instruction-long", f"instruction has {len(text)} characters, more than "
                                             f"max_instruction_chars={max_chars}")
    if not text.strip():
        raise InputError("instruction-empty", "instruction is empty")
    return text


# -- images -------------------------------------------------------------------------------------
def _check_pano_shape(height: int, width: int, max_width: int, where: str, kind: str) -> None:
    if height < 2 or width != 2 * height:
        raise InputError(kind, f"{where} is {width}x{height}: an equirectangular panorama is 2:1")
    if width > max_width:
        raise InputError(kind, f"{where} is {width} px wide, more than max_pano_width={max_width}")


def panorama_from_image(msg: Any, max_width: int) -> np.ndarray:
    """sensor_msgs/Image (rgb8 or bgr8, 2:1, rows `step` bytes apart) -> (H, W, 3) uint8 RGB."""
    if msg.encoding not in PANORAMA_ENCODINGS:
        raise InputError("panorama-encoding", f"panorama encoding {msg.encoding!r} is not one of "
                                              f"{', '.join(PANORAMA_ENCODINGS)}")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    _check_pano_shape(height, width, max_width, "panorama", "panorama-size")
    if step < 3 * width or len(msg.data) != step * height:
        raise InputError("panorama-data", f"panorama data has {len(msg.data)} bytes, step {step}: does not "
                                          f"hold {width}x{height} {msg.encoding} (expected step >= {3 * width} "
                                          f"and step x height bytes)")
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(height, step)        # (H, step)
    pixels = rows[:, : 3 * width].reshape(height, width, 3)                     # (H, W, 3)
    return np.ascontiguousarray(pixels[..., ::-1] if msg.encoding == "bgr8" else pixels)


_PILLOW_LIMIT = threading.Lock()


def compressed_image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header without decoding the pixels; None for anything
    that is not PNG or JPEG; ValueError for a PNG/JPEG whose header is cut off or corrupt.

    Pillow's `Image.open` parses the header only (pixels are decoded on first access, never here);
    its own decompression-bomb refusal is switched off because the caller checks the size."""
    from PIL import Image

    if data[:8] != b"\x89PNG\r\n\x1a\n" and data[:2] != b"\xff\xd8":
        return None
    with _PILLOW_LIMIT:  # the limit is a Pillow global: one header at a time
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as img:
                return img.size
        except Exception as exc:  # Pillow raises several types for a cut-off or corrupt header
            raise ValueError(f"{type(exc).__name__}: {exc}") from None
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def panorama_from_compressed(msg: Any, max_width: int) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG/PNG, 2:1; grey and 16-bit too) -> (H, W, 3) uint8 RGB."""
    import cv2

    if not len(msg.data):
        raise InputError("compressed-data", "compressed panorama is empty")
    if len(msg.data) > 3 * max_width * max_width:
        raise InputError("compressed-size", f"compressed panorama has {len(msg.data)} bytes: too large")
    data = bytes(msg.data)
    try:
        size = compressed_image_size(data)
    except ValueError as exc:
        raise InputError("compressed-data", f"cannot decode the compressed panorama ({msg.format!r}): its header is "
                                            f"cut off or corrupt ({exc})") from None
    if size is None:
        raise InputError("compressed-data", f"compressed panorama ({msg.format!r}) is neither PNG nor JPEG")
    # the header's size is checked before decoding: no decompression bombs
    _check_pano_shape(size[1], size[0], max_width, "compressed panorama", "compressed-size")
    try:  # 8-bit BGR (grey and 16-bit images are converted), then RGB
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_ANYCOLOR)
        pano = None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)                    # (H, W, 3)
    except Exception as exc:  # OpenCV raises several types for corrupt data
        raise InputError("compressed-data", f"cannot decode the compressed panorama ({msg.format!r}): "
                                            f"{type(exc).__name__} {exc}") from None
    if pano is None:
        raise InputError("compressed-data", f"cannot decode the compressed panorama ({msg.format!r})")
    if pano.ndim != 3 or pano.shape[2] != 3 or pano.dtype != np.uint8:
        raise InputError("compressed-data", f"compressed panorama ({msg.format!r}) is not an 8-bit colour image")
    _check_pano_shape(pano.shape[0], pano.shape[1], max_width, "compressed panorama", "compressed-size")
    return np.ascontiguousarray(pano)


def panorama_from_message(msg: Any, max_width: int) -> np.ndarray:
    """An Image (it has `encoding`) or a CompressedImage -> (H, W, 3) uint8 RGB."""
    if hasattr(msg, "encoding"):
        return panorama_from_image(msg, max_width)
    return panorama_from_compressed(msg, max_width)


# -- poses --------------------------------------------------------------------------------------
def yaw_from_quaternion(q: Any) -> float:
    """Yaw (rotation about +z) of a quaternion (x, y, z, w); InputError `pose-nan` if it is no rotation."""
    values = (q.x, q.y, q.z, q.w)
    norm = math.sqrt(sum(v * v for v in values))
    if not all(math.isfinite(v) for v in values) or not math.isfinite(norm) or norm < 1e-6:
        raise InputError("pose-nan", f"orientation {values} is not a finite rotation")
    return yaw_of_unit_quaternion(*(v / norm for v in values))


def heading_from_quaternion(q: Any) -> float:
    """Heading in the core convention (clockwise from +y) of a ROS orientation."""
    return yaw_to_heading(yaw_from_quaternion(q))


def position_of(pose: Any, what: str) -> np.ndarray:
    """(3,) position of a geometry_msgs/Pose; InputError `pose-nan` or `pose-range`."""
    p = np.array([pose.position.x, pose.position.y, pose.position.z], dtype=np.float64)  # (3,)
    if not np.all(np.isfinite(p)):
        raise InputError("pose-nan", f"{what} position {p.tolist()} is not finite")
    if np.abs(p).max() > MAX_COORDINATE:
        raise InputError("pose-range", f"{what} position {p.tolist()} is more than {MAX_COORDINATE:.0e} m "
                                       "from the origin")
    return p


def check_frame(header: Any, frame: str, what: str) -> None:
    """InputError `<what>-frame` unless the header's frame is `frame` (a leading '/' is ignored)."""
    if header.frame_id.lstrip("/") != frame:
        raise InputError(f"{what}-frame", f"{what} is in frame {header.frame_id!r}, expected {frame!r}")


def robot_pose_from_odometry(msg: Any, frame: str) -> tuple[np.ndarray, float]:
    """nav_msgs/Odometry in `frame` -> (position (3,), heading in the core convention)."""
    check_frame(msg.header, frame, "odometry")
    position = position_of(msg.pose.pose, "odometry")
    return position, heading_from_quaternion(msg.pose.pose.orientation)


def waypoints_from_pose_array(msg: Any, frame: str, max_count: int) -> list[np.ndarray]:
    """geometry_msgs/PoseArray in `frame` -> list of (3,) positions (orientations are ignored)."""
    check_frame(msg.header, frame, "waypoints")
    if len(msg.poses) > max_count:
        raise InputError("waypoints-count", f"{len(msg.poses)} waypoints, more than max_waypoints={max_count}")
    return [position_of(p, "waypoint") for p in msg.poses]


def goal_from_pose_stamped(msg: Any, frame: str) -> tuple[np.ndarray, float]:
    """geometry_msgs/PoseStamped goal in `frame` -> (position (3,), heading in the core convention)."""
    check_frame(msg.header, frame, "goal")
    return position_of(msg.pose, "goal"), heading_from_quaternion(msg.pose.orientation)
