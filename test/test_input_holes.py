"""Three input holes of the navigator an outside fuzz client found, closed.

1. A decompression bomb inside the width limit (a ~100 KB PNG or a JPEG header declaring
   8192x4096) was decoded to ~100 MB: the default `max_pano_width` is now 4096 and the size is
   read from the header, so such a file is refused without ever reaching the decoder.
2. A frame id, image encoding or compressed format holding a newline forged log lines: the
   reasons quote them with repr(), like instructions.
3. A stamp slightly ahead of the clock (up to `max_data_age`; a nanosec field of 2^32-1 reads as
   4.3 s ahead) was held, and every real input after it was dropped as out of order: stamps more
   than `max_clock_skew` ahead are refused now.

Each hole is tested on the pure checks (minivln_core.robot.inputs) and on a real NavigatorNode
fed over DDS on loopback, which must drop the bad message with the right reason and still take
a good one (received and not dropped = accepted).
"""

from __future__ import annotations

import math
import struct
import zlib
from functools import cache

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("minivln_interfaces.msg", reason="messages not built: run scripts/build_interfaces.sh")

import cv2  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from geometry_msgs.msg import PoseArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from minivln_core.robot.inputs import (InputError, check_age, panorama_from_compressed,  # noqa: E402
                                     panorama_from_image, stamp_seconds, waypoints_from_pose_array)
from minivln_ros.conversions import image_from_rgb  # noqa: E402
from minivln_ros.params import NavigatorParams  # noqa: E402
from minivln_ros.tf_pose import TF_MESSAGE_TYPE  # noqa: E402

from fixtures_ros import RELIABLE, header, now_seconds, pose_array, spin_until, transform  # noqa: E402

NAMESPACE = "/input_holes"  # other nodes of the session cannot add messages to these topics
FORGED = "\n[ERROR] [navigator]: forged"  # what a sender appends to a name to fake a log line
DEFAULT_WIDTH = NavigatorParams().max_pano_width


