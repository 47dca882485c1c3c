"""Frames and view geometry: the one place for angle conventions, the 36-view grid and rotations.

Conventions (Matterport3D simulator, used everywhere in the project):

* positions are metres in the map frame (x east, y north, z up: the Matterport world frame);
* angles are radians; the heading of a vector (dx, dy, dz) is ``atan2(dx, dy)`` (clockwise from
  +y) and its elevation ``atan2(dz, hypot(dx, dy))``; relative angles are wrapped to (-pi, pi];
* ROS yaw is counter-clockwise from +x, so ``heading = pi/2 - yaw`` (`yaw_to_heading`,
  `heading_to_yaw`); quaternions are (x, y, z, w) as in ROS messages;
* view ``ix = 12 * row + col`` has absolute heading ``col * 30 deg`` and elevation
  ``(row - 1) * 30 deg``;
* a neighbour is navigable from a view if its heading is within +-HFOV/2 = 40 deg of the view
  heading (elevation ignored) and is assigned to the view that minimises the angular offset
  ``sqrt(rel_heading**2 + rel_elevation**2)`` (`env.candidates`).

Depends on numpy only: env, agent, perception, the robot layer, replay and the ROS nodes import it.
"""

from __future__ import annotations

import math

import numpy as np

NUM_VIEWS = 36
VIEWS_PER_ROW = 12
VIEW_STEP = math.radians(30.0)
HALF_HFOV = math.radians(40.0)

_VIEW_IDS = np.arange(NUM_VIEWS)
VIEW_HEADINGS: np.ndarray = (_VIEW_IDS % VIEWS_PER_ROW) * VIEW_STEP          # (36,) radians in [0, 2pi)
VIEW_ELEVATIONS: np.ndarray = (_VIEW_IDS // VIEWS_PER_ROW - 1) * VIEW_STEP   # (36,) -30, 0, +30 deg
VIEW_HEADINGS.setflags(write=False)
VIEW_ELEVATIONS.setflags(write=False)


def _check_view(ix: int) -> int:
    if not 0 <= int(ix) < NUM_VIEWS:
        raise ValueError(f"view index {ix} is outside 0..{NUM_VIEWS - 1}")
    return int(ix)


def view_heading(ix: int) -> float:
    """Absolute heading (radians) of the centre of view `ix`."""
    return float(VIEW_HEADINGS[_check_view(ix)])


def view_elevation(ix: int) -> float:
    """Absolute elevation (radians) of the centre of view `ix`."""
    return float(VIEW_ELEVATIONS[_check_view(ix)])


def wrap_angle(angle: np.ndarray | float) -> np.ndarray | float:
    """Wrap angles (radians, any shape) into (-pi, pi]; floats in, float out."""
    wrapped = np.asarray(angle, dtype=np.float64)
    wrapped = wrapped - 2.0 * np.pi * np.ceil((wrapped - np.pi) / (2.0 * np.pi))
    return float(wrapped) if wrapped.ndim == 0 else wrapped


def heading_elevation(vec: np.ndarray) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Heading and elevation of vectors `vec` (..., 3); a zero vector gives (0, 0)."""
    vec = np.asarray(vec, dtype=np.float64)
    if vec.shape[-1:] != (3,):
        raise ValueError(f"expected vectors of shape (..., 3), got {vec.shape}")
    dx, dy, dz = vec[..., 0], vec[..., 1], vec[..., 2]
    heading = np.arctan2(dx, dy)
    elevation = np.arctan2(dz, np.hypot(dx, dy))
    if vec.ndim == 1:
        return float(heading), float(elevation)
    return heading, elevation


def angle_features(rel_heading: np.ndarray | float, rel_elevation: np.ndarray | float) -> np.ndarray:
    """[sin dh, cos dh, sin de, cos de] for broadcastable angle arrays -> (..., 4) float32."""
    h, e = np.broadcast_arrays(np.asarray(rel_heading, dtype=np.float64),
                               np.asarray(rel_elevation, dtype=np.float64))
    return np.stack([np.sin(h), np.cos(h), np.sin(e), np.cos(e)], axis=-1).astype(np.float32)


def view_angle_features(heading: float, elevation: float = 0.0) -> np.ndarray:
    """Angle features of the 36 view centres relative to an agent pose -> (36, 4) float32."""
    return angle_features(VIEW_HEADINGS - heading, VIEW_ELEVATIONS - elevation)


def view_offsets(heading: np.ndarray, elevation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets of directions (K,) to every view centre: rel_h, rel_e, angular distance, each (K, 36)."""
    rel_h = wrap_angle(heading[:, None] - VIEW_HEADINGS[None, :])  # (K, 36)
    rel_e = elevation[:, None] - VIEW_ELEVATIONS[None, :]          # (K, 36)
    return rel_h, rel_e, np.hypot(rel_h, rel_e)


def nearest_view_index(heading: float, elevation: float = 0.0) -> int:
    """Index of the view whose centre is angularly closest to (heading, elevation)."""
    _, _, dist = view_offsets(np.array([heading], dtype=np.float64), np.array([elevation], dtype=np.float64))
    return int(np.argmin(dist[0]))


# -- ROS yaw <-> project heading ------------------------------------------------------------------
def yaw_to_heading(yaw: float) -> float:
    """ROS yaw (counter-clockwise from +x) -> project heading (clockwise from +y), in (-pi, pi]."""
    return float(wrap_angle(math.pi / 2.0 - yaw))


def heading_to_yaw(heading: float) -> float:
    """Project heading (clockwise from +y) -> ROS yaw (counter-clockwise from +x), in (-pi, pi]."""
    return float(wrap_angle(math.pi / 2.0 - heading))


def snap_heading(heading: float) -> float:
    """Heading rounded to the 30-degree view grid, in [0, 2pi) (the training env's headings)."""
    col = int(round(float(heading) / VIEW_STEP)) % VIEWS_PER_ROW
    return float(VIEW_HEADINGS[col])


# -- quaternions (x, y, z, w) -------------------------------------------------------------------
def quaternion_from_yaw(yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of the rotation about +z by `yaw` radians."""
    return 0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0)


def yaw_of_unit_quaternion(x: float, y: float, z: float, w: float) -> float:
    """Yaw (rotation about +z) of a unit quaternion."""
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b of (x, y, z, w) quaternions."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz])


def quat_rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate the vector v (3,) by the unit quaternion q (4,)."""
    u, w = q[:3], q[3]
    t = 2.0 * np.cross(u, v)
    return v + w * t + np.cross(u, t)
