"""Bags without ROS: rosbags round trips (mcap, sqlite3), message decoding, open-loop sequencing, and
errors that name the bag, the topic and the message."""

from __future__ import annotations

import math
import os
import zlib
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from minivln_core.frames import heading_to_yaw, yaw_to_heading
from minivln_core.config import build_config
from minivln_core.errors import ConfigError, DataError
from minivln_core.robot import messages as M
from minivln_core.robot.bag import BagError, BagReader, BagRecorder, topic_summary
from minivln_core.replay.config import ReplayConfig
from minivln_core.robot.messages import BagTopics
from minivln_core.replay.openloop import NEED, ROLES, replay_open_loop
from minivln_core.robot.inputs import (InputError, heading_from_quaternion, panorama_from_message,
                                     robot_pose_from_odometry, waypoints_from_pose_array)

T = M.typestore().types
RNG = np.random.default_rng(0)
PANO = RNG.integers(0, 256, size=(8, 16, 3), dtype=np.uint8)  # a tiny 2:1 "panorama"


# -- message builders (rosbags objects, as a bag holds them) ------------------------------------
def header(t: float, frame: str = "map"):
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=int(t), nanosec=int(t % 1 * 1e9)),
                                    frame_id=frame)


def image(rgb: np.ndarray, t: float, encoding: str = "rgb8", pad: int = 0):
    pixels = rgb[..., ::-1] if encoding == "bgr8" else rgb
    rows = np.concatenate([pixels.reshape(rgb.shape[0], -1), np.zeros((rgb.shape[0], pad), np.uint8)], axis=1)
    return T[M.IMAGE](header=header(t), height=rgb.shape[0], width=rgb.shape[1], encoding=encoding,
                      is_bigendian=0, step=rows.shape[1], data=rows.reshape(-1))


def point(p):
    return T["geometry_msgs/msg/Point"](x=float(p[0]), y=float(p[1]), z=float(p[2]))


def pose(p, yaw: float = 0.0):
    q = T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2))
    return T["geometry_msgs/msg/Pose"](position=point(p), orientation=q)


def odom(p, t: float, yaw: float = 0.0, frame: str = "map"):
    cov = np.zeros(36)
    return T[M.ODOMETRY](header=header(t, frame), child_frame_id="base_link",
                         pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=pose(p, yaw), covariance=cov),
                         twist=T["geometry_msgs/msg/TwistWithCovariance"](
                             twist=T["geometry_msgs/msg/Twist"](linear=T["geometry_msgs/msg/Vector3"](0.0, 0.0, 0.0),
                                                                angular=T["geometry_msgs/msg/Vector3"](0.0, 0.0, 0.0)),
                             covariance=cov))


def pose_array(points, t: float):
    return T[M.POSE_ARRAY](header=header(t), poses=[pose(p) for p in points])


def goal(p, t: float):
    return T[M.POSE_STAMPED](header=header(t), pose=pose(p))


def status(episode: int, step: int, state: int, t: float, instruction: str = "go"):
    return T[M.NAVIGATOR_STATUS](header=header(t), episode_id=episode, instruction=instruction, state=state,
                                 state_name=M.STATE_NAMES[state], step=step, num_map_nodes=0,
                                 stop_probability=0.0, decision_latency=0.0, goal=point((0, 0, 0)), message="")


def record(path: Path, items, storage: str = "mcap") -> Path:
    """items: (topic, type, time s, message) -> a closed bag."""
    rec = BagRecorder(path, storage)
    for topic, msgtype, t, msg in items:
        rec.write_message(topic, msgtype, int(t * 1e9), msg)
    rec.close()
    return path


A, B = np.array([1.0, 2.0, 1.5]), np.array([3.0, 2.0, 1.5])


