"""`minivln ros-demo`: sim_robot + navigator as two ROS 2 processes over DDS on localhost, end to end.

For machines without `ros2 launch`: it starts `python -m minivln_ros.sim_robot_node` and
`python -m minivln_ros.navigator_node` with the package's params files (config/*.yaml), waits for
the simulated robot to finish its episodes and prints their scores. The core never imports
rclpy: this command only starts subprocesses (`minivln_core.robot.launch`). By default the
robot plays the embedded world (built into the cache on first use, about a minute) with the
shipped `embedded-student` policy, so it navigates for real. `--tiny` builds a tiny demo instead
(a 2-house world, a random tiny ViT and a random tiny student: the robot moves, the policy has
learned nothing) for a quick check that the ROS plumbing works.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from minivln_core.errors import ConfigError
from minivln_core.robot.launch import node_command, ros_environment, run_navigator_and_sim


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ros-demo", help="run sim_robot + navigator as ROS 2 processes (DDS on localhost)",
                       description="Start sim_robot and navigator with config/*.yaml and play episodes end to end.")
    p.add_argument("--world", help="world folder (synth + `minivln features --world`); default: the embedded "
                                   "world, built on first use into $MINIVLN_CACHE (else ~/.cache/minivln)")
    p.add_argument("--checkpoint", default="embedded-student",
                   help="checkpoint directory or shipped name (with extractor.json, or the world's views_vit.h5 "
                        "is used); default: embedded-student, trained on the embedded world")
    p.add_argument("--tiny", action="store_true",
                   help="a tiny demo world and a RANDOM tiny student instead (plumbing check; nothing learned)")
    p.add_argument("--episodes", type=int, default=1, help="episodes to play (0 = all of the split)")
    p.add_argument("--split", default="val_unseen", help="annotation split")
    p.add_argument("--max-steps", type=int, default=15, help="decisions per episode")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds before giving up")
    p.add_argument("--workdir", help="where the tiny demo and the ROS logs go (default: a temporary folder)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.tiny and args.world:
        raise ConfigError("--tiny builds its own world: give --tiny or --world, not both")
    with tempfile.TemporaryDirectory(prefix="minivln-ros-demo-") as tmp:
        root = Path(args.workdir or tmp)
        if args.tiny:
            from minivln_core.experiments.tiny_demo import build_tiny_demo

            print(f"[ros-demo] building a tiny demo world and RANDOM checkpoint in {root}", flush=True)
            world, ckpt = build_tiny_demo(root, meta={"note": "random weights (ros-demo)"})
        else:
            if args.world is None:
                from minivln_core.experiments.embedded_world import ensure_embedded_world

                print("[ros-demo] the embedded world (built on first use, about a minute)", flush=True)
                args.world = ensure_embedded_world()
            world, ckpt = Path(args.world), args.checkpoint
        features = world / "features" / "views_vit.h5"
        nav_params = {"checkpoint": ckpt, "max_steps": args.max_steps}
        if features.is_file():
            nav_params["features_file"] = features
        nav_cmd = node_command("navigator", nav_params)
        sim_cmd = node_command("sim_robot", {"world": world, "split": args.split, "num_episodes": args.episodes})
        for cmd in (nav_cmd, sim_cmd):
            print("[ros-demo] " + " ".join(cmd), flush=True)
        nodes = run_navigator_and_sim(nav_cmd, sim_cmd, ros_environment(root / "roslog"), args.timeout,
                                      echo=True)
        results = nodes.records
        if nodes.navigator_code not in (0, None, -15) or nodes.sim_code != 0 or not results:
            why = " (timed out)" if nodes.timed_out else ""
            print(f"[ros-demo] failed{why} (sim_robot exit {nodes.sim_code}, "
                  f"navigator exit {nodes.navigator_code})", file=sys.stderr)
            return 1
        done = sum(r["success"] for r in results)
        print(f"[ros-demo] {len(results)} episode(s), {done} success(es)")
        return 0
