"""The robot pose from TF (map -> ... -> base_link) without tf2_ros.

tf2_ros, tf2_py and tf2_msgs have no PyPI wheels for the Kilted runtime this package uses, so the
navigator keeps its own small transform tree: every TransformStamped received on `/tf` and
`/tf_static` sets the transform of its child frame (a frame has one parent, as in tf2; a new
parent replaces the old one), and `TransformTree.lookup(target, source)` composes the chain
through the nearest common ancestor. Only the latest transform of each frame is kept (no time
interpolation): the navigator needs the current pose, and the chain's stamp — the oldest
non-static stamp on it — is checked against `max_data_age` like an odometry stamp.

Bad transforms are refused with an InputError, never stored: non-finite values, a transform
older than the one held for its frame (out of order), a new frame beyond MAX_FRAMES (a flood
of made-up frame ids cannot grow the tree without bound) and, for received messages
(`add_transform`), a parent link that would close a loop or make a chain deeper than MAX_CHAIN.

Message type: where `tf2_msgs` is importable (a ROS 2 installation), `/tf` carries
tf2_msgs/TFMessage as everywhere in ROS; with the PyPI wheels alone it does not exist, and the
topics carry single geometry_msgs/TransformStamped messages instead (`TF_MESSAGE_TYPE`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from minivln_core.frames import quat_multiply, quat_rotate, yaw_of_unit_quaternion
from minivln_core.robot.inputs import InputError, check_order, stamp_seconds

try:  # a real ROS 2 installation
    from tf2_msgs.msg import TFMessage as TF_MESSAGE_TYPE
    HAVE_TF2_MSGS = True
except ImportError:  # PyPI wheels only: no tf2_msgs
    from geometry_msgs.msg import TransformStamped as TF_MESSAGE_TYPE  # noqa: F401
    HAVE_TF2_MSGS = False

MAX_CHAIN = 64     # deeper chains are treated as loops
MAX_FRAMES = 1000  # frames the tree keeps; transforms of further new frames are refused


# -- rigid transforms (translation (3,), quaternion (x, y, z, w)) ---------------------------------
@dataclass(frozen=True)
class Rigid:
    """A rigid transform: p_parent = rotate(rotation, p_child) + translation."""

    translation: np.ndarray  # (3,)
    rotation: np.ndarray     # (4,) unit quaternion x, y, z, w

    @staticmethod
    def identity() -> Rigid:
        return Rigid(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))

    def __mul__(self, other: Rigid) -> Rigid:
        """self * other: first other, then self (parent <- self <- other)."""
        return Rigid(self.translation + quat_rotate(self.rotation, other.translation),
                     quat_multiply(self.rotation, other.rotation))

    def inverse(self) -> Rigid:
        conj = self.rotation * np.array([-1.0, -1.0, -1.0, 1.0])
        return Rigid(-quat_rotate(conj, self.translation), conj)

    def yaw(self) -> float:
        """Rotation about +z (ROS convention, counter-clockwise from +x)."""
        return yaw_of_unit_quaternion(*self.rotation)


@dataclass(frozen=True)
class _Edge:
    parent: str
    transform: Rigid   # child expressed in parent
    stamp: float       # seconds; math.inf for static transforms


def _frame(name: str) -> str:
    return name.lstrip("/")


class TransformTree:
    """Latest transform of every frame to its parent; lookups compose chains through the tree."""

    def __init__(self) -> None:
        self._edges: dict[str, _Edge] = {}

    def __len__(self) -> int:
        return len(self._edges)

    def set(self, parent: str, child: str, translation: Iterable[float], rotation: Iterable[float],
            stamp: float, static: bool = False) -> None:
        """Store the transform of `child` in `parent`; InputError for unusable values."""
        parent, child = _frame(parent), _frame(child)
        if not parent or not child or parent == child:
            raise InputError("tf-frame", f"transform '{parent}' -> '{child}' needs two different frame ids")
        t = np.asarray(list(translation), dtype=np.float64)
        q = np.asarray(list(rotation), dtype=np.float64)
        norm = float(np.linalg.norm(q)) if q.shape == (4,) else 0.0
        if t.shape != (3,) or not np.all(np.isfinite(t)) or not np.all(np.isfinite(q)) or norm < 1e-6:
            raise InputError("tf-nan", f"transform '{parent}' -> '{child}' is not finite: "
                                       f"translation {t.tolist()}, rotation {q.tolist()}")
        held = self._edges.get(child)
        if held is None and len(self._edges) >= MAX_FRAMES:
            raise InputError("tf-frames", f"transform of a new frame '{child}' refused: the tree already holds "
                                          f"{MAX_FRAMES} frames")
        if not static and held is not None and not math.isinf(held.stamp):
            check_order(stamp, held.stamp, "tf", name=f"transform '{parent}' -> '{child}'")
        self._edges[child] = _Edge(parent, Rigid(t, q / norm), math.inf if static else float(stamp))

    def would_loop(self, parent: str, child: str) -> bool:
        """True if making `parent` the parent of `child` closes a loop or a chain deeper than MAX_CHAIN."""
        frame, child = _frame(parent), _frame(child)
        if not frame or not child or frame == child:
            return False  # `set` refuses these with its own reason
        for _ in range(MAX_CHAIN):
            if frame == child:
                return True
            if frame not in self._edges:
                return False
            frame = self._edges[frame].parent
        return True

    def _to_root(self, frame: str) -> list[tuple[str, Rigid, float]]:
        """[(ancestor, transform of `frame` in ancestor, oldest stamp on the way)], `frame` itself first."""
        chain = [(frame, Rigid.identity(), math.inf)]
        while frame in self._edges:
            if len(chain) > MAX_CHAIN:
                raise InputError("tf-loop", f"the TF chain above '{chain[0][0]}' is a loop or deeper than {MAX_CHAIN}")
            edge = self._edges[frame]
            _, acc, stamp = chain[-1]
            chain.append((edge.parent, edge.transform * acc, min(stamp, edge.stamp)))
            frame = edge.parent
        return chain

    def lookup(self, target: str, source: str) -> tuple[Rigid, float]:
        """(pose of `source` in `target`, oldest non-static stamp on the chain or inf).

        LookupError when the two frames are not connected (yet); InputError for a loop.
        """
        target, source = _frame(target), _frame(source)
        up_source = {name: (acc, stamp) for name, acc, stamp in self._to_root(source)}
        for name, acc_target, stamp_target in self._to_root(target):
            if name in up_source:
                acc_source, stamp_source = up_source[name]
                return acc_target.inverse() * acc_source, min(stamp_target, stamp_source)
        raise LookupError(f"TF frames '{target}' and '{source}' are not connected")


def transforms_of(msg: Any) -> list[Any]:
    """The geometry_msgs/TransformStamped messages carried by one TF_MESSAGE_TYPE message."""
    return list(msg.transforms) if hasattr(msg, "transforms") else [msg]


def add_transform(tree: TransformTree, ts: Any, static: bool) -> None:
    """Put one geometry_msgs/TransformStamped into `tree` (InputError for unusable values or a loop)."""
    t, r = ts.transform.translation, ts.transform.rotation
    stamp = stamp_seconds(ts.header)
    if tree.would_loop(ts.header.frame_id, ts.child_frame_id):
        raise InputError("tf-loop", f"transform '{ts.header.frame_id}' -> '{ts.child_frame_id}' would close a loop "
                                    f"or a chain deeper than {MAX_CHAIN} frames")
    tree.set(ts.header.frame_id, ts.child_frame_id, (t.x, t.y, t.z), (r.x, r.y, r.z, r.w), stamp, static)