def run_items(stop_in_place: bool = True, lost_status: bool = False):
    """A recorded navigator run: instruction, decision 1 at A (goal B), decision 2 at B (a stop in place)."""
    items = [("/navigator_status", M.NAVIGATOR_STATUS, 0.5, status(0, 0, 0, 0.5)),
             ("/instruction", M.STRING, 1.0, T[M.STRING](data="  go ")),
             ("/odom", M.ODOMETRY, 1.1, odom(A, 1.1)),
             ("/navigable_waypoints", M.POSE_ARRAY, 1.1, pose_array([B], 1.1)),
             ("/panorama", M.IMAGE, 1.1, image(PANO, 1.1)),
             ("/navigator_status", M.NAVIGATOR_STATUS, 1.2, status(1, 0, M.STATE_NAVIGATING, 1.2)),
             ("/goal_pose", M.POSE_STAMPED, 1.5, goal(B, 1.5)),
             # the robot arrives at B before the recorder saw decision 1's status: decision 1 still used A's inputs
             ("/odom", M.ODOMETRY, 1.505, odom(B, 1.505)),
             ("/navigable_waypoints", M.POSE_ARRAY, 1.505, pose_array([A], 1.505)),
             ("/panorama", M.IMAGE, 1.505, image(PANO, 1.505, "bgr8", pad=5)),
             ("/navigator_status", M.NAVIGATOR_STATUS, 1.51, status(1, 1, M.STATE_NAVIGATING, 1.51))]
    last = 3 if lost_status else 2
    items.append(("/navigator_status", M.NAVIGATOR_STATUS, 2.5,
                  status(1, last, M.STATE_ARRIVED if stop_in_place else M.STATE_NAVIGATING, 2.5)))
    return items


class ScriptedNavigator:
    """Stands in for OnlineNavigator: records its inputs and answers with scripted decisions."""

    def __init__(self, answers):
        self.answers, self.calls, self.state = list(answers), [], None

    @property
    def active(self) -> bool:
        return self.state == "running"

    def begin(self, text: str) -> None:
        self.state, self.text = "running", text

    def cancel(self) -> None:
        self.state = None

    def decide(self, pano, position, heading, waypoints):
        self.calls.append((pano.copy(), position.copy(), heading, [w.copy() for w in waypoints]))
        target, stop = self.answers.pop(0)
        if stop:
            self.state = "done"
        return SimpleNamespace(decision=SimpleNamespace(stop=stop, stop_prob=0.5), moves=target is not None,
                               goal_position=None if target is None else np.asarray(target, float))


# -- round trips ------------------------------------------------------------------------------------
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_in_log_time_order(tmp_path, storage) -> None:
    bag = record(tmp_path / "bag", [("/odom", M.ODOMETRY, 2.0, odom(A, 2.0, yaw=0.3)),
                                    ("/instruction", M.STRING, 1.0, T[M.STRING](data="walk")),
                                    ("/panorama", M.IMAGE, 3.0, image(PANO, 3.0)),
                                    ("/odom", M.ODOMETRY, 4.0, odom(B, 4.0))], storage)
    assert (bag / "metadata.yaml").is_file()
    assert topic_summary(bag)["odom"] == (M.ODOMETRY, 2)
    with BagReader(bag, BagTopics(), ROLES) as reader:
        got = list(reader.messages())
    assert [(m.role, m.index, m.seconds) for m in got] == [("instruction", 0, 1.0), ("odom", 0, 2.0),
                                                            ("panorama", 0, 3.0), ("odom", 1, 4.0)]
    position, heading = robot_pose_from_odometry(got[1].msg, "map")
    np.testing.assert_array_equal(position, A)
    assert heading == pytest.approx(yaw_to_heading(0.3))
    np.testing.assert_array_equal(panorama_from_message(got[2].msg, 8192), PANO)


