"""`minivln replay`: score a checkpoint on recorded rosbag2 bags, open or closed loop (docs/replay.md;
the work is `minivln_core.replay.run`)."""

from __future__ import annotations

import argparse
import json

from minivln_core.config import build_config
from minivln_core.replay.config import ReplayConfig
from minivln_core.replay.run import ReplayRequest, run_replay


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="score a checkpoint on recorded rosbag2 bags (open or closed loop)",
                       description="Replay a rosbag2 bag (mcap or sqlite3) through the navigator's agent. Open loop: "
                                   "agreement with the recorded decisions (+ the recorded run's SR/SPL/nDTW with "
                                   "--episodes). Closed loop: a survey bag plays the building; full metrics on "
                                   "--episodes. Writes results.json (standard format), metrics.json, episodes.json "
                                   "and pictures/<instr_id>.png.")
    p.add_argument("--bag", required=True, help="rosbag2 folder (with metadata.yaml)")
    p.add_argument("--checkpoint", required=True, help="checkpoint directory (with extractor.json, or give "
                                                       "--features-file)")
    p.add_argument("--mode", choices=["open", "closed"], default="open", help="open: recorded run; closed: survey")
    p.add_argument("--episodes", help="R2R-format episodes file with the reference paths (required for closed)")
    p.add_argument("--connectivity", help="connectivity folder (default: <episodes>/../../connectivity, the world "
                                          "layout)")
    p.add_argument("--out", default="runs/replay", help="output folder")
    p.add_argument("--ros", action="store_true", help="closed loop through the real navigator node over ROS "
                                                      "(sim_robot plays the survey bag) instead of in-process")
    p.add_argument("--limit", type=int, default=0, help="closed loop: only the first N episodes of the building")
    p.add_argument("--features-file", help="views_vit.h5 whose extractor settings to use (no extractor.json)")
    p.add_argument("--vit-weights", help="ViT weights folder replacing the recorded one")
    p.add_argument("--config", help="YAML overrides of the replay settings (topics, max_steps, tolerances)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set max_steps=6 --set topics.odom=/robot/odom")
    p.add_argument("--timeout", type=float, default=600.0, help="--ros: seconds before giving up")
    p.add_argument("--no-pictures", action="store_true", help="skip the per-episode pictures")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from minivln_core.eval.trajectories import summary_text

    config = build_config(ReplayConfig, yaml_path=args.config, overrides=args.set)
    request = ReplayRequest(args.bag, args.checkpoint, args.mode, args.episodes, args.connectivity, args.out,
                            args.ros, args.limit, args.features_file, args.vit_weights, args.timeout,
                            pictures=not args.no_pictures, progress=not args.quiet)
    summary = run_replay(request, config)
    print(json.dumps(summary, indent=2))
    if "metrics" in summary:
        print(summary_text(summary["metrics"]))
    if "agreement" in summary:
        print(f"Agreement with the recorded decisions: {summary['agreeing']} of {summary['decisions']} "
              f"({summary['agreement']:.1f}%).")
    return 0
