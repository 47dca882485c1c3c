"""minivln_ros.tf_pose: composing map -> ... -> base_link without tf2_ros."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("geometry_msgs.msg")

from minivln_ros.conversions import InputError  # noqa: E402
from minivln_core.frames import quat_rotate  # noqa: E402
from minivln_ros.tf_pose import Rigid, TransformTree  # noqa: E402


def yaw_q(yaw: float) -> tuple[float, float, float, float]:
    return (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))


def test_chain_composes_translations_and_yaws() -> None:
    tree = TransformTree()
    tree.set("map", "odom", (1.0, 2.0, 0.0), yaw_q(math.pi / 2), stamp=0.0, static=True)
    tree.set("odom", "base_link", (1.0, 0.0, 0.5), yaw_q(math.pi / 4), stamp=10.0)
    pose, stamp = tree.lookup("map", "base_link")
    # odom's +x is map's +y: base_link sits at (1, 2 + 1, 0.5), facing 90 + 45 degrees
    assert np.allclose(pose.translation, [1.0, 3.0, 0.5])
    assert pose.yaw() == pytest.approx(3 * math.pi / 4)
    assert stamp == 10.0  # the oldest non-static stamp on the chain
    inverse, _ = tree.lookup("base_link", "map")
    assert np.allclose((inverse * pose).translation, 0.0, atol=1e-12)


def test_lookup_through_a_common_ancestor_and_leading_slashes() -> None:
    tree = TransformTree()
    tree.set("/map", "odom", (1.0, 0.0, 0.0), yaw_q(0.0), stamp=1.0)
    tree.set("map", "dock", (0.0, 5.0, 0.0), yaw_q(0.0), stamp=2.0)
    tree.set("odom", "base_link", (0.0, 1.0, 0.0), yaw_q(0.0), stamp=3.0)
    pose, stamp = tree.lookup("dock", "/base_link")
    assert np.allclose(pose.translation, [1.0, -4.0, 0.0]) and stamp == 1.0


def test_static_only_chain_has_infinite_stamp_and_reparenting_replaces() -> None:
    tree = TransformTree()
    tree.set("map", "base_link", (1.0, 0.0, 0.0), yaw_q(0.0), stamp=5.0, static=True)
    assert math.isinf(tree.lookup("map", "base_link")[1])
    tree.set("odom", "base_link", (0.0, 0.0, 0.0), yaw_q(0.0), stamp=6.0)  # base_link moves under odom
    with pytest.raises(LookupError):
        tree.lookup("map", "base_link")


def test_bad_transforms_raise_input_errors() -> None:
    tree = TransformTree()
    with pytest.raises(InputError) as err:
        tree.set("map", "odom", (math.nan, 0.0, 0.0), yaw_q(0.0), stamp=0.0)
    assert err.value.kind == "tf-nan"
    with pytest.raises(InputError) as err:
        tree.set("map", "odom", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0), stamp=0.0)
    assert err.value.kind == "tf-nan"
    with pytest.raises(InputError) as err:
        tree.set("map", "/map", (0.0, 0.0, 0.0), yaw_q(0.0), stamp=0.0)
    assert err.value.kind == "tf-frame"
    tree.set("a", "b", (0.0, 0.0, 0.0), yaw_q(0.0), stamp=0.0)
    tree.set("b", "a", (0.0, 0.0, 0.0), yaw_q(0.0), stamp=0.0)
    with pytest.raises(InputError) as err:
        tree.lookup("map", "a")
    assert err.value.kind == "tf-loop"


def test_rigid_matches_rotation_matrices() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        q1, q2 = (q / np.linalg.norm(q) for q in rng.normal(size=(2, 4)))
        a, b = Rigid(rng.normal(size=3), q1), Rigid(rng.normal(size=3), q2)
        v = rng.normal(size=3)
        ab = a * b
        expected = quat_rotate(a.rotation, quat_rotate(b.rotation, v) + b.translation) + a.translation
        assert np.allclose(quat_rotate(ab.rotation, v) + ab.translation, expected)
        back = a.inverse() * a
        assert np.allclose(back.translation, 0.0, atol=1e-12) and abs(abs(back.rotation[3]) - 1.0) < 1e-12
