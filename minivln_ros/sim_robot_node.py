"""sim_robot: a simulated robot on a generated world, driven over real topics by the navigator.

It publishes, at its current viewpoint, the rendered equirectangular panorama (`panorama`), the
positions of the navigable neighbours (`navigable_waypoints`) and its pose (`odom`), all in the
map frame; on a `goal_pose` it travels (after `travel_time`) to the viewpoint at the goal and
publishes the new observations. Episodes come from the world's annotations; when the navigator
reports the episode finished (`navigator_status`), the episode is scored with the core metrics
and published as `minivln_interfaces/EpisodeResult` (and printed as one JSON line).

Headings are kept on the 30-degree view grid (the start heading is snapped): see
`minivln_ros.sim_world` for why panoramas then equal the training features exactly.

Without a `world` parameter the robot plays the embedded world (the default synthetic world of
`minivln pipeline` with its rendered ViT features), built on first use into `world_cache` by
`minivln_core.embedded_world.ensure_embedded_world` (minutes on 2 cores; later starts reuse it).

Run: `python -m minivln_ros.sim_robot_node --ros-args --params-file config/sim_robot.yaml`.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import rclpy
from geometry_msgs.msg import PoseArray, PoseStamped
from minivln_interfaces.msg import EpisodeResult, NavigatorStatus
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String

from minivln_core.agent.online import heading_to_yaw, yaw_to_heading
from minivln_ros.conversions import InputError, image_from_rgb, quaternion_from_yaw, yaw_from_quaternion
from minivln_ros.entry import run_node
from minivln_ros.params import SIM_ROBOT, ParamError, SimRobotParams, declare, validate_sim_robot
from minivln_ros.sim_world import SimWorld

FINISHED = (NavigatorStatus.STATE_ARRIVED, NavigatorStatus.STATE_FAILED)


class SimRobotNode(Node):
    """Plays episodes of a world: observations out, goals in, scores out."""

    def __init__(self, **kwargs) -> None:
        super().__init__("sim_robot", **kwargs)
        self.p: SimRobotParams = declare(self, SIM_ROBOT, SimRobotParams)
        validate_sim_robot(self.p)
        p = self.p
        world = p.world or self._embedded_world()
        self.world = SimWorld(world, p.task, p.split, pano_width=p.pano_width, goal_tolerance=p.goal_tolerance)
        last = len(self.world.episodes) if p.num_episodes == 0 else p.first_episode + p.num_episodes
        self.queue = list(range(p.first_episode, min(last, len(self.world.episodes))))
        if not self.queue:
            raise ParamError(f"parameter 'first_episode': {p.first_episode} is past the {len(self.world.episodes)} "
                             f"episodes of {p.split}")
        self.done = False
        self.results: list[dict] = []
        self._navigator_episode: int | None = None
        self._instruction_sent = False
        self._travel = None
        qos = QoSProfile(depth=p.qos_depth, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pano_pub = self.create_publisher(Image, p.panorama_topic, qos)
        self.waypoints_pub = self.create_publisher(PoseArray, p.waypoints_topic, qos)
        self.odom_pub = self.create_publisher(Odometry, p.odom_topic, qos)
        self.instruction_pub = self.create_publisher(String, p.instruction_topic, latched)
        self.result_pub = self.create_publisher(EpisodeResult, p.result_topic, latched)
        self.create_subscription(PoseStamped, p.goal_topic, self._on_goal, qos)
        self.create_subscription(NavigatorStatus, p.status_topic, self._on_status, latched)
        self.create_timer(p.republish_period, self.publish_observations)
        self.create_timer(0.1, self._maybe_instruct)
        self._start_next()

    def _embedded_world(self) -> str:
        """The embedded world's folder, built into the cache on first use."""
        from minivln_core.embedded_world import default_cache_dir, ensure_embedded_world

        cache = self.p.world_cache or str(default_cache_dir())
        self.get_logger().info(f"no 'world' given: using the embedded world in {cache}/world "
                               "(built on first use, this takes a few minutes)")
        world = ensure_embedded_world(cache)
        self.get_logger().info(f"embedded world ready: {world} (navigator: features_file:="
                               f"{world / 'features' / 'views_vit.h5'} if the checkpoint has no extractor.json)")
        return str(world)

    # -- episodes -----------------------------------------------------------------------------
    def _start_next(self) -> None:
        index = self.queue.pop(0)
        cur = self.world.start(self.world.episode(index))
        self._navigator_episode, self._instruction_sent = None, False
        self.get_logger().info(f"episode {cur.episode.instr_id} (#{index}) at {cur.viewpoint}, heading "
                               f"{np.degrees(cur.heading):.0f} deg: {cur.episode.instruction!r}")
        self.publish_observations()

    def _maybe_instruct(self) -> None:
        """Publish the episode's instruction once the navigator listens (if publish_instruction)."""
        if (not self.p.publish_instruction or self._instruction_sent or self.done
                or self.instruction_pub.get_subscription_count() == 0 or self.pano_pub.get_subscription_count() == 0):
            return
        self.instruction_pub.publish(String(data=self.world.current.episode.instruction))
        self._instruction_sent = True

    def _on_status(self, msg: NavigatorStatus) -> None:
        if self.done:
            return
        if msg.state == NavigatorStatus.STATE_NAVIGATING and msg.episode_id != self._navigator_episode:
            self._navigator_episode = msg.episode_id   # the navigator started (or preempted into) our episode
        elif msg.episode_id == self._navigator_episode and msg.state in FINISHED:
            self._finish(msg)

    def _finish(self, status: NavigatorStatus) -> None:
        cur = self.world.current
        scores = self.world.score()
        result = EpisodeResult(header=Header(frame_id=self.p.map_frame, stamp=self.get_clock().now().to_msg()))
        result.instr_id, result.navigator_episode_id = cur.episode.instr_id, status.episode_id
        result.success, result.final_state = bool(scores["sr"]), status.state_name
        result.navigation_error, result.trajectory_length = float(scores["ne"]), float(scores["tl"])
        result.spl, result.ndtw = float(scores["spl"]), float(scores["ndtw"])
        result.trajectory, result.goals = list(cur.trajectory), list(cur.goals)
        self.result_pub.publish(result)
        record = {"instr_id": cur.episode.instr_id, "state": status.state_name, "success": result.success,
                  "ne": round(result.navigation_error, 2), "spl": round(result.spl, 3),
                  "ndtw": round(result.ndtw, 3), "steps": status.step, "goals": result.goals}
        self.results.append(record)
        print(json.dumps(record), flush=True)
        self._navigator_episode = None
        if self.queue:
            self._start_next()
        elif self.p.exit_when_done:
            self.done = True

    # -- motion -------------------------------------------------------------------------------
    def _on_goal(self, msg: PoseStamped) -> None:
        try:
            if msg.header.frame_id.lstrip("/") != self.p.map_frame:
                raise InputError("goal-frame", f"goal in frame '{msg.header.frame_id}', expected '{self.p.map_frame}'")
            position = np.array([msg.pose.position.x, msg.pose.position.y, msg.pose.position.z])
            heading = yaw_to_heading(yaw_from_quaternion(msg.pose.orientation))
            if self.world.viewpoint_at(position) is None:
                raise InputError("goal-far", f"no viewpoint near goal {np.round(position, 2).tolist()}")
        except (InputError, ValueError) as err:
            self.get_logger().warning(f"goal ignored: {err}")
            return
        if self._travel is not None:
            self._travel.cancel()
            self.destroy_timer(self._travel)

        def arrive() -> None:
            self.destroy_timer(self._travel)
            self._travel = None
            target = self.world.move_to(position, heading)
            self.get_logger().info(f"arrived at {target}")
            self.publish_observations()

        self._travel = self.create_timer(max(self.p.travel_time, 1e-3), arrive)

    def publish_observations(self) -> None:
        """Panorama, waypoints and odometry of the current place, all with one fresh stamp."""
        if self.done or self.world.current is None:
            return
        header = Header(frame_id=self.p.map_frame, stamp=self.get_clock().now().to_msg())
        position, heading = self.world.position(), self.world.heading()
        odom = Odometry(header=header, child_frame_id="base_link")
        odom.pose.pose.position.x, odom.pose.pose.position.y, odom.pose.pose.position.z = (float(v) for v in position)
        odom.pose.pose.orientation = quaternion_from_yaw(heading_to_yaw(heading))
        waypoints = PoseArray(header=header)
        for wp in self.world.waypoints():
            pose = odom.pose.pose.__class__()
            pose.position.x, pose.position.y, pose.position.z = (float(v) for v in wp)
            pose.orientation.w = 1.0
            waypoints.poses.append(pose)
        self.odom_pub.publish(odom)
        self.waypoints_pub.publish(waypoints)
        self.pano_pub.publish(image_from_rgb(self.world.panorama(), header))


def _spin_until_done(node: "SimRobotNode") -> None:
    while rclpy.ok() and not node.done:
        rclpy.spin_once(node, timeout_sec=0.1)
    for _ in range(5):  # let the last result reach late subscribers
        rclpy.spin_once(node, timeout_sec=0.1)


def main(args: list[str] | None = None) -> int:
    """Entry point of the `sim_robot` executable; exit status 2 for bad parameters."""
    return run_node("sim_robot", SimRobotNode, _spin_until_done, args)


if __name__ == "__main__":
    sys.exit(main())
