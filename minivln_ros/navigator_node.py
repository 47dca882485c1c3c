"""The navigator node: instruction + panorama + waypoints + pose -> goal_pose, via the core agent.

Every decision is `minivln_core.agent.online.OnlineNavigator.decide`, i.e. `NavigationAgent.step`,
the code `minivln eval` runs; this file only converts messages, sequences decisions and reports.

Sequencing: a decision is made when an episode runs, the robot pose is within
`arrival_tolerance` of the last goal (no goal before the first decision), and a panorama and a
waypoint set taken there have arrived: stamped no earlier than the first pose that showed the
robot at the goal (for the first decision: than the pose held when the instruction came), after
the goal was sent (after the instruction minus `max_data_age` for the first decision) and not
older than `max_data_age`. Stamps after the goal was sent are not enough: a robot that
republishes its observations while it travels sends the previous place's panorama and waypoints
with such stamps, and the pose, a small message, can arrive before the new panorama; deciding
then would give the new place the previous place's features for good (they are cached per
place) and every replay of the bag would decide from other inputs than the node (issue 20).
Decisions run in a timer on a single-threaded executor, so callbacks never race; a new
instruction preempts the episode.

The robot pose comes from `odom` (nav_msgs/Odometry in the map frame, `pose_source: odom`) or
from TF (`pose_source: tf`): the map_frame -> base_frame chain composed from `/tf` and
`/tf_static` by `minivln_ros.tf_pose.TransformTree`.

Bad input never stops the node: the message is dropped and reported once with its reason. The
first message of each kind of problem is a warning, later ones are debug lines (`dropped input
[kind]: reason` every time), and every `drop_report_period` seconds one warning sums up the
dropped messages by kind. `dropped` counts every dropped message by kind, `warned` the warnings
per kind (always 1 for a kind that occurred) and `received` every message by topic.

Stamps: a panorama, waypoint set, odometry pose or dynamic transform stamped more than
`max_data_age` in the past (stale), more than `max_clock_skew` ahead of the node's clock (held,
it would make every real input look out of order until the clock caught up), or older than the
one held (out of order), is dropped. Work stays bounded under bursts: callbacks only convert and
keep the latest input of each topic (topic queues are KEEP_LAST `qos_depth`), and at most one
decision runs per timer tick, only when the robot has reached its last goal.

Run: `python -m minivln_ros.navigator_node --ros-args --params-file config/navigator.yaml`.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from dataclasses import dataclass

import numpy as np
import rclpy
from geometry_msgs.msg import PoseArray, PoseStamped
from minivln_interfaces.msg import NavigatorStatus
from nav_msgs.msg import Odometry, Path
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from minivln_core.agent.online import OnlineNavigator
from minivln_core.perception.config import load_extractor_config
from minivln_core.perception.variant_choice import apply_variant
from minivln_core.frames import yaw_to_heading
from minivln_core.robot.inputs import (
    InputError,
    check_age,
    check_order,
    instruction_text,
    panorama_from_compressed,
    panorama_from_image,
    robot_pose_from_odometry,
    stamp_seconds,
    waypoints_from_pose_array,
)
from minivln_ros.conversions import pose_stamped
from minivln_ros.entry import closing_logger, run_node
from minivln_ros.markers import graph_markers
from minivln_ros.params import NAVIGATOR, NavigatorParams, declare, validate_navigator
from minivln_ros.tf_pose import TF_MESSAGE_TYPE, TransformTree, add_transform, transforms_of

STATE_NAMES = {NavigatorStatus.STATE_IDLE: "idle", NavigatorStatus.STATE_NAVIGATING: "navigating",
               NavigatorStatus.STATE_ARRIVED: "arrived", NavigatorStatus.STATE_FAILED: "failed"}


@dataclass
class Stamped:
    """A converted input with its header stamp (seconds)."""

    value: object
    stamp: float


class NavigatorNode(Node):
    """Subscribes to the robot's inputs, runs OnlineNavigator, publishes goals, status, path and markers."""

    def __init__(self, **kwargs) -> None:
        super().__init__("navigator", **kwargs)
        self.p: NavigatorParams = declare(self, NAVIGATOR, NavigatorParams)
        validate_navigator(self.p)
        p = self.p
        extractor = load_extractor_config(p.checkpoint, p.features_file or None, p.vit_weights_dir or None)
        extractor, reason = apply_variant(p.checkpoint, extractor, p.extractor_variant)
        self.get_logger().info(f"extractor variant: {reason}")
        self.navigator = OnlineNavigator.from_checkpoint(p.checkpoint, extractor, max_steps=p.max_steps,
                                                         place_tolerance=p.place_tolerance, threads=p.threads,
                                                         cache_size=p.feature_cache_size, int8=p.int8,
                                                         runtime=p.policy_runtime)
        self.dropped: Counter[str] = Counter()   # dropped messages by kind of problem
        self.warned: Counter[str] = Counter()    # warnings logged by kind (once each)
        self.received: Counter[str] = Counter()  # messages received by topic
        self._unreported: Counter[str] = Counter()  # drops since the last summary
        self.tf = TransformTree()
        self._pano: Stamped | None = None
        self._waypoints: Stamped | None = None
        self._pose: Stamped | None = None
        self._episode = 0
        self._state = NavigatorStatus.STATE_IDLE
        self._message = ""
        self._goal: np.ndarray | None = None
        self._goal_sent = 0.0
        self._not_before = 0.0          # inputs must be stamped after this (seconds)
        self._arrived: float | None = -math.inf  # stamp of the first pose at the goal (None: not there yet);
                                                 # the panorama and waypoints must not be older
        self._final = False             # the pending goal is the stop node
        self._stop_prob = math.nan
        self._latency = 0.0
        self._path = Path(header=Header(frame_id=p.map_frame))
        qos = QoSProfile(depth=p.qos_depth, reliability=ReliabilityPolicy.RELIABLE)
        instr_qos = QoSProfile(depth=p.qos_depth, reliability=ReliabilityPolicy.RELIABLE,
                               durability=(DurabilityPolicy.TRANSIENT_LOCAL if p.instruction_transient_local
                                           else DurabilityPolicy.VOLATILE))
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(String, p.instruction_topic, self._on_instruction, instr_qos)
        self.create_subscription(Image, p.panorama_topic, self._on_image, qos)
        self.create_subscription(CompressedImage, p.compressed_panorama_topic, self._on_compressed, qos)
        self.create_subscription(PoseArray, p.waypoints_topic, self._on_waypoints, qos)
        if p.pose_source == "odom":
            self.create_subscription(Odometry, p.odom_topic, self._on_odom, qos)
        else:  # the QoS of tf2's broadcasters: /tf volatile, /tf_static transient local, deep histories
            tf_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
            static_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                                    durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self.create_subscription(TF_MESSAGE_TYPE, p.tf_topic, lambda m: self._on_tf(m, False), tf_qos)
            self.create_subscription(TF_MESSAGE_TYPE, p.tf_static_topic, lambda m: self._on_tf(m, True), static_qos)
        self.goal_pub = self.create_publisher(PoseStamped, p.goal_topic, qos)
        self.status_pub = self.create_publisher(NavigatorStatus, p.status_topic, latched)
        self.path_pub = self.create_publisher(Path, p.path_topic, latched)
        self.markers_pub = self.create_publisher(MarkerArray, p.markers_topic, latched)
        self.create_timer(p.tick_period, self._tick)
        self.create_timer(p.drop_report_period, self._report_drops)
        self._publish_status()
        pose_from = p.odom_topic if p.pose_source == "odom" else f"TF {p.map_frame} -> {p.base_frame}"
        self.get_logger().info(f"ready: checkpoint {p.checkpoint}, pose from {pose_from}, "
                               f"extractor {extractor.backend} "
                               f"{'(random weights)' if extractor.weights_dir is None else extractor.weights_dir}")

    # -- helpers ------------------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _drop(self, err: InputError) -> None:
        """Count a dropped input and report it once: a warning for the first of its kind, else debug."""
        self.dropped[err.kind] += 1
        self._unreported[err.kind] += 1
        detail = str(err)
        if not detail.isprintable():  # a sender's text not quoted where it was raised (tf_pose's frame ids)
            detail = repr(detail)     # must not forge log lines either: quoted like instructions
        if self.warned[err.kind]:
            self.get_logger().debug(f"dropped input [{err.kind}]: {detail}")
        else:
            self.warned[err.kind] += 1
            self.get_logger().warning(f"dropped input [{err.kind}]: {detail} (first of its kind; the next ones are "
                                      f"summed up every {self.p.drop_report_period:g} s)")

    def _report_drops(self) -> None:
        """Warn with the number of inputs dropped by kind since the last summary (if any)."""
        if not self._unreported:
            return
        counts = ", ".join(f"{kind} x{n}" for kind, n in sorted(self._unreported.items()))
        self.get_logger().warning(f"dropped {sum(self._unreported.values())} inputs in the last "
                                  f"{self.p.drop_report_period:g} s: {counts}")
        self._unreported.clear()

    def _check_stamp(self, stamp: float, what: str, held: Stamped | None) -> None:
        """InputError if `stamp` is stale, ahead of the node's clock or older than the input held."""
        check_age(stamp, self._now(), self.p.max_data_age, self.p.max_clock_skew, what)
        check_order(stamp, None if held is None else held.stamp, what)

    # -- inputs -------------------------------------------------------------------------------
    def _on_instruction(self, msg: String) -> None:
        self.received["instruction"] += 1
        try:
            text = instruction_text(msg.data, self.p.max_instruction_chars)
            self.navigator.begin(text)
        except InputError as err:
            self._drop(err)
            return
        if self._state == NavigatorStatus.STATE_NAVIGATING:
            self.get_logger().info(f"episode {self._episode} preempted by a new instruction")
        self._episode += 1
        self._state, self._message = NavigatorStatus.STATE_NAVIGATING, ""
        self._goal, self._final, self._stop_prob, self._latency = None, False, math.nan, 0.0
        self._not_before = self._now() - self.p.max_data_age
        self._arrived = self._held_pose_stamp()  # observations taken before the robot was here are not its
        self._path = Path(header=Header(frame_id=self.p.map_frame))
        self.get_logger().info(f"episode {self._episode}: {text.strip()!r}")
        self._publish_status()

    def _on_image(self, msg: Image) -> None:
        self.received["panorama"] += 1
        try:
            self._pano = self._stamped(panorama_from_image(msg, self.p.max_pano_width), msg, "panorama", self._pano)
        except InputError as err:
            self._drop(err)

    def _on_compressed(self, msg: CompressedImage) -> None:
        self.received["compressed_panorama"] += 1
        try:
            self._pano = self._stamped(panorama_from_compressed(msg, self.p.max_pano_width), msg, "panorama",
                                       self._pano)
        except InputError as err:
            self._drop(err)

    def _stamped(self, value: object, msg: object, what: str, held: Stamped | None) -> Stamped:
        stamp = stamp_seconds(msg.header)
        self._check_stamp(stamp, what, held)
        return Stamped(value, stamp)

    def _on_waypoints(self, msg: PoseArray) -> None:
        self.received["waypoints"] += 1
        try:
            wps = waypoints_from_pose_array(msg, self.p.map_frame, self.p.max_waypoints)
            self._waypoints = self._stamped(wps, msg, "waypoints", self._waypoints)
        except InputError as err:
            self._drop(err)

    def _on_odom(self, msg: Odometry) -> None:
        self.received["odom"] += 1
        try:
            self._pose = self._stamped(robot_pose_from_odometry(msg, self.p.map_frame), msg, "odometry", self._pose)
        except InputError as err:
            self._drop(err)

    def _on_tf(self, msg: object, static: bool) -> None:
        self.received["tf_static" if static else "tf"] += 1
        for ts in transforms_of(msg):
            try:
                if not static:
                    check_age(stamp_seconds(ts.header), self._now(), self.p.max_data_age, self.p.max_clock_skew,
                              "tf", stale=False, name=f"transform {ts.header.frame_id!r} -> {ts.child_frame_id!r}")
                add_transform(self.tf, ts, static)
            except InputError as err:
                self._drop(err)

    def robot_pose(self) -> Stamped | None:
        """(position, heading) of the robot in the map frame with its stamp, or None if unknown yet."""
        if self.p.pose_source == "odom":
            return self._pose
        try:
            transform, stamp = self.tf.lookup(self.p.map_frame, self.p.base_frame)
        except LookupError:  # not connected yet: normal until the transforms arrive
            return None
        except InputError as err:
            self._drop(err)
            return None
        # a chain of static transforms only is always current
        return Stamped((transform.translation.copy(), yaw_to_heading(transform.yaw())),
                       self._now() if math.isinf(stamp) else stamp)

    def _held_pose_stamp(self) -> float:
        """Stamp of the robot pose known now (-inf when none), without reporting lookup problems."""
        if self.p.pose_source == "odom":
            return -math.inf if self._pose is None else self._pose.stamp
        try:
            _, stamp = self.tf.lookup(self.p.map_frame, self.p.base_frame)
        except (LookupError, InputError):
            return -math.inf
        return self._now() if math.isinf(stamp) else stamp

    # -- decisions ----------------------------------------------------------------------------
    def _ready(self) -> Stamped | None:
        """The robot pose (looked up once per tick) when the robot is at the goal and fresh
        observations taken there have arrived; None otherwise."""
        pose = self.robot_pose()
        if pose is None or self._now() - pose.stamp > self.p.max_data_age:
            return None
        position, _ = pose.value
        if self._goal is not None and float(np.linalg.norm(position - self._goal)) > self.p.arrival_tolerance:
            return None
        if self._arrived is None:  # the first pose at the goal: observations must be taken from now on
            self._arrived = pose.stamp
        if self._pano is None or self._waypoints is None:
            return None
        # stamped before the goal was sent, or before the robot was there: the previous place's
        # (a robot republishes its observations while it travels)
        not_before = max(self._not_before, self._arrived)
        if self._pano.stamp < not_before or self._waypoints.stamp < not_before:
            return None
        return pose

    def _tick(self) -> None:
        if self._state != NavigatorStatus.STATE_NAVIGATING:
            return
        if self._goal is not None and self._now() - self._goal_sent > self.p.goal_timeout:
            self._finish(NavigatorStatus.STATE_FAILED, f"goal not reached within goal_timeout={self.p.goal_timeout} s")
            return
        pose = self._ready()
        if pose is None:
            return
        if self._final:
            self._finish(NavigatorStatus.STATE_ARRIVED, "stopped at the chosen node")
            return
        position, heading = pose.value
        try:
            out = self.navigator.decide(self._pano.value, position, heading, self._waypoints.value)
        except ValueError as err:
            self._finish(NavigatorStatus.STATE_FAILED, str(err))
            return
        except Exception as err:  # never let a bug in one decision take the node down
            self.get_logger().error(f"decision failed: {type(err).__name__}: {err}")
            self._finish(NavigatorStatus.STATE_FAILED, f"decision failed: {type(err).__name__}: {err}")
            return
        self._stop_prob, self._latency = out.decision.stop_prob, out.latency
        now_msg = self.get_clock().now().to_msg()
        header = Header(frame_id=self.p.map_frame, stamp=now_msg)
        self._path.header.stamp = now_msg
        self._path.poses.append(pose_stamped(out.observation.position, heading, header))
        self.path_pub.publish(self._path)
        self.get_logger().info(f"episode {self._episode} step {self.navigator.step}: "
                               f"{'stop at' if out.decision.stop else 'go to'} {out.goal_place} "
                               f"(p_stop {out.decision.stop_prob:.2f}, {out.latency * 1000:.0f} ms"
                               f"{', ViT ran' if out.encoded else ''})")
        if out.moves:
            self._goal, self._goal_sent = out.goal_position, self._now()
            self._not_before, self._arrived = self._goal_sent, None
            self._final = out.decision.stop
            self.goal_pub.publish(pose_stamped(out.goal_position, out.goal_heading, header))
        self.markers_pub.publish(graph_markers(self.navigator.state.graph_map, self._goal, self.p.map_frame, now_msg))
        if out.decision.stop and not out.moves:
            self._finish(NavigatorStatus.STATE_ARRIVED, "stopped")
        else:
            self._publish_status()

    def _finish(self, state: int, message: str) -> None:
        self._state, self._message = state, message  # the finished episode's map stays for the status
        # two call sites: rclpy refuses one call site that logs at two severities (ValueError)
        if state == NavigatorStatus.STATE_ARRIVED:
            self.get_logger().info(f"episode {self._episode} {STATE_NAMES[state]}: {message}")
        else:
            self.get_logger().warning(f"episode {self._episode} {STATE_NAMES[state]}: {message}")
        self._publish_status()

    def destroy_node(self) -> None:
        """Log the totals of received and dropped messages, then destroy the node."""
        closing_logger(self).info(f"received {dict(sorted(self.received.items()))}; dropped "
                               f"{dict(sorted(self.dropped.items()))}")
        super().destroy_node()

    def _publish_status(self) -> None:
        msg = NavigatorStatus(header=Header(frame_id=self.p.map_frame, stamp=self.get_clock().now().to_msg()))
        msg.episode_id, msg.instruction = self._episode, self.navigator.instruction or ""
        msg.state, msg.state_name = self._state, STATE_NAMES[self._state]
        msg.step, msg.num_map_nodes = self.navigator.step, self.navigator.num_map_nodes
        msg.stop_probability, msg.decision_latency = float(self._stop_prob), float(self._latency)
        if self._goal is not None:
            msg.goal.x, msg.goal.y, msg.goal.z = (float(v) for v in self._goal)
        msg.message = self._message
        self.status_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    """Entry point of the `navigator` executable; exit status 2 for bad parameters."""
    return run_node("navigator", NavigatorNode, rclpy.spin, args)


if __name__ == "__main__":
    sys.exit(main())
