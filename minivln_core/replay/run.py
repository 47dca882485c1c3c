"""Replay a recorded bag through the navigator's agent, open or closed loop (`minivln replay`).

* open loop (`mode="open"`): the bag of a navigator run (sim_robot `record`, or `ros2 bag record`
  of the node's topics) is fed through the agent; reports per-decision agreement with the
  recorded goals and, with `episodes`, the recorded run's metrics.
* closed loop (`mode="closed"`): a survey bag (one recording per place of a building) answers the
  agent's goals; the checkpoint is evaluated on the `episodes` of that building. In-process by
  default, or with `ros` through the real navigator node with sim_robot playing the bag.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from minivln_core.config import to_dict
from minivln_core.errors import ConfigError
from minivln_core.models.shipped import resolve_checkpoint
from minivln_core.replay.config import ReplayConfig

log = logging.getLogger("minivln.replay")


@dataclass(frozen=True)
class ReplayRequest:
    """What to replay and where to write: the command line of `minivln replay`, typed."""

    bag: str                                  # rosbag2 folder (with metadata.yaml)
    checkpoint: str                           # checkpoint directory or shipped name (with extractor.json, or features_file)
    mode: Literal["open", "closed"] = "open"
    episodes: str | None = None               # R2R-format episodes file (required for closed loop)
    connectivity: str | None = None           # default: <episodes>/../../connectivity
    out: str = "runs/replay"
    ros: bool = False                         # closed loop through the real nodes instead of in-process
    limit: int = 0                            # closed loop: only the first N episodes of the building
    features_file: str | None = None          # views_vit.h5 whose extractor settings to use
    vit_weights: str | None = None            # ViT weights folder replacing the recorded one
    timeout: float = 600.0                    # ros: seconds before giving up
    pictures: bool = True                     # per-episode pictures
    progress: bool = True                     # progress bars


def run_replay(req: ReplayRequest, config: ReplayConfig) -> dict[str, Any]:
    """Check the request, replay the bag open or closed loop; writes the outputs into `req.out`."""
    if req.ros and req.mode != "closed":
        raise ConfigError("--ros plays a survey bag to the navigator node: it needs --mode closed")
    req = dataclasses.replace(req, checkpoint=str(resolve_checkpoint(req.checkpoint)))  # a shipped name too
    if not (Path(req.checkpoint) / "config.json").is_file():
        raise ConfigError(f"--checkpoint {req.checkpoint} is not a checkpoint directory (no config.json)")
    annotated = _episodes(req)
    return (run_open if req.mode == "open" else run_closed)(req, config, annotated, Path(req.out))


def _episodes(req: ReplayRequest) -> tuple[list[Any], Path, Path] | None:
    """(episodes, episodes file, connectivity folder) when --episodes is given."""
    from minivln_core.data.r2r import load_r2r

    if not req.episodes:
        if req.mode == "closed":
            raise ConfigError("--mode closed needs --episodes (the instructions to evaluate in the surveyed building)")
        return None
    path = Path(req.episodes)
    connectivity = Path(req.connectivity) if req.connectivity else path.resolve().parent.parent / "connectivity"
    if not connectivity.is_dir():
        raise ConfigError(f"connectivity folder {connectivity} does not exist: give --connectivity")
    return load_r2r(path, tokenize=False), path, connectivity


def _navigator(req: ReplayRequest, config: ReplayConfig):
    from minivln_core.agent.online import OnlineNavigator
    from minivln_core.perception.config import load_extractor_config
    from minivln_core.perception.variant_choice import apply_variant

    extractor, reason = apply_variant(req.checkpoint, load_extractor_config(req.checkpoint, req.features_file,
                                                                            req.vit_weights),
                                      config.extractor_variant)
    log.info("extractor variant: %s", reason)
    return OnlineNavigator.from_checkpoint(req.checkpoint, extractor, max_steps=config.max_steps,
                                           place_tolerance=config.place_tolerance, threads=config.threads,
                                           cache_size=config.feature_cache_size)


def _summary(req: ReplayRequest, config: ReplayConfig, **extra: Any) -> dict[str, Any]:
    return {"mode": req.mode, "bag": str(req.bag), "checkpoint": str(req.checkpoint),
            "episodes_file": req.episodes, "config": to_dict(config), **extra}


def _xyz(p: np.ndarray | None) -> list[float] | None:
    return None if p is None else np.round(p, 3).tolist()


def _finite(x: float | None) -> float | None:
    """JSON has no infinity: a single-choice decision's margin is written as null."""
    return None if x is None or not np.isfinite(x) else x


def _episode_record(rec: Any, tolerance: float, state_tolerance: float, matcher: Any = None) -> dict[str, Any]:
    """JSON of one replayed episode: recorded state, agreement, and each decision (goals as places when known)."""
    def place(p: np.ndarray | None) -> str | None:
        return None if p is None or matcher is None else matcher.match(p)

    decisions = [{"step": d.step, "agree": d.agrees(tolerance), "same_state": d.same_state(state_tolerance),
                  "position": _xyz(d.position),
                  "recorded_goal": _xyz(d.recorded_goal), "recorded_goal_place": place(d.recorded_goal),
                  "recorded_stop": d.recorded_stop, "replayed_goal": _xyz(d.replayed_goal),
                  "replayed_goal_place": place(d.replayed_goal), "replayed_stop": d.replayed_stop,
                  "recorded_stop_prob": d.recorded_stop_prob, "replayed_stop_prob": d.replayed_stop_prob,
                  "recorded_map_nodes": d.recorded_map_nodes, "replayed_map_nodes": d.replayed_map_nodes,
                  "replayed_margin": _finite(d.replayed_margin), "note": d.note} for d in rec.decisions]
    agree = sum(d["agree"] for d in decisions)
    return {"navigator_episode": rec.number, "recorded_state": rec.state, "agreeing": agree,
            "agreement": 100.0 * agree / len(decisions) if decisions else 0.0, "decisions": decisions}