def test_status_definition_travels_with_the_bag(tmp_path) -> None:
    bag = record(tmp_path / "bag", [("/navigator_status", M.NAVIGATOR_STATUS, 1.0, status(3, 2, M.STATE_ARRIVED, 1.0))])
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        conn = reader.connections[0]
        assert "state_name" in conn.msgdef.data and conn.digest == M.typestore().hash_rihs01(M.NAVIGATOR_STATUS)
    with BagReader(bag, BagTopics(), ["status"]) as reader:
        msg = next(reader.messages()).msg
    assert (msg.episode_id, msg.step, msg.state_name) == (3, 2, "arrived")


# -- decoding ---------------------------------------------------------------------------------------
def compressed(data: bytes, fmt: str = "png"):
    return T[M.COMPRESSED_IMAGE](header=header(0.0), format=fmt, data=np.frombuffer(data, np.uint8))


def test_panorama_decoding_and_drops() -> None:
    """The node's checks (`robot.inputs`) on bag messages: the same images decoded, the same reasons for drops."""
    np.testing.assert_array_equal(panorama_from_message(image(PANO, 0.0, "bgr8", pad=7), 8192), PANO)  # step used
    png = cv2.imencode(".png", cv2.cvtColor(PANO, cv2.COLOR_RGB2BGR))[1].tobytes()
    np.testing.assert_array_equal(panorama_from_message(compressed(png), 8192), PANO)
    ihdr = b"IHDR" + (40_000).to_bytes(4, "big") + (20_000).to_bytes(4, "big") + png[24:29]  # header: 40000 x 20000
    bomb = png[:12] + ihdr + zlib.crc32(ihdr).to_bytes(4, "big") + png[33:]                # with a valid CRC
    padded = image(PANO, 0.0, pad=2)
    padded.step = 3 * PANO.shape[1]  # rows padded, but the step says they are not
    bad = [(image(PANO, 0.0, "mono8"), 8192, "panorama-encoding", "encoding"),
           (image(PANO[:, :12], 0.0), 8192, "panorama-size", "2:1"),
           (image(PANO, 0.0), 8, "panorama-size", "max_pano_width=8"), (padded, 8192, "panorama-data", "step"),
           (compressed(b"not a jpeg", "jpeg"), 8192, "compressed-data", "neither PNG nor JPEG"),
           (compressed(png[:40]), 8192, "compressed-data", "cannot decode"),
           (compressed(bomb), 8192, "compressed-size", "40000 px wide")]  # refused before decoding
    for msg, max_width, kind, words in bad:
        with pytest.raises(InputError, match=words) as err:
            panorama_from_message(msg, max_width)
        assert err.value.kind == kind
    with pytest.raises(InputError, match="frame 'odom'"):
        robot_pose_from_odometry(odom(A, 0.0, frame="odom"), "map")
    with pytest.raises(InputError, match="not finite"):
        waypoints_from_pose_array(pose_array([[math.nan, 0, 0]], 0.0), "map", 10)
    for yaw in (-2.0, 0.0, 1.0, 3.0):
        assert heading_from_quaternion(pose(A, yaw).orientation) == pytest.approx(yaw_to_heading(yaw))
    assert heading_to_yaw(heading_from_quaternion(pose(A, 1.0).orientation)) == pytest.approx(1.0)


def test_config_overrides_are_checked() -> None:
    cfg = build_config(ReplayConfig, overrides=["topics.odom=/robot/odom", "max_steps=6"])
    assert cfg.topics.odom == "/robot/odom" and cfg.max_steps == 6 and cfg.topics.panorama == "panorama"
    for bad in ("topics.camera=x", "max_steps=0", "match_tolerance=-1", "topics.odom=a b"):
        with pytest.raises(ConfigError):
            build_config(ReplayConfig, overrides=[bad])
    # the navigator's extractor_variant: auto (default), as recorded, or a variant; a bad one is named
    assert ReplayConfig().extractor_variant == "auto"
    assert build_config(ReplayConfig, overrides=["extractor_variant=onnx-int8"]).extractor_variant == "onnx-int8"
    with pytest.raises(ConfigError, match="extractor_variant"):
        build_config(ReplayConfig, overrides=["extractor_variant=onnx-bf16"])


