"""The navigator node under fuzz: >= 10,000 valid and invalid messages on every subscribed topic, then a clean episode.

The REAL `NavigatorNode` runs in this process on a single-threaded executor with real DDS
publishers. A seeded generator mixes valid messages with every kind of bad one (wrong encodings,
sizes and steps, zero-size, declared-huge and really huge images, PNG decompression bombs,
truncated JPEGs, NaN/inf/out-of-range poses, empty, 100 kB and invalid-UTF-8 instructions,
waypoints and frame ids in unknown frames, stale, future and out-of-order stamps, TF loops and a
flood of made-up TF frames). The generator is also the oracle: it knows, for each message, the
reason the node must give, so the test checks that every invalid message is counted once under
exactly that reason and logged once (`dropped input [kind]`), that no traceback or unexpected
exception appears in the log, that bursts do not queue work, and that a clean episode afterwards
gives exactly the goals of the offline rollout.

Messages are published in chunks no larger than the node's queue and the test spins until the
node has taken each chunk (`NavigatorNode.received`), so no message is lost and the accounting
is exact; the burst phase then publishes without waiting, as a flooding robot would. Other test
sessions on the machine use other ROS domains (conftest.py); within the session the node and the
probe live in a namespace of their own, so nodes of other tests cannot add messages either.

The replay of bags runs the same checks (`minivln_core.robot.inputs`) on rosbags messages: the
fuzzed messages, serialized and decoded by rosbags as a bag holds them, get the same verdicts.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("minivln_interfaces.msg", reason="messages not built: run scripts/build_interfaces.sh")

import cv2  # noqa: E402
from geometry_msgs.msg import PoseArray, PoseStamped  # noqa: E402
from minivln_interfaces.msg import NavigatorStatus  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.logging import LoggingSeverity  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from minivln_core.frames import heading_to_yaw  # noqa: E402
from minivln_core.robot.inputs import (InputError, instruction_text, panorama_from_compressed,  # noqa: E402
                                     panorama_from_image, robot_pose_from_odometry, waypoints_from_pose_array)
from minivln_ros.conversions import image_from_rgb  # noqa: E402
from minivln_core.sim.world_robot import SimWorld  # noqa: E402
from minivln_ros.tf_pose import MAX_FRAMES, TF_MESSAGE_TYPE  # noqa: E402

from fixtures_online import MAX_STEPS, SPLIT, offline_goals  # noqa: E402
from fixtures_ros import (LATCHED, follow_goals, header, now_seconds, odometry, place_messages,  # noqa: E402
                          pose_array, spin_until, transform)

N_MESSAGES = 10_000
DEPTH = 200            # the node's qos_depth in this test; chunks never exceed it
CHUNK = 100
MAX_WIDTH = 1024       # max_pano_width (the clean episode's panoramas are 768 wide)
MAX_CHARS = 2000       # max_instruction_chars
MAX_WAYPOINTS = 64
MAX_AGE = 5.0          # max_data_age
FAR = np.array([500.0, 500.0, 0.0])  # fuzzed valid poses live far from the world's viewpoints
WORDS = "walk past the sofa turn left stop at door kitchen stairs go up wait near table".split()
DROP_LINE = re.compile(r"\[[\w.]*navigator\]: dropped input \[([\w-]+)\]")
SUMMARY_LINE = re.compile(r"\[[\w.]*navigator\]: dropped (\d+) inputs in the last")


def corrupt_utf8(msg, marker: bytes, rng: np.random.Generator) -> bytes:
    """The message serialized with the bytes of `marker` (inside one string field) made invalid UTF-8."""
    raw = bytearray(serialize_message(msg))
    at = bytes(raw).index(marker)
    bad = [0xFF, 0xFE, 0xC0, 0x80, 0xED]
    for k in range(len(marker)):
        raw[at + k] = bad[int(rng.integers(len(bad)))]
    return bytes(raw)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header announces width x height pixels but which holds almost no data (a bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


class Fuzzer:
    """Seeded messages for every subscribed topic, each with the drop reason the node must give (None = valid).

    It tracks what the node holds (stamps of the latest accepted inputs, TF frames) with the
    node's own rules, which makes it the oracle of the exact drop counts.
    """

    def __init__(self, seed: int, clock, pose_source: str):
        self.rng = np.random.default_rng(seed)
        self.clock = clock
        self.pose_source = pose_source
        self.held: dict[str, float] = {}           # slot -> stamp of the accepted input
        self.frames = {"odom", "base_link"}        # TF child frames the node holds (after `tf_setup`)
        self.junk = 0
        self.last = 0.0
        self.pano_topic = "panorama"  # raw and compressed panoramas share one slot in the node: see `draw`

    # -- time ------------------------------------------------------------------------------------
    def now(self) -> float:
        """A fresh stamp, strictly increasing."""
        self.last = max(self.clock.now().nanoseconds * 1e-9, self.last + 1e-6)
        return self.last

    def stamp_case(self, slot: str, what: str) -> tuple[float, str | None]:
        """A stamp and its expected problem: mostly fresh, else stale, future or out of order."""
        r = self.rng.random()
        if r < 0.05:
            return self.now() - 30.0 - 1000 * self.rng.random(), f"{what}-stale"
        if r < 0.07:
            return 0.0, f"{what}-stale"
        if r < 0.11:
            return self.now() + 30.0 + 1e6 * self.rng.random(), f"{what}-future"
        held = self.held.get(slot)
        if r < 0.16 and held is not None and self.now() - held < 2.0:
            return held - 0.3, f"{what}-order"
        return self.now(), None

    def accept(self, slot: str, stamp: float, kind: str | None) -> str | None:
        if kind is None:
            self.held[slot] = stamp
        return kind

    def position(self) -> np.ndarray:
        return FAR + self.rng.uniform([-20, -20, 0], [20, 20, 3])

    # -- topics ------------------------------------------------------------------------------------
    def instruction(self):
        r = self.rng.random()
        if r < 0.3:
            words = self.rng.choice(WORDS, size=int(self.rng.integers(1, 30)))
            return String(data=" ".join(words)), None
        if r < 0.45:
            return String(data=str(self.rng.choice(["", " ", "\n\t  ", "\u3000"]))), "instruction-empty"
        if r < 0.6:
            size = 100_000 if self.rng.random() < 0.2 else int(self.rng.integers(MAX_CHARS + 1, 5 * MAX_CHARS))
            return String(data="go " * (size // 3) + "x" * (size % 3)), "instruction-long"
        if r < 0.75:
            return String(data="\ufffd" + "stop"), "instruction-utf8"  # what rclpy makes of bad bytes
        n = int(self.rng.integers(4, 60))
        return corrupt_utf8(String(data="walk " + "Q" * n), b"Q" * n, self.rng), "instruction-utf8"

    def panorama(self):
        rng = self.rng
        height = int(rng.choice([2, 6, 12, 24, 48]))
        pixels = rng.integers(0, 256, (height, 2 * height, 3), dtype=np.uint8)
        r = rng.random()
        stamp, kind = self.stamp_case("pano", "panorama")
        msg = image_from_rgb(pixels, header(stamp))
        if r < 0.3:
            if rng.random() < 0.5:
                msg.encoding = "bgr8"
            if rng.random() < 0.3:  # padded rows
                pad = int(rng.integers(1, 9))
                rows = np.concatenate([pixels.reshape(height, -1), np.zeros((height, pad), np.uint8)], axis=1)
                msg.step, msg.data = msg.step + pad, rows.tobytes()
            return msg, self.accept("pano", stamp, kind)
        stamp = self.now()
        msg.header = header(stamp)
        if r < 0.4:
            msg.encoding = str(rng.choice(["mono8", "rgba8", "16UC3", "", "jpeg", "rgb8 "]))
            return msg, "panorama-encoding"
        if r < 0.55:
            choice = int(rng.integers(4))
            if choice == 0:
                msg.height, msg.width, msg.step, msg.data = 0, 0, 0, b""
            elif choice == 1:
                msg.height, msg.width = 50_000, 100_000    # declared huge, tiny data
            elif choice == 2:
                msg.width = 2 * msg.height + 2             # not 2:1
            else:                                          # really huge: 2048 x 1024, 6 MB
                msg = image_from_rgb(np.zeros((1024, 2048, 3), np.uint8), header(stamp))
            return msg, "panorama-size"
        choice = int(rng.integers(3))
        if choice == 0:
            msg.data = bytes(msg.data)[: len(msg.data) // 2]
        elif choice == 1:
            msg.data = bytes(msg.data) + b"\0" * 7
        else:
            msg.step = 3 * msg.width - 1
        return msg, "panorama-data"

    def compressed_panorama(self):
        rng = self.rng
        height = int(rng.choice([6, 12, 24]))
        pixels = rng.integers(0, 256, (height, 2 * height, 3), dtype=np.uint8)
        ext = str(rng.choice([".jpg", ".png"]))
        data = cv2.imencode(ext, pixels)[1].tobytes()
        r = rng.random()
        if r < 0.4:
            stamp, kind = self.stamp_case("pano", "panorama")
            if rng.random() < 0.2:  # greyscale and 16-bit PNGs decode to colour too
                data = cv2.imencode(".png", pixels[..., 0] if rng.random() < 0.5 else pixels.astype(np.uint16))[1]
                data = data.tobytes()
            msg = CompressedImage(header=header(stamp), format=ext[1:], data=data)
            return msg, self.accept("pano", stamp, kind)
        msg = CompressedImage(header=header(self.now()), format=ext[1:])
        choice = int(rng.integers(6))
        if choice == 0:
            msg.data = b""
        elif choice == 1:
            msg.data = bytes(rng.integers(0, 256, int(rng.integers(1, 2000)), dtype=np.uint8))
        elif choice == 2:
            msg.data = data[: max(len(data) // 2, 40)]  # cut after the header: nothing to decode
        elif choice == 3:
            msg.data = png_header_only(40_000, 20_000)   # decompression bomb
            return msg, "compressed-size"
        elif choice == 4:
            msg.data = cv2.imencode(ext, np.zeros((height, height, 3), np.uint8))[1].tobytes()  # square
            return msg, "compressed-size"
        else:
            msg.data = png_header_only(2 * height, height)  # announces a valid size, holds no image
        return msg, "compressed-data"

    def waypoints(self):
        rng = self.rng
        positions = [self.position() for _ in range(int(rng.integers(0, 7)))]
        r = rng.random()
        if r < 0.45:
            stamp, kind = self.stamp_case("waypoints", "waypoints")
            return pose_array(positions, stamp), self.accept("waypoints", stamp, kind)
        stamp = self.now()
        if r < 0.6:
            frame = str(rng.choice(["odom", "", "base_link", "/odom", "unknown_frame_42", "map2"]))
            return pose_array(positions, stamp, frame), "waypoints-frame"
        if r < 0.65:
            raw = corrupt_utf8(pose_array(positions, stamp, "mapQQ"), b"QQ", rng)
            return raw, "waypoints-frame"
        if r < 0.78:
            positions.append(np.array([rng.choice([math.nan, math.inf, -math.inf]), 0.0, 1.0]))
            return pose_array(positions, stamp), "pose-nan"
        if r < 0.88:
            positions.append(np.array([0.0, float(rng.choice([1e7, -1e300, 1.7e308])), 1.0]))
            return pose_array(positions, stamp), "pose-range"
        many = [self.position() for _ in range(int(rng.integers(MAX_WAYPOINTS + 1, 4 * MAX_WAYPOINTS)))]
        return pose_array(many, stamp), "waypoints-count"

    def odom(self):
        rng = self.rng
        r = rng.random()
        if r < 0.5:
            stamp, kind = self.stamp_case("pose", "odometry")
            msg = odometry(self.position(), rng.uniform(-math.pi, math.pi), stamp)
            return msg, self.accept("pose", stamp, kind)
        stamp = self.now()
        if r < 0.62:
            return odometry(self.position(), 0.0, stamp, str(rng.choice(["odom", "", "world"]))), "odometry-frame"
        if r < 0.8:
            bad = [(math.nan, 0, 0, 1), (0, 0, 0, 0), (math.inf, 0, 0, 1), (1e300, 1e300, 0, 0)]
            if rng.random() < 0.5:
                return odometry(self.position(), 0.0, stamp, quat=bad[int(rng.integers(len(bad)))]), "pose-nan"
            return odometry([math.nan, 1.0, 0.0], 0.0, stamp), "pose-nan"
        return odometry([2e6, 0.0, 0.0], 0.0, stamp), "pose-range"

    def tf(self):
        rng = self.rng
        r = rng.random()
        if r < 0.35:
            stamp, kind = self.stamp_case("tf", "tf")
            if kind == "tf-stale":  # old transforms are not refused as stale, only as older than the one held
                kind = "tf-order" if stamp < self.held["tf"] else None
            msg = transform("odom", "base_link", self.position(), rng.uniform(-3, 3), stamp)
            return msg, self.accept("tf", stamp, kind)
        stamp = self.now()
        if r < 0.45:
            return transform("odom", "base_link", [math.nan, 0, 0], 0.0, stamp), "tf-nan"
        if r < 0.52:
            parent, child = [("map", "map"), ("", "x"), ("odom", "/odom"), ("a", "")][int(rng.integers(4))]
            return transform(parent, child, [0, 0, 0], 0.0, stamp), "tf-frame"
        if r < 0.6:
            return transform(str(rng.choice(["base_link", "/base_link"])), "odom", [0, 0, 0], 0.0, stamp), "tf-loop"
        self.junk += 1
        child = f"junk_{self.junk}_" + "f" * int(rng.integers(0, 100))
        if len(self.frames) >= MAX_FRAMES:
            return transform("map", child, [1, 0, 0], 0.0, stamp), "tf-frames"
        self.frames.add(child)
        return transform("map", child, [1, 0, 0], 0.0, stamp), None

    def tf_static(self):
        if self.rng.random() < 0.6:
            return transform("map", "odom", self.rng.uniform(-1, 1, 3), self.rng.uniform(-3, 3), self.now()), None
        return transform("map", "odom", [0, math.inf, 0], 0.0, self.now()), "tf-nan"

    def draw(self) -> tuple[str, object, str | None]:
        topics = ["instruction", "panorama", "compressed_panorama", "waypoints"]
        weights = [0.08, 0.22, 0.15, 0.25]
        if self.pose_source == "odom":
            topics, weights = topics + ["odom"], weights + [0.30]
        else:
            topics, weights = topics + ["tf", "tf_static"], weights + [0.27, 0.03]
        topic = str(self.rng.choice(topics, p=np.array(weights) / sum(weights)))
        if topic in ("panorama", "compressed_panorama"):
            # DDS orders messages per topic only; both panorama topics fill one slot, so within a
            # chunk only one of them is used and the oracle knows which stamp the node holds
            topic = self.pano_topic
        msg, kind = getattr(self, topic)()
        return topic, msg, kind


RELIABLE = QoSProfile(depth=DEPTH, reliability=ReliabilityPolicy.RELIABLE)
STATIC = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
TYPES = {"instruction": String, "panorama": Image, "compressed_panorama": CompressedImage, "waypoints": PoseArray,
         "odom": Odometry, "tf": TF_MESSAGE_TYPE, "tf_static": TF_MESSAGE_TYPE}
NAMES = {"instruction": "instruction", "panorama": "panorama", "compressed_panorama": "panorama/compressed",
         "waypoints": "navigable_waypoints", "odom": "odom", "tf": "tf", "tf_static": "tf_static"}
NAMESPACE = "/fuzz"  # nodes of other tests of the session (say, a sim_robot still shutting down) cannot add messages


class Harness:
    """The node under test, a probe node with one publisher per topic, and the status / goal feed."""

    def __init__(self, context, checkpoint: Path, pose_source: str):
        from minivln_ros.navigator_node import NavigatorNode

        self.executor = SingleThreadedExecutor(context=context)
        self.node = NavigatorNode(context=context, namespace=NAMESPACE, parameter_overrides=[
            Parameter("checkpoint", value=str(checkpoint)), Parameter("max_steps", value=MAX_STEPS),
            Parameter("pose_source", value=pose_source), Parameter("qos_depth", value=DEPTH),
            Parameter("max_pano_width", value=MAX_WIDTH), Parameter("max_instruction_chars", value=MAX_CHARS),
            Parameter("max_waypoints", value=MAX_WAYPOINTS), Parameter("max_data_age", value=MAX_AGE),
            Parameter("goal_timeout", value=2.0), Parameter("drop_report_period", value=1.0),
            Parameter("threads", value=1),
            Parameter("feature_cache_size", value=64), Parameter("tf_topic", value="tf"),
            Parameter("tf_static_topic", value="tf_static")])
        self.node.get_logger().set_level(LoggingSeverity.DEBUG)  # one line per dropped message
        self.probe = rclpy.create_node("fuzzer", context=context, namespace=NAMESPACE)
        self.executor.add_node(self.node)
        self.executor.add_node(self.probe)
        topics = ["instruction", "panorama", "compressed_panorama", "waypoints"]
        topics += ["odom"] if pose_source == "odom" else ["tf", "tf_static"]
        self.pubs = {t: self.probe.create_publisher(TYPES[t], NAMES[t], STATIC if t == "tf_static" else RELIABLE)
                     for t in topics}
        self.statuses: list[NavigatorStatus] = []
        self.goals: list[PoseStamped] = []
        self.probe.create_subscription(NavigatorStatus, "navigator_status", self.statuses.append, LATCHED)
        self.probe.create_subscription(PoseStamped, "goal_pose", self.goals.append, RELIABLE)
        assert self.spin(lambda: all(p.get_subscription_count() >= 1 for p in self.pubs.values())
                         and self.statuses, 30), "the node's subscriptions did not match"

    def spin(self, predicate, timeout: float) -> bool:
        return spin_until(self.executor, predicate, timeout, period=0.02)

    def taken(self) -> int:
        return sum(self.node.received.values())

    def close(self) -> None:
        self.executor.remove_node(self.node)
        self.node.destroy_node()
        self.probe.destroy_node()


def drive_clean_episode(h: Harness, world: SimWorld, pose_source: str, text: str, timeout: float = 60.0):
    """Play one episode of `world` like a robot: observations at each place, travel on each goal."""
    episode_id = h.statuses[-1].episode_id + 1

    def publish_place() -> None:
        now = now_seconds(h.probe)
        odom, waypoints, pano = place_messages(world, now)
        if pose_source == "odom":
            h.pubs["odom"].publish(odom)
        else:
            h.pubs["tf_static"].publish(transform("map", "odom", [0, 0, 0], 0.0, now))
            h.pubs["tf"].publish(transform("odom", "base_link", world.position(), heading_to_yaw(world.heading()), now))
        h.pubs["waypoints"].publish(waypoints)
        h.pubs["panorama"].publish(pano)

    def finished() -> bool:
        return h.statuses[-1].episode_id == episode_id and h.statuses[-1].state_name in ("arrived", "failed")

    publish_place()
    h.spin(lambda: False, 0.3)
    seen = len(h.goals)
    h.pubs["instruction"].publish(String(data=text))
    follow_goals(h.spin, world, h.goals, seen, finished, publish_place, timeout)
    return h.statuses[-1], h.goals[seen:]


@pytest.mark.parametrize("pose_source", ["odom", "tf"])
def test_fuzzed_inputs_then_a_clean_episode(online, ros_context, capfd, pose_source) -> None:
    h = Harness(ros_context, online["checkpoint"], pose_source)
    fuzz = Fuzzer(seed=9 if pose_source == "odom" else 10, clock=h.probe.get_clock(), pose_source=pose_source)
    expected: Counter[str] = Counter()
    published: Counter[str] = Counter()
    started = time.monotonic()
    try:
        capfd.readouterr()
        if pose_source == "tf":  # the frames the fuzzer's valid transforms hang below
            h.pubs["tf_static"].publish(transform("map", "odom", [0, 0, 0], 0.0, fuzz.now()))
            h.pubs["tf"].publish(transform("odom", "base_link", fuzz.position(), 0.0, fuzz.now()))
            published.update(["tf_static", "tf"])
            fuzz.held["tf"] = fuzz.last
        sent = len(published)
        while sent < N_MESSAGES:
            fuzz.pano_topic = str(fuzz.rng.choice(["panorama", "compressed_panorama"]))
            for _ in range(CHUNK):
                topic, msg, kind = fuzz.draw()
                h.pubs[topic].publish(msg)
                published[topic] += 1
                if kind is not None:
                    expected[kind] += 1
            sent += CHUNK
            total = sum(published.values())
            assert h.spin(lambda: h.taken() == total, 60), (h.node.received, published)
        fuzz_seconds = time.monotonic() - started
        assert h.node.received == published          # nothing lost: the accounting below is exact
        assert h.node.dropped == expected, sorted((expected - h.node.dropped) + (h.node.dropped - expected))
        assert set(h.node.warned.values()) == {1} and set(h.node.warned) == set(expected)
        kinds = {k.split("-")[0] for k in expected}
        assert {"instruction", "panorama", "compressed", "waypoints", "pose"} <= kinds
        if pose_source == "tf":
            assert {"tf-nan", "tf-frame", "tf-loop", "tf-frames", "tf-order", "tf-future"} <= set(expected)
        else:
            assert {"odometry-frame", "odometry-order", "odometry-future", "pose-range"} <= set(expected)
        assert {"panorama-stale", "panorama-future", "panorama-order", "waypoints-order"} <= set(expected)

        # bursts: observations far faster than decisions; only the latest is kept, one decision runs
        h.spin(lambda: False, 1.2)  # the drop summary of the last period
        h.pubs["instruction"].publish(String(data="walk to the kitchen and wait"))
        # generous: returns as soon as the status arrives; a loaded CI machine took over 10 s here
        assert h.spin(lambda: h.statuses[-1].state_name == "navigating" and h.statuses[-1].step == 0, 60), \
            h.statuses[-1]
        before = Counter(h.node.received)
        place, burst = fuzz.position(), 1500
        for _ in range(burst):
            now = fuzz.now()
            if pose_source == "odom":
                h.pubs["odom"].publish(odometry(place, 0.0, now))
            else:
                h.pubs["tf"].publish(transform("odom", "base_link", place, 0.0, now))
            h.pubs["waypoints"].publish(pose_array([place + [1.0, 0.0, 0.0]], now))
        h.pubs["panorama"].publish(image_from_rgb(np.zeros((24, 48, 3), np.uint8), header(fuzz.now())))
        h.spin(lambda: h.statuses[-1].step == 1, 60)  # the one decision (slow on a loaded machine)
        h.spin(lambda: False, 0.5)  # anything queued behind it is taken now
        taken = (h.node.received - before)["waypoints"]
        assert taken <= DEPTH + 50, f"{taken} of a {burst}-message burst were queued"
        assert h.statuses[-1].step == 1 and len(h.node.dropped) == len(expected)  # one decision, no new drops
        assert h.node.dropped == expected

        # the node is intact: a clean episode gives exactly the offline rollout's goals
        world = SimWorld(online["world"], split=SPLIT)
        world.start(world.episodes[0])
        final, goals = drive_clean_episode(h, world, pose_source, world.current.episode.instruction)
        expected_goals = offline_goals(online["world"], online["checkpoint"], 0)["goals"]
        assert final.state_name == "arrived", final.message
        assert world.current.goals == expected_goals and len(goals) == len(expected_goals)
        assert h.node.navigator.extractor.cache.size == 64 and len(h.node.navigator.extractor.cache) <= 64
        assert len(h.node.navigator.places) <= 64 + MAX_STEPS * (1 + MAX_WAYPOINTS)
        h.spin(lambda: False, 1.2)
    finally:
        h.close()
    log = capfd.readouterr()
    text = log.out + log.err
    logged = Counter(DROP_LINE.findall(text))
    assert logged == expected, "each invalid message is logged once with its reason"
    summed = sum(int(n) for n in SUMMARY_LINE.findall(text))
    assert summed == sum(expected.values()), "the periodic summaries add up to every drop"
    assert "Traceback" not in text and "decision failed" not in text and "[ERROR]" not in text
    print(f"\n{pose_source}: {sum(published.values())} messages ({sum(expected.values())} invalid, "
          f"{len(expected)} kinds) in {fuzz_seconds:.1f} s; burst of {burst}: {taken} taken")


CHECKS = {  # topic -> (the node's content check, the bag's message type)
    "instruction": (lambda m: instruction_text(m.data, MAX_CHARS), "std_msgs/msg/String"),
    "panorama": (lambda m: panorama_from_image(m, MAX_WIDTH), "sensor_msgs/msg/Image"),
    "compressed_panorama": (lambda m: panorama_from_compressed(m, MAX_WIDTH), "sensor_msgs/msg/CompressedImage"),
    "waypoints": (lambda m: waypoints_from_pose_array(m, "map", MAX_WAYPOINTS), "geometry_msgs/msg/PoseArray"),
    "odom": (lambda m: robot_pose_from_odometry(m, "map"), "nav_msgs/msg/Odometry"),
}


def verdict(check, msg) -> tuple[str, object]:
    """("drop", the reason the check gives) or ("ok", what it returns, arrays as shape and bytes)."""
    try:
        out = check(msg)
    except InputError as err:
        return "drop", err.kind
    return "ok", (out.shape, out.tobytes()) if isinstance(out, np.ndarray) else repr(out)


def test_bag_copies_of_fuzzed_messages_get_the_same_verdict() -> None:
    """rclpy messages and their rosbags copies (what a replayed bag holds) are accepted or dropped alike."""
    from types import SimpleNamespace

    from minivln_core.robot.messages import typestore

    store = typestore()
    clock = SimpleNamespace(now=lambda: SimpleNamespace(nanoseconds=time.time_ns()))
    fuzz = Fuzzer(seed=11, clock=clock, pose_source="odom")
    outcomes: Counter[str] = Counter()
    for _ in range(1500):
        fuzz.pano_topic = str(fuzz.rng.choice(["panorama", "compressed_panorama"]))
        topic, msg, _ = fuzz.draw()
        if isinstance(msg, bytes):  # raw invalid UTF-8: rosbags refuses to decode it, the bag reader names it
            continue
        check, msgtype = CHECKS[topic]
        copy = store.deserialize_cdr(bytes(serialize_message(msg)), msgtype)
        mine, theirs = verdict(check, msg), verdict(check, copy)
        assert mine == theirs, (topic, mine[1] if mine[0] == "drop" else "ok",
                                theirs[1] if theirs[0] == "drop" else "ok")
        outcomes[mine[1] if mine[0] == "drop" else f"{topic} ok"] += 1
    assert min(outcomes[f"{topic} ok"] for topic in CHECKS) >= 20, outcomes
    assert len(outcomes) >= 5 + 12, outcomes  # every topic accepted, and a dozen reasons for drops
