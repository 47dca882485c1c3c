"""Soak: >= 1,000 decisions of the real navigator process over many episodes, its memory flat after warm-up.

The navigator runs as its own process (the `navigator` executable) so that its resident memory
(VmRSS from /proc) is the node's alone. This test process plays the robot on the tiny world
(`SimWorld`): it publishes the panorama, waypoints and odometry of its place, drives to every
goal, and starts the next episode (cycling through every split) when the navigator reports the
episode finished. After warm-up, RSS is sampled at the end of each episode and a straight line
is fitted against the number of decisions; its slope must stay below SLOPE_BOUND.

Why SLOPE_BOUND = 1 MB per 100 decisions (10 kB per decision): the smallest per-decision object
a leak would plausibly keep is one panorama (192 x 96 x 3 = 55 kB here) or one episode's map and
path, which would give >= 5 MB per 100 decisions; allocator noise measured over this run is a few
hundred kB in total. The feature cache is bounded by `feature_cache_size` = 8, fewer than the
places visited, so the ViT must run again for evicted places (counted in the log), and each
episode starts with an empty map (`num_map_nodes` after its first decision = 1 + waypoints).
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("minivln_interfaces.msg", reason="messages not built: run scripts/build_interfaces.sh")
if not Path("/proc/self/status").exists():
    pytest.skip("RSS is read from /proc (Linux)", allow_module_level=True)

from geometry_msgs.msg import PoseArray, PoseStamped  # noqa: E402
from minivln_interfaces.msg import NavigatorStatus  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from minivln_core.robot.launch import node_command, ros_environment, stop_process  # noqa: E402
from minivln_core.sim.world_robot import SimWorld  # noqa: E402

from fixtures_online import MAX_STEPS  # noqa: E402
from fixtures_ros import RELIABLE, follow_goals, now_seconds, place_messages, spin_until  # noqa: E402

DECISIONS = 1000
WARMUP = 200             # decisions before RSS is fitted
SLOPE_BOUND = 1.0        # MB per 100 decisions (see the module docstring)
CACHE = 8                # feature_cache_size
PANO_WIDTH = 192
NAMESPACE = "/soak"      # nodes of other tests of the session cannot add messages
STATUS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for process {pid}")


def test_a_thousand_decisions_with_flat_memory(online, ros_context, tmp_path) -> None:
    env = dict(ros_environment(tmp_path / "roslog"), OMP_NUM_THREADS="1")
    log_path = tmp_path / "navigator.log"
    with open(log_path, "w") as log:
        nav = subprocess.Popen(node_command("navigator", {
            "checkpoint": online["checkpoint"], "max_steps": MAX_STEPS, "threads": 1, "feature_cache_size": CACHE,
            "tick_period": 0.01, "goal_timeout": 20.0}, namespace=NAMESPACE), env=env, stdout=log,
            stderr=subprocess.STDOUT)
    executor = SingleThreadedExecutor(context=ros_context)
    robot = rclpy.create_node("soak_robot", context=ros_context, namespace=NAMESPACE)
    executor.add_node(robot)
    pubs = {"instruction": robot.create_publisher(String, "instruction", RELIABLE),
            "panorama": robot.create_publisher(Image, "panorama", RELIABLE),
            "waypoints": robot.create_publisher(PoseArray, "navigable_waypoints", RELIABLE),
            "odom": robot.create_publisher(Odometry, "odom", RELIABLE)}
    statuses: list[NavigatorStatus] = []
    goals: list[PoseStamped] = []
    robot.create_subscription(NavigatorStatus, "navigator_status", statuses.append, STATUS)
    robot.create_subscription(PoseStamped, "goal_pose", goals.append, RELIABLE)
    worlds = [SimWorld(online["world"], split=s, pano_width=PANO_WIDTH) for s in ("train", "val_seen", "val_unseen")]
    episodes = [(w, ep) for w in worlds for ep in w.episodes]
    samples: list[tuple[int, float]] = []   # (decisions so far, RSS MB) at the end of each episode
    first_maps: list[tuple[int, int]] = []  # (num_map_nodes after the first decision, 1 + waypoints at start)
    visited: set[tuple[str, str]] = set()   # places where the robot published observations
    decisions, episode_id, started = 0, 0, time.monotonic()

    def spin(predicate, timeout: float) -> bool:
        def check() -> bool:
            assert nav.poll() is None, f"the navigator died: {log_path.read_text()[-3000:]}"
            return predicate()

        return spin_until(executor, check, timeout, period=0.01)

    def publish_place(world: SimWorld) -> None:
        visited.add((world.current.episode.scan, world.current.viewpoint))
        for topic, msg in zip(("odom", "waypoints", "panorama"), place_messages(world, now_seconds(robot))):
            pubs[topic].publish(msg)

    def finished() -> bool:
        return statuses[-1].episode_id == episode_id and statuses[-1].state_name in ("arrived", "failed")

    try:
        assert spin(lambda: statuses and pubs["instruction"].get_subscription_count() >= 1, 60), \
            "the navigator did not come up"
        while decisions < DECISIONS:
            world, episode = episodes[episode_id % len(episodes)]
            world.start(episode)
            start_waypoints = len(world.waypoints())
            publish_place(world)
            episode_id += 1
            seen = len(goals)
            pubs["instruction"].publish(String(data=episode.instruction))
            follow_goals(spin, world, goals, seen, finished, lambda: publish_place(world), 30)
            last = statuses[-1]
            assert last.state_name == "arrived", last.message
            first = next((s.num_map_nodes for s in statuses if s.episode_id == episode_id and s.step == 1), None)
            decisions += last.step
            first_maps.append((first, 1 + start_waypoints))
            samples.append((decisions, rss_mb(nav.pid)))
        seconds = time.monotonic() - started
    finally:
        stop_process(nav, signal.SIGINT, timeout=20)  # Ctrl-C: the node logs its totals and exits with 0
        robot.destroy_node()
    text = log_path.read_text()
    assert nav.returncode == 0 and "Traceback" not in text and "[ERROR]" not in text, text[-3000:]
    assert all(got == want for got, want in first_maps), "every episode starts with a fresh map"
    steps = np.array([d for d, _ in samples if d >= WARMUP], dtype=float)
    rss = np.array([m for d, m in samples if d >= WARMUP])
    slope = float(np.polyfit(steps, rss, 1)[0]) * 100.0  # MB per 100 decisions
    vit_runs = len(re.findall(r"ViT ran\)", text))
    print(f"\nsoak: {decisions} decisions in {episode_id} episodes, {seconds:.0f} s "
          f"({1000 * seconds / decisions:.0f} ms per decision); RSS {samples[0][1]:.1f} -> {samples[-1][1]:.1f} MB, "
          f"after warm-up {rss.min():.1f}..{rss.max():.1f} MB, slope {slope:+.3f} MB per 100 decisions; "
          f"ViT ran {vit_runs} times for {len(visited)} places")
    assert decisions >= DECISIONS and episode_id >= 20
    assert slope < SLOPE_BOUND, f"RSS grows by {slope:.2f} MB per 100 decisions"
    assert len(visited) > CACHE and vit_runs > len(visited), "the bounded cache evicts places: the ViT runs again"