def run_open(req: ReplayRequest, config: ReplayConfig, annotated, out: Path) -> dict[str, Any]:
    """Open loop: agreement, and the recorded run scored when episodes are given."""
    from minivln_core.data.connectivity import load_connectivity
    from minivln_core.io_utils import atomic_write_json
    from minivln_core.replay.openloop import NEED, ROLES, match_episodes, replay_open_loop
    from minivln_core.replay.outputs import Outcome, write_outputs
    from minivln_core.replay.places import PlaceMatcher
    from minivln_core.robot.bag import BagError, BagReader

    with BagReader(req.bag, config.topics, ROLES, NEED):
        pass  # a bad bag is reported before the model loads
    replayed = replay_open_loop(req.bag, _navigator(req, config), config, progress=req.progress)
    decisions = replayed.decisions()
    agreeing = sum(d.agrees(config.place_tolerance) for d in decisions)
    differences = replayed.state_differences(config.state_tolerance)
    if differences:
        log.warning("%d of %d decisions were replayed from another state than the node's (its stop probability or "
                    "map size differs): the node decided from other inputs than the bag shows, or other settings; "
                    "first: %s", len(differences), len(decisions), differences[0])
    max_steps = replayed.recorded_max_steps()
    if max_steps is not None:
        log.warning("the recording navigator stopped at decision %d from the replay's state where the replayed agent "
                    "went on: it ran with max_steps=%d, the replay with %d; replay with --set max_steps=%d",
                    max_steps, max_steps, config.max_steps, max_steps)
    summary = _summary(req, config, recorded_episodes=len(replayed.episodes), decisions=len(decisions),
                       agreeing=agreeing, agreement=100.0 * agreeing / len(decisions) if decisions else 0.0,
                       same_state=sum(d.same_state(config.state_tolerance) is True for d in decisions),
                       state_differences={"count": len(differences), "first": differences[:20]},
                       recorded_max_steps=max_steps,
                       dropped_inputs={"count": len(replayed.dropped), "first": replayed.dropped[:20]},
                       skipped_episodes=replayed.skipped)
    if annotated is None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "metrics.json", summary)
        atomic_write_json(out / "episodes.json", [
            {"instruction": rec.instruction, **_episode_record(rec, config.place_tolerance, config.state_tolerance)}
            for rec in replayed.episodes])
        return summary
    episodes, episodes_file, connectivity = annotated
    graphs = load_connectivity(connectivity, sorted({ep.scan for ep in episodes}))
    outcomes = []
    for m in match_episodes(replayed, episodes, graphs, config, episodes_file):
        matcher = PlaceMatcher(graphs[m.episode.scan], config.match_tolerance)
        details = _episode_record(m.recorded, config.place_tolerance, config.state_tolerance, matcher)
        marks = [d["replayed_goal_place"] for d in details["decisions"]
                 if not d["agree"] and d["replayed_goal_place"] is not None]
        outcomes.append(Outcome(m.episode, m.trajectory, details, marks, "replayed goal (disagrees)"))
    if not outcomes:
        raise BagError(req.bag, "holds no navigator episode with a decision to score")
    return write_outputs(out, outcomes, episodes_file, connectivity, graphs, summary, req.pictures,
                         req.progress)


def run_closed(req: ReplayRequest, config: ReplayConfig, annotated, out: Path) -> dict[str, Any]:
    """Closed loop from a survey bag, in-process or over ROS; full metrics."""
    from minivln_core.replay.closedloop import play_episodes
    from minivln_core.replay.outputs import Outcome, write_outputs
    from minivln_core.replay.survey import load_survey_world

    episodes, episodes_file, connectivity = annotated
    world = load_survey_world(req.bag, episodes, connectivity, config, progress=req.progress)
    missing = world.survey.missing()
    if missing:
        log.warning("the survey has no recording of %d of %d places of %s: goals there fail", len(missing),
                    len(world.graph), world.survey.scan)
    chosen = world.episodes[: req.limit] if req.limit else world.episodes
    if req.ros:
        from minivln_core.replay.over_ros import play_over_ros

        records = play_over_ros(Path(req.bag), Path(req.checkpoint), episodes_file, connectivity, config,
                                req.limit, req.features_file, req.vit_weights, req.timeout, out / "logs")
        outcomes = [Outcome(world.episode(r["instr_id"]), r["trajectory"],
                            {"state": r["state"], "goals": r["goals"], "steps": r["steps"]}) for r in records]
    else:
        played = play_episodes(_navigator(req, config), world, chosen, progress=req.progress)
        outcomes = [Outcome(world.episode(p.instr_id), p.trajectory,
                            {"state": p.state, "message": p.message, "goals": p.goals, "steps": len(p.decisions),
                             "decisions": p.decisions}) for p in played]
    summary = _summary(req, config, via="ros" if req.ros else "in-process", scan=world.survey.scan,
                       surveyed_places=len(world.survey.places), building_places=len(world.graph),
                       survey_dropped_inputs={"count": len(world.survey.dropped), "first": world.survey.dropped[:20]})
    return write_outputs(out, outcomes, episodes_file, connectivity, world.graphs, summary, req.pictures,
                         req.progress)
