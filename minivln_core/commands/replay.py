"""`minivln replay`: score a checkpoint on recorded rosbag2 bags, open or closed loop (docs/replay.md).

* open loop (`--mode open`): the bag of a navigator run (sim_robot `record`, or `ros2 bag record`
  of the node's topics) is fed through the agent; reports per-decision agreement with the
  recorded goals and, with `--episodes`, the recorded run's metrics.
* closed loop (`--mode closed`): a survey bag (one recording per place of a building) answers the
  agent's goals; the checkpoint is evaluated on the `--episodes` of that building. In-process by
  default, or with `--ros` through the real navigator node with sim_robot playing the bag.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from minivln_core.config import build_config, to_dict
from minivln_core.errors import ConfigError
from minivln_core.replay.config import ReplayConfig

log = logging.getLogger("minivln.replay")


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


def _episodes(args: argparse.Namespace) -> tuple[list[Any], Path, Path] | None:
    """(episodes, episodes file, connectivity folder) when --episodes is given."""
    from minivln_core.data.r2r import load_r2r

    if not args.episodes:
        if args.mode == "closed":
            raise ConfigError("--mode closed needs --episodes (the instructions to evaluate in the surveyed building)")
        return None
    path = Path(args.episodes)
    connectivity = Path(args.connectivity) if args.connectivity else path.resolve().parent.parent / "connectivity"
    if not connectivity.is_dir():
        raise ConfigError(f"connectivity folder {connectivity} does not exist: give --connectivity")
    return load_r2r(path, tokenize=False), path, connectivity


def _navigator(args: argparse.Namespace, config: ReplayConfig):
    from minivln_core.agent.online import OnlineNavigator, load_extractor_config

    extractor = load_extractor_config(args.checkpoint, args.features_file, args.vit_weights)
    return OnlineNavigator.from_checkpoint(args.checkpoint, extractor, max_steps=config.max_steps,
                                           place_tolerance=config.place_tolerance, threads=config.threads,
                                           cache_size=config.feature_cache_size)


def run(args: argparse.Namespace) -> int:
    from minivln_core.eval.trajectories import summary_text

    config = build_config(ReplayConfig, yaml_path=args.config, overrides=args.set)
    if args.ros and args.mode != "closed":
        raise ConfigError("--ros plays a survey bag to the navigator node: it needs --mode closed")
    if not (Path(args.checkpoint) / "config.json").is_file():
        raise ConfigError(f"--checkpoint {args.checkpoint} is not a checkpoint directory (no config.json)")
    annotated = _episodes(args)
    out = Path(args.out)
    summary = (run_open if args.mode == "open" else run_closed)(args, config, annotated, out)
    print(json.dumps(summary, indent=2))
    if "metrics" in summary:
        print(summary_text(summary["metrics"]))
    if "agreement" in summary:
        print(f"Agreement with the recorded decisions: {summary['agreeing']} of {summary['decisions']} "
              f"({summary['agreement']:.1f}%).")
    return 0


def _summary(args: argparse.Namespace, config: ReplayConfig, **extra: Any) -> dict[str, Any]:
    return {"mode": args.mode, "bag": str(args.bag), "checkpoint": str(args.checkpoint),
            "episodes_file": args.episodes, "config": to_dict(config), **extra}


def _xyz(p: np.ndarray | None) -> list[float] | None:
    return None if p is None else np.round(p, 3).tolist()


def _episode_record(rec: Any, tolerance: float, matcher: Any = None) -> dict[str, Any]:
    """JSON of one replayed episode: recorded state, agreement, and each decision (goals as places when known)."""
    def place(p: np.ndarray | None) -> str | None:
        return None if p is None or matcher is None else matcher.match(p)

    decisions = [{"step": d.step, "agree": d.agrees(tolerance), "position": _xyz(d.position),
                  "recorded_goal": _xyz(d.recorded_goal), "recorded_goal_place": place(d.recorded_goal),
                  "recorded_stop": d.recorded_stop, "replayed_goal": _xyz(d.replayed_goal),
                  "replayed_goal_place": place(d.replayed_goal), "replayed_stop": d.replayed_stop,
                  "replayed_stop_prob": d.replayed_stop_prob, "note": d.note} for d in rec.decisions]
    agree = sum(d["agree"] for d in decisions)
    return {"navigator_episode": rec.number, "recorded_state": rec.state, "agreeing": agree,
            "agreement": 100.0 * agree / len(decisions) if decisions else 0.0, "decisions": decisions}


def run_open(args: argparse.Namespace, config: ReplayConfig, annotated, out: Path) -> dict[str, Any]:
    """Open loop: agreement, and the recorded run scored when episodes are given."""
    from minivln_core.data.connectivity import load_connectivity
    from minivln_core.io_utils import atomic_write_json
    from minivln_core.replay.bag import BagError, BagReader
    from minivln_core.replay.openloop import NEED, ROLES, match_episodes, replay_open_loop
    from minivln_core.replay.outputs import Outcome, write_outputs
    from minivln_core.replay.places import PlaceMatcher

    with BagReader(args.bag, config.topics, ROLES, NEED):
        pass  # a bad bag is reported before the model loads
    replayed = replay_open_loop(args.bag, _navigator(args, config), config, progress=not args.quiet)
    decisions = replayed.decisions()
    agreeing = sum(d.agrees(config.place_tolerance) for d in decisions)
    summary = _summary(args, config, recorded_episodes=len(replayed.episodes), decisions=len(decisions),
                       agreeing=agreeing, agreement=100.0 * agreeing / len(decisions) if decisions else 0.0,
                       dropped_inputs={"count": len(replayed.dropped), "first": replayed.dropped[:20]},
                       skipped_episodes=replayed.skipped)
    if annotated is None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "metrics.json", summary)
        atomic_write_json(out / "episodes.json", [{"instruction": rec.instruction,
                                                    **_episode_record(rec, config.place_tolerance)}
                                                   for rec in replayed.episodes])
        return summary
    episodes, episodes_file, connectivity = annotated
    graphs = load_connectivity(connectivity, sorted({ep.scan for ep in episodes}))
    outcomes = []
    for m in match_episodes(replayed, episodes, graphs, config, episodes_file):
        matcher = PlaceMatcher(graphs[m.episode.scan], config.match_tolerance)
        details = _episode_record(m.recorded, config.place_tolerance, matcher)
        marks = [d["replayed_goal_place"] for d in details["decisions"]
                 if not d["agree"] and d["replayed_goal_place"] is not None]
        outcomes.append(Outcome(m.episode, m.trajectory, details, marks, "replayed goal (disagrees)"))
    if not outcomes:
        raise BagError(args.bag, "holds no navigator episode with a decision to score")
    return write_outputs(out, outcomes, episodes_file, connectivity, graphs, summary, not args.no_pictures,
                         not args.quiet)


def run_closed(args: argparse.Namespace, config: ReplayConfig, annotated, out: Path) -> dict[str, Any]:
    """Closed loop from a survey bag, in-process or over ROS; full metrics."""
    from minivln_core.replay.closedloop import play_episodes
    from minivln_core.replay.outputs import Outcome, write_outputs
    from minivln_core.replay.survey import load_survey_world

    episodes, episodes_file, connectivity = annotated
    world = load_survey_world(args.bag, episodes, connectivity, config, progress=not args.quiet)
    missing = world.survey.missing()
    if missing:
        log.warning("the survey has no recording of %d of %d places of %s: goals there fail", len(missing),
                    len(world.graph), world.survey.scan)
    chosen = world.episodes[: args.limit] if args.limit else world.episodes
    if args.ros:
        from minivln_core.replay.over_ros import play_over_ros

        records = play_over_ros(Path(args.bag), Path(args.checkpoint), episodes_file, connectivity, config,
                                args.limit, args.features_file, args.vit_weights, args.timeout, out / "logs")
        outcomes = [Outcome(world.episode(r["instr_id"]), r["trajectory"],
                            {"state": r["state"], "goals": r["goals"], "steps": r["steps"]}) for r in records]
    else:
        played = play_episodes(_navigator(args, config), world, chosen, progress=not args.quiet)
        outcomes = [Outcome(world.episode(p.instr_id), p.trajectory,
                            {"state": p.state, "message": p.message, "goals": p.goals, "steps": len(p.decisions),
                             "decisions": p.decisions}) for p in played]
    summary = _summary(args, config, via="ros" if args.ros else "in-process", scan=world.survey.scan,
                       surveyed_places=len(world.survey.places), building_places=len(world.graph),
                       survey_dropped_inputs={"count": len(world.survey.dropped), "first": world.survey.dropped[:20]})
    return write_outputs(out, outcomes, episodes_file, connectivity, world.graphs, summary, not args.no_pictures,
                         not args.quiet)