# -- bad bags ---------------------------------------------------------------------------------------
def test_missing_topic_and_unexpected_type_are_named(tmp_path) -> None:
    bag = record(tmp_path / "bag", [("/odom", M.POSE_STAMPED, 1.0, goal(A, 1.0)), ("/instruction", M.STRING, 1.0,
                                                                                    T[M.STRING](data="x"))])
    with pytest.raises(BagError, match=r"topic odom.*carries geometry_msgs/msg/PoseStamped, expected nav_msgs") as err:
        BagReader(bag, BagTopics(), ROLES, NEED).__enter__()
    assert err.value.topic == "odom" and str(bag) in str(err.value)
    ok = record(tmp_path / "ok", [("/instruction", M.STRING, 1.0, T[M.STRING](data="x"))])
    with pytest.raises(BagError, match=r"missing topic 'panorama' .* or 'panorama/compressed'.*topics: instruction"):
        BagReader(ok, BagTopics(), ROLES, NEED).__enter__()


def test_unclosed_truncated_and_corrupt_bags(tmp_path) -> None:
    rec = BagRecorder(tmp_path / "killed")
    rec.write_message("/odom", M.ODOMETRY, 1, odom(A, 0.0))
    with pytest.raises(BagError, match="no metadata.yaml.*not closed"):  # the recorder was never closed
        BagReader(tmp_path / "killed", BagTopics(), ["odom"]).__enter__()
    bag = record(tmp_path / "cut", [("/odom", M.ODOMETRY, 1.0 + k, odom(A, 1.0 + k)) for k in range(20)])
    storage = bag / "cut.mcap"
    os.truncate(storage, storage.stat().st_size // 2)
    with pytest.raises(BagError, match="truncated or corrupt"):
        BagReader(bag, BagTopics(), ["odom"]).__enter__()
    rec = BagRecorder(tmp_path / "corrupt", "sqlite3")
    rec.write_message("/odom", M.ODOMETRY, 1, odom(A, 0.0))
    rec.write("/odom", M.ODOMETRY, 2, b"\x00\x01\x00\x00garbage")
    rec.close()
    with BagReader(tmp_path / "corrupt", BagTopics(), ["odom"]) as reader:
        stream = reader.messages()
        next(stream)
        with pytest.raises(BagError, match=r"topic odom, .*message 1.*cannot be decoded"):
            next(stream)
    with pytest.raises(DataError, match="exists already"):
        BagRecorder(tmp_path / "corrupt")


def test_status_of_another_definition_is_refused(tmp_path) -> None:
    from rosbags.rosbag2 import Writer

    with Writer(tmp_path / "old", version=9) as writer:
        conn = writer.add_connection("/navigator_status", M.NAVIGATOR_STATUS, msgdef="uint32 episode_id\n",
                                     rihs01="RIHS01_" + "0" * 64)
        writer.write(conn, 1, bytes(M.typestore().serialize_cdr(status(1, 0, 1, 0.0), M.NAVIGATOR_STATUS)))
    with pytest.raises(BagError, match="differs from msg/NavigatorStatus.msg"):
        BagReader(tmp_path / "old", BagTopics(), ["status"]).__enter__()


# -- open-loop sequencing (scripted agent: no model) ------------------------------------------------
def test_open_loop_feeds_the_inputs_the_node_had(tmp_path) -> None:
    bag = record(tmp_path / "run", run_items())
    agent = ScriptedNavigator([(B, False), (None, True)])   # the recorded decisions
    run = replay_open_loop(bag, agent, ReplayConfig(), progress=False)
    assert agent.text == "  go " and len(run.episodes) == 1 and run.episodes[0].state == "arrived"
    (_, pos1, _, wps1), (pano2, pos2, _, wps2) = agent.calls
    np.testing.assert_array_equal(pos1, A)          # decision 1 at A with A's waypoints
    np.testing.assert_array_equal(wps1[0], B)
    np.testing.assert_array_equal(pos2, B)          # decision 2 after the move, bgr8 + padding decoded
    np.testing.assert_array_equal(pano2, PANO)
    decisions = run.decisions()
    assert [d.recorded_stop for d in decisions] == [False, True]
    assert [d.agrees(0.5) for d in decisions] == [True, True]
    np.testing.assert_array_equal(decisions[0].recorded_goal, B)
    assert [p.tolist() for p, _ in run.episodes[0].passed()] == [A.tolist(), B.tolist()]

    other = replay_open_loop(bag, ScriptedNavigator([(A + 5, False), (B, True)]), ReplayConfig(), progress=False)
    assert [d.agrees(0.5) for d in other.decisions()] == [False, False]  # other goal; moves instead of staying
    early = replay_open_loop(bag, ScriptedNavigator([(None, True)]), ReplayConfig(), progress=False)
    assert [d.replayed_stop for d in early.decisions()] == [True, None]  # stopped at once: no second decision
    assert "already stopped" in early.decisions()[1].note


def test_open_loop_drops_the_instructions_the_node_drops(tmp_path) -> None:
    items = run_items()
    assert items[1][0] == "/instruction"
    items[2:2] = [("/instruction", M.STRING, 1.05, T[M.STRING](data=" \t ")),       # empty
                  ("/instruction", M.STRING, 1.06, T[M.STRING](data="go " * 700))]  # over max_instruction_chars
    agent = ScriptedNavigator([(B, False), (None, True)])
    run = replay_open_loop(record(tmp_path / "bag", items), agent, ReplayConfig(), progress=False)
    assert agent.text == "  go " and [ep.state for ep in run.episodes] == ["arrived"]
    assert run.dropped == ["topic instruction message 1: instruction is empty",
                           "topic instruction message 2: instruction has 2100 characters, more than "
                           "max_instruction_chars=2000"]


def test_open_loop_reports_lost_statuses_and_late_starts(tmp_path) -> None:
    bag = record(tmp_path / "lost", run_items(lost_status=True))
    with pytest.raises(BagError, match=r"topic navigator_status, .*message 3.*jumps from decision 1 to 3"):
        replay_open_loop(bag, ScriptedNavigator([(B, False)] * 3), ReplayConfig(), progress=False)
    late = [item for item in run_items() if not (item[1] == M.NAVIGATOR_STATUS and item[3].step == 0)]
    run = replay_open_loop(record(tmp_path / "late", late), ScriptedNavigator([]), ReplayConfig(), progress=False)
    assert not run.episodes and "starts at its decision 1" in run.skipped[0]
    dropped = run_items()
    assert dropped[4][0] == "/panorama"
    dropped[4] = ("/panorama", M.IMAGE, 1.1, image(PANO, 1.1, "mono8"))  # the node drops it: no panorama yet
    with pytest.raises(BagError, match="decision 1 of episode 1 has no usable panorama"):
        replay_open_loop(record(tmp_path / "mono", dropped), ScriptedNavigator([(B, False)]), ReplayConfig(),
                         progress=False)


def test_storage_failing_mid_read_names_the_last_good_message(tmp_path) -> None:
    from rosbags.rosbag2 import ReaderError

    bag = record(tmp_path / "bag", [("/odom", M.ODOMETRY, 1.0 + k, odom(A, 1.0 + k)) for k in range(3)])
    with BagReader(bag, BagTopics(), ["odom"]) as reader:
        real = reader._reader.messages

        def breaks(*args, **kwargs):  # the storage yields two messages, then fails (a damaged chunk)
            stream = real(*args, **kwargs)
            yield next(stream)
            yield next(stream)
            raise ReaderError("chunk CRC mismatch")

        reader._reader.messages = breaks
        stream = reader.messages()
        assert [m.index for m in (next(stream), next(stream))] == [0, 1]
        with pytest.raises(BagError, match="corrupt after message 1 of topic odom: ReaderError: chunk CRC"):
            next(stream)
