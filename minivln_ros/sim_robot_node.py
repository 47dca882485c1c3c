"""sim_robot: a simulated robot on a generated world, driven over real topics by the navigator.

It publishes, at its current viewpoint, the rendered equirectangular panorama (`panorama`), the
positions of the navigable neighbours (`navigable_waypoints`) and its pose (`odom`), all in the
map frame; on a `goal_pose` it travels (after `travel_time`) to the viewpoint at the goal and
publishes the new observations. Episodes come from the world's annotations; when the navigator
reports the episode finished (`navigator_status`), the episode is scored with the core metrics
and published as `minivln_interfaces/EpisodeResult` (and printed as one JSON line, with the
trajectory and goals).

Headings are kept on the 30-degree view grid (the start heading is snapped): see
`minivln_core.sim.world_robot` for why panoramas then equal the training features exactly.

Without a `world` parameter the robot plays the embedded world (the default synthetic world of
`minivln pipeline` with its rendered ViT features), built on first use into `world_cache` by
`minivln_core.experiments.embedded_world.ensure_embedded_world` (minutes on 2 cores; later starts reuse it).

Bags (docs/replay.md):
* `record: DIR` records a rosbag2 bag (`record_storage` mcap or sqlite3) of the navigator's inputs
  and outputs as this node sees them: what it publishes (instruction, panorama, waypoints,
  odometry) and what it receives (goal_pose, navigator_status; the instruction too when another
  node publishes it), written from the callbacks with the node clock's time. The bag is closed
  (metadata.yaml written) when the node shuts down, also on Ctrl-C or SIGTERM.
* `survey: true` plays no episodes: it visits every place of one building (`survey_scan`) once,
  heading 0, publishing (and recording) its observations, then stops — a survey bag.
* `survey_bag: DIR` plays a building from a survey bag instead of rendering it
  (`minivln_core.replay.survey.SurveyWorld`): the closed-loop replay over ROS.

Run: `python -m minivln_ros.sim_robot_node --ros-args --params-file config/sim_robot.yaml`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import rclpy
from geometry_msgs.msg import PoseArray, PoseStamped
from minivln_interfaces.msg import EpisodeResult, NavigatorStatus
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String

from minivln_core.frames import heading_to_yaw
from minivln_core.robot import messages as bag_types
from minivln_core.robot.inputs import InputError, goal_from_pose_stamped
from minivln_core.sim.world_robot import SimWorld
from minivln_ros.conversions import image_from_rgb, quaternion_from_yaw
from minivln_ros.entry import closing_logger, run_node
from minivln_ros.params import SIM_ROBOT, ParamError, SimRobotParams, declare, validate_sim_robot

FINISHED = (NavigatorStatus.STATE_ARRIVED, NavigatorStatus.STATE_FAILED)


class SimRobotNode(Node):
    """Plays episodes of a world (or surveys it): observations out, goals in, scores out; records a bag."""

    def __init__(self, **kwargs) -> None:
        super().__init__("sim_robot", **kwargs)
        self.p: SimRobotParams = declare(self, SIM_ROBOT, SimRobotParams)
        validate_sim_robot(self.p)
        p = self.p
        self.recorder = None
        self.world = self._survey_world() if p.survey_bag else SimWorld(
            p.world or self._embedded_world(), p.task, p.split, pano_width=p.pano_width,
            goal_tolerance=p.goal_tolerance)
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
        if p.survey:
            self._survey_places = self._survey_start()
        else:
            last = len(self.world.episodes) if p.num_episodes == 0 else p.first_episode + p.num_episodes
            self.queue = list(range(p.first_episode, min(last, len(self.world.episodes))))
            if not self.queue:
                raise ParamError(f"parameter 'first_episode': {p.first_episode} is past the "
                                 f"{len(self.world.episodes)} episodes of {p.split}")
        if p.record:
            from minivln_core.robot.bag import BagRecorder

            self.recorder = BagRecorder(p.record, p.record_storage)
            self.get_logger().info(f"recording into {p.record} ({p.record_storage})")
        if p.survey:
            self.create_timer(max(p.travel_time, 1e-3), self._survey_next)
            return
        self.instruction_pub = self.create_publisher(String, p.instruction_topic, latched)
        self.result_pub = self.create_publisher(EpisodeResult, p.result_topic, latched)
        self.goal_sub = self.create_subscription(PoseStamped, p.goal_topic, self._on_goal, qos)
        # deeper than the latched publisher so a recording keeps every status of quick successions
        self.status_sub = self.create_subscription(NavigatorStatus, p.status_topic, self._on_status, QoSProfile(
            depth=p.qos_depth, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        if self.recorder is not None and not p.publish_instruction:  # record the instructions others send
            self.instruction_sub = self.create_subscription(
                String, p.instruction_topic,
                lambda msg: self._record(self.instruction_sub.topic_name, bag_types.STRING, msg), qos)
        self.create_timer(p.republish_period, self.publish_observations)
        self.create_timer(0.1, self._maybe_instruct)
        self._start_next()

    def _embedded_world(self) -> str:
        """The embedded world's folder, built into the cache on first use."""
        from minivln_core.experiments.embedded_world import ensure_embedded_world
        from minivln_core.paths import default_cache_dir

        cache = self.p.world_cache or str(default_cache_dir())
        self.get_logger().info(f"no 'world' given: using the embedded world in {cache}/world "
                               "(built on first use, this takes a few minutes)")
        world = ensure_embedded_world(cache)
        self.get_logger().info(f"embedded world ready: {world} (navigator: features_file:="
                               f"{world / 'features' / 'views_vit.h5'} if the checkpoint has no extractor.json)")
        return str(world)

    def _survey_world(self):
        """The building recorded in `survey_bag`, with the episodes of `episodes_file` (or the world's split)."""
        from minivln_core.data.r2r import load_r2r
        from minivln_core.data.world import WorldPaths
        from minivln_core.replay.config import ReplayConfig
        from minivln_core.replay.survey import load_survey_world
        from minivln_core.robot.messages import BagTopics

        p = self.p
        episodes = p.episodes_file or str(WorldPaths(Path(p.world)).annotations(p.task, p.split))
        config = ReplayConfig(topics=BagTopics(panorama=p.panorama_topic, waypoints=p.waypoints_topic,
                                               odom=p.odom_topic), map_frame=p.map_frame,
                              match_tolerance=p.goal_tolerance)
        world = load_survey_world(p.survey_bag, load_r2r(episodes, tokenize=False),
                                  p.connectivity or str(Path(p.world) / "connectivity"), config, progress=False)
        self.get_logger().info(f"playing scan {world.survey.scan} from survey bag {p.survey_bag}: "
                               f"{len(world.survey.places)} of {len(world.graph)} places recorded, "
                               f"{len(world.episodes)} episode(s)")
        return world

    # -- recording ------------------------------------------------------------------------------
    def _record(self, topic: str, msgtype: str, msg: object) -> None:
        if self.recorder is not None:
            self.recorder.write(topic, msgtype, self.get_clock().now().nanoseconds, serialize_message(msg))

    def _publish(self, pub, msgtype: str, msg: object) -> None:
        pub.publish(msg)
        self._record(pub.topic_name, msgtype, msg)

    def destroy_node(self) -> None:
        """Close the bag (writes metadata.yaml), then destroy the node."""
        if self.recorder is not None and not self.recorder.closed:
            self.recorder.close()
            counts = ", ".join(f"{t} x{n}" for t, n in sorted(self.recorder.counts.items()))
            closing_logger(self).info(f"bag {self.p.record} closed: {counts or 'no messages'}")
        super().destroy_node()

    # -- survey ---------------------------------------------------------------------------------
    def _survey_start(self) -> list[str]:
        """Stand in the surveyed building (`survey_scan`, else the first episode's) and list its places."""
        p = self.p
        scan = p.survey_scan or self.world.episode(p.first_episode).scan
        episode = next((ep for ep in self.world.episodes if ep.scan == scan), None)
        if episode is None:
            raise ParamError(f"parameter 'survey_scan': {scan!r} has no episode in split {p.split} (buildings: "
                             f"{', '.join(sorted(self.world.graphs))})")
        self.world.start(episode)
        places = list(self.world.graph.viewpoints)
        self.get_logger().info(f"surveying scan {scan}: {len(places)} places")
        return places

    def _survey_next(self) -> None:
        """Publish the observations of the next place (heading 0); done after the last one."""
        if self.done:
            return
        if not self._survey_places:
            self.get_logger().info("survey done")
            self.done = True
            return
        cur = self.world.current
        cur.viewpoint, cur.heading = self._survey_places.pop(0), 0.0
        self.publish_observations()

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
        self._publish(self.instruction_pub, bag_types.STRING, String(data=self.world.current.episode.instruction))
        self._instruction_sent = True

    def _on_status(self, msg: NavigatorStatus) -> None:
        self._record(self.status_sub.topic_name, bag_types.NAVIGATOR_STATUS, msg)
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
        record = {"instr_id": cur.episode.instr_id, "scan": cur.episode.scan, "state": status.state_name,
                  "success": result.success, "ne": round(result.navigation_error, 2), "spl": round(result.spl, 3),
                  "ndtw": round(result.ndtw, 3), "steps": status.step, "goals": result.goals,
                  "trajectory": result.trajectory}
        self.results.append(record)
        print(json.dumps(record), flush=True)
        self._navigator_episode = None
        if self.queue:
            self._start_next()
        elif self.p.exit_when_done:
            self.done = True

    # -- motion -------------------------------------------------------------------------------
    def _on_goal(self, msg: PoseStamped) -> None:
        self._record(self.goal_sub.topic_name, bag_types.POSE_STAMPED, msg)
        try:
            position, heading = goal_from_pose_stamped(msg, self.p.map_frame)
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
        self._publish(self.odom_pub, bag_types.ODOMETRY, odom)
        self._publish(self.waypoints_pub, bag_types.POSE_ARRAY, waypoints)
        self._publish(self.pano_pub, bag_types.IMAGE, image_from_rgb(self.world.panorama(), header))


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