# -- bad messages ----------------------------------------------------------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@cache
def png_bomb(width: int, height: int) -> bytes:
    """A complete, valid PNG of black pixels, ~1000x smaller than them (compressed row by row: no big array)."""
    deflate = zlib.compressobj(9)
    row = bytes(1 + 3 * width)  # filter byte + RGB
    idat = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose SOF0 header declares width x height (what libjpeg would allocate for)."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((8, 16, 3), np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")  # marker, length (2), precision (1), height (2), width (2)
    data[sof + 5: sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def good_jpeg(stamp: float) -> CompressedImage:
    """A sim_robot-sized (768x384) panorama as JPEG."""
    pixels = np.random.default_rng(0).integers(0, 256, (384, 768, 3), dtype=np.uint8)
    return CompressedImage(header=header(stamp), format="jpeg", data=cv2.imencode(".jpg", pixels)[1].tobytes())


def good_image(stamp: float) -> Image:
    return image_from_rgb(np.zeros((24, 48, 3), np.uint8), header(stamp))


@pytest.fixture
def decodes(monkeypatch) -> list[int]:
    """Counts cv2.imdecode calls (the checks look it up at call time): a bomb must never get there."""
    calls: list[int] = []
    real = cv2.imdecode

    def counted(buf, flags):
        calls.append(len(buf))
        return real(buf, flags)

    monkeypatch.setattr(cv2, "imdecode", counted)
    return calls


# -- 1. decompression bombs ------------------------------------------------------------------------
@pytest.mark.parametrize("data", [png_bomb(8192, 4096), jpeg_declaring(8192, 4096)], ids=["png", "jpeg"])
def test_a_bomb_within_the_old_limit_is_refused_undecoded(data, decodes) -> None:
    assert len(data) < 120_000  # small: far inside the compressed size limit
    with pytest.raises(InputError) as err:
        panorama_from_compressed(CompressedImage(format="png", data=data), DEFAULT_WIDTH)
    assert err.value.kind == "compressed-size" and f"more than max_pano_width={DEFAULT_WIDTH}" in str(err.value)
    assert decodes == []


def test_the_default_width_keeps_sim_robot_panoramas_with_headroom(decodes) -> None:
    assert 4 * 768 <= DEFAULT_WIDTH <= 4096  # <= 25 MB decoded per message
    assert panorama_from_compressed(good_jpeg(0.0), DEFAULT_WIDTH).shape == (384, 768, 3)
    assert len(decodes) == 1


# -- 2. log injection ------------------------------------------------------------------------------
def _bad_frame():
    return waypoints_from_pose_array(pose_array([np.zeros(3)], 0.0, "odom" + FORGED), "map", 64)


def _bad_encoding():
    msg = good_image(0.0)
    msg.encoding = "mono8" + FORGED
    return panorama_from_image(msg, 4096)


def _bad_format():  # PNG magic, corrupt header: the reason names the format
    return panorama_from_compressed(CompressedImage(format="png" + FORGED, data=b"\x89PNG\r\n\x1a\nxxxx"), 4096)


@pytest.mark.parametrize("convert, kind", [(_bad_frame, "waypoints-frame"), (_bad_encoding, "panorama-encoding"),
                                           (_bad_format, "compressed-data")])
def test_sender_names_in_a_reason_are_quoted(convert, kind) -> None:
    with pytest.raises(InputError) as err:
        convert()
    assert err.value.kind == kind
    assert "\n" not in str(err.value) and repr(FORGED)[1:-1] in str(err.value)


# -- 3. stamps ahead of the clock ------------------------------------------------------------------
def test_a_stamp_ahead_by_more_than_the_skew_is_refused() -> None:
    now = 1000.0
    check_age(now + 0.4, now, 5.0, 0.5, "panorama")  # within the skew: clocks of two machines differ a bit
    with pytest.raises(InputError, match="max_clock_skew=0.5") as err:
        check_age(now + 0.6, now, 5.0, 0.5, "panorama")
    assert err.value.kind == "panorama-future"
    bogus = stamp_seconds(Header(stamp=Time(sec=int(now), nanosec=2**32 - 1)))  # reads as 4.3 s ahead
    with pytest.raises(InputError, match="future|ahead"):
        check_age(bogus, now, 5.0, 0.5, "tf", stale=False)
    with pytest.raises(InputError) as err:
        check_age(now - 6.0, now, 5.0, 0.5, "panorama")
    assert err.value.kind == "panorama-stale"


# -- the real node ---------------------------------------------------------------------------------
class Harness:
    """A NavigatorNode (default limits) and a probe node publishing on its input topics."""

    def __init__(self, context, checkpoint, **params):
        from minivln_ros.navigator_node import NavigatorNode

        self.executor = SingleThreadedExecutor(context=context)
        overrides = [Parameter("checkpoint", value=str(checkpoint)), Parameter("threads", value=1)]
        overrides += [Parameter(name, value=value) for name, value in params.items()]
        self.node = NavigatorNode(context=context, namespace=NAMESPACE, parameter_overrides=overrides)
        self.probe = rclpy.create_node("input_holes_probe", context=context, namespace=NAMESPACE)
        self.executor.add_node(self.node)
        self.executor.add_node(self.probe)
        pose = [("tf", TF_MESSAGE_TYPE, "tf")] if params.get("pose_source") == "tf" else []
        self.pubs = {key: self.probe.create_publisher(kind, topic, RELIABLE) for key, kind, topic in [
            ("panorama", Image, "panorama"), ("compressed_panorama", CompressedImage, "panorama/compressed"),
            ("waypoints", PoseArray, "navigable_waypoints")] + pose}
        assert self.spin(lambda: all(p.get_subscription_count() >= 1 for p in self.pubs.values()), 30)

    def spin(self, predicate, timeout: float = 10.0) -> bool:
        return spin_until(self.executor, predicate, timeout, period=0.02)

    def send(self, topic: str, msg) -> None:
        """Publish and wait until the node has taken the message."""
        taken = sum(self.node.received.values())
        self.pubs[topic].publish(msg)
        assert self.spin(lambda: sum(self.node.received.values()) > taken), f"{topic} never arrived"

    def now(self) -> float:
        return now_seconds(self.probe)

    def close(self) -> None:
        self.executor.remove_node(self.node)
        self.node.destroy_node()
        self.probe.destroy_node()


@pytest.fixture
def harness(online, ros_context, request):
    h = Harness(ros_context, online["checkpoint"], **getattr(request, "param", {}))
    yield h
    h.close()


def test_the_node_refuses_a_bomb_undecoded_and_takes_a_good_panorama(harness, decodes) -> None:
    harness.send("compressed_panorama", CompressedImage(header=header(harness.now()), format="png",
                                                        data=png_bomb(8192, 4096)))
    assert dict(harness.node.dropped) == {"compressed-size": 1} and decodes == []
    harness.send("compressed_panorama", good_jpeg(harness.now()))
    assert harness.node.received["compressed_panorama"] == 2 and sum(harness.node.dropped.values()) == 1
    assert len(decodes) == 1


def test_a_future_stamp_does_not_lock_out_real_panoramas(harness) -> None:
    ahead = good_image(0.0)
    ahead.header.stamp = Time(sec=int(harness.now()), nanosec=2**32 - 1)  # ~4.3 s ahead, < max_data_age
    harness.send("panorama", ahead)
    assert dict(harness.node.dropped) == {"panorama-future": 1}
    harness.send("panorama", good_image(harness.now()))  # was dropped as out of order while the bad one was held
    assert harness.node.received["panorama"] == 2 and sum(harness.node.dropped.values()) == 1


@pytest.mark.parametrize("harness", [{"pose_source": "tf", "tf_topic": "tf"}], indirect=True)
def test_names_from_a_sender_cannot_forge_log_lines(harness, capfd) -> None:
    capfd.readouterr()
    now = harness.now()
    bad_image = good_image(now)
    bad_image.encoding = "mono8" + FORGED
    harness.send("panorama", bad_image)
    harness.send("compressed_panorama", CompressedImage(header=header(now), format="png" + FORGED,
                                                        data=b"\x89PNG\r\n\x1a\nxxxx"))
    harness.send("waypoints", pose_array([np.zeros(3)], now, "odom" + FORGED))
    # tf_pose.py's reasons name frames unquoted: the node quotes such a reason as a whole
    harness.send("tf", transform("odom", "base_link" + FORGED, [math.nan, 0, 0], 0.0, now))
    kinds = {"panorama-encoding", "compressed-data", "waypoints-frame", "tf-nan"}
    assert set(harness.node.dropped) == kinds
    harness.send("panorama", good_image(harness.now()))  # still taken
    assert sum(harness.node.dropped.values()) == len(kinds)
    log = capfd.readouterr().err.splitlines()
    assert sum("dropped input [" in line for line in log) == len(kinds), log
    assert not [line for line in log if "forged" in line and "dropped input [" not in line], log
