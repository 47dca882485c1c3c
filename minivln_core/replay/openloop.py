"""Open-loop replay: the recorded observations go, in recording order, through `OnlineNavigator`.

The bag holds the navigator's inputs (instruction, panorama, waypoints, odometry) and outputs
(goal_pose, navigator_status). Every status whose `step` grew is one recorded decision; the
replay makes its own decision there from the inputs the node had — the latest panorama,
waypoint set and pose recorded before the decision's goal (or, for a stop in place, its status)
— with the same `OnlineNavigator.decide` the node runs, one navigator for the whole bag as in
the node (its place registry and per-place feature cache carry over between episodes). With the
recording's checkpoint and settings every decision agrees; with another checkpoint the
agreement says how often it would have decided the same.

A recorded decision is its goal (None for a stop in place) and whether it ended the episode
(the episode's last decision when the navigator reported `arrived`; unknown for an episode cut
short). Inputs the node would drop (wrong encoding, frame, size) are dropped here too and
listed in `dropped`, each naming its message.

Whether the replay held the node's state is checked too: the status of each decision carries
the node's stop probability and map size, which the replayed decision must reproduce
(`ReplayedDecision.same_state`; the same computation gives the same float32 number). A
decision that disagrees with the same state is a near-tie decided differently or a setting
(`max_steps`: a recorded stop the replay does not make); with another state, the node decided
from other inputs than the bag shows. `replayed_margin` (best minus second-best logit) says how
near a tie each replayed decision was.

The recorded run itself — the places the odometry passed, gaps filled with shortest paths as
`sim_robot` scores — is matched to the episodes file by instruction and start (`match_episodes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from minivln_core.agent.online import OnlineNavigator
from minivln_core.errors import ConfigError
from minivln_core.replay.config import ReplayConfig
from minivln_core.robot import messages as M
from minivln_core.robot.bag import BagError, BagMessage, BagReader
from minivln_core.robot.inputs import (
    InputError,
    check_order,
    instruction_text,
    panorama_from_message,
    position_of,
    robot_pose_from_odometry,
    stamp_seconds,
    waypoints_from_pose_array,
)

ROLES = ("instruction", "panorama", "compressed_panorama", "waypoints", "odom", "goal", "status")
NEED = (("instruction",), ("panorama", "compressed_panorama"), ("waypoints",), ("odom",), ("goal",), ("status",))


@dataclass
class Inputs:
    """What the navigator had at one moment: the latest usable panorama, waypoints and pose."""

    panorama: np.ndarray | None = None          # (H, W, 3) uint8 RGB
    waypoints: list[np.ndarray] | None = None   # (3,) each
    pose: tuple[np.ndarray, float] | None = None  # position (3,), heading
    pose_index: int = -1                        # odometry message index of `pose`

    def copy(self) -> "Inputs":
        return Inputs(self.panorama, self.waypoints, self.pose, self.pose_index)


@dataclass
class ReplayedDecision:
    """One recorded decision and the replayed one at the same inputs."""

    step: int                            # 1-based decision number in the episode
    status_index: int                    # navigator_status message that reported it
    pose_index: int                      # odometry message of the robot's pose then
    position: np.ndarray                 # (3,) robot position
    recorded_goal: np.ndarray | None     # (3,) goal_pose sent, None = no move
    recorded_stop: bool | None = None    # None = unknown (episode cut short)
    replayed_goal: np.ndarray | None = None
    replayed_stop: bool | None = None    # None = the replayed agent made no decision here
    replayed_stop_prob: float | None = None
    note: str = ""                       # why the replayed agent made no decision
    recorded_stop_prob: float | None = None  # the node's, from navigator_status (float32; None if NaN)
    recorded_map_nodes: int | None = None    # the node's map size after the decision (navigator_status)
    replayed_map_nodes: int | None = None
    replayed_margin: float | None = None     # best minus second-best logit of the replayed decision
    forced_stop: bool = False                # the node stopped here from the replay's state: max_steps ended it

    def agrees(self, tolerance: float) -> bool:
        """Same stop flag (where known) and the same goal place (or both stay)."""
        if self.replayed_stop is None:
            return False
        if self.recorded_stop is not None and self.recorded_stop != self.replayed_stop:
            return False
        if self.recorded_goal is None or self.replayed_goal is None:
            return self.recorded_goal is None and self.replayed_goal is None
        return float(np.linalg.norm(self.recorded_goal - self.replayed_goal)) <= tolerance

    def same_state(self, tolerance: float = ReplayConfig.state_tolerance) -> bool | None:
        """Whether the replay decided from the node's state: the same map size and stop probability
        (within `tolerance`) as the node reported; None when unknown (no replayed decision)."""
        if self.replayed_stop_prob is None:
            return None
        if None not in (self.recorded_map_nodes, self.replayed_map_nodes) and \
                self.recorded_map_nodes != self.replayed_map_nodes:
            return False
        if self.recorded_stop_prob is None:
            return None
        return abs(self.recorded_stop_prob - self.replayed_stop_prob) <= tolerance


@dataclass
class RecordedEpisode:
    """One navigator episode of the bag: instruction, decisions, the poses the robot passed."""

    number: int                          # the navigator's episode_id
    instruction: str
    instruction_index: int               # instruction message that started it
    state: str = "incomplete"            # recorded end: arrived / failed / preempted / incomplete
    decisions: list[ReplayedDecision] = field(default_factory=list)
    poses: list[tuple[np.ndarray, int]] = field(default_factory=list)  # odometry while it ran (position, index)
    pending: tuple[Inputs, np.ndarray] | None = None  # inputs + goal of a goal_pose awaiting its status
    replay_note: str = ""                # why the replayed agent stopped deciding early
    finished: bool = False

    def passed(self) -> list[tuple[np.ndarray, int]]:
        """Positions the robot reported from its first decision on (odometry message index each)."""
        if not self.decisions:
            return []
        first = self.decisions[0]
        return [(first.position, first.pose_index)] + [(p, i) for p, i in self.poses if i > first.pose_index]


@dataclass
class OpenLoopRun:
    """Everything the replay found: episodes with their decisions, and dropped inputs."""

    bag: Path
    episodes: list[RecordedEpisode]
    dropped: list[str]                   # one line per dropped input message
    skipped: list[str]                   # episodes not replayed (recording started mid-episode)

    def decisions(self) -> list[ReplayedDecision]:
        return [d for ep in self.episodes for d in ep.decisions]

    def recorded_max_steps(self) -> int | None:
        """The recording's max_steps when the bag shows it and it is not the replay's: the step of the node's
        forced stops (`ReplayedDecision.forced_stop`) when they agree; None otherwise."""
        steps = {d.step for d in self.decisions() if d.forced_stop}
        return steps.pop() if len(steps) == 1 else None

    def state_differences(self, tolerance: float = ReplayConfig.state_tolerance) -> list[str]:
        """One line per decision the replay made from another state than the node's (`same_state` False)."""
        lines = []
        for ep in self.episodes:
            for d in ep.decisions:
                if d.same_state(tolerance) is False:
                    lines.append(f"episode {ep.number} decision {d.step} (navigator_status message "
                                 f"{d.status_index}): the node had {d.recorded_map_nodes} map nodes and stop "
                                 f"probability {d.recorded_stop_prob}, the replay {d.replayed_map_nodes} and "
                                 f"{d.replayed_stop_prob}")
        return lines


class _Player:
    """Feeds bag messages one by one; keeps the node's view of its inputs."""

    def __init__(self, bag: Path, navigator: OnlineNavigator, config: ReplayConfig):
        self.bag, self.navigator, self.config = bag, navigator, config
        self.latest = Inputs()
        self.instruction: BagMessage | None = None
        self.episode: RecordedEpisode | None = None
        self.skip_id: int | None = None
        self.episodes: list[RecordedEpisode] = []
        self.dropped: list[str] = []
        self.skipped: list[str] = []
        self.held: dict[str, float] = {}  # stamp of the input held, per kind

    def drop(self, m: BagMessage, problem: Exception) -> None:
        self.dropped.append(f"topic {m.topic} message {m.index}: {problem}")

    def _in_order(self, what: str, m: BagMessage) -> None:
        """Like the node, refuse an input stamped before the one held."""
        stamp = stamp_seconds(m.msg.header)
        check_order(stamp, self.held.get(what), what)
        self.held[what] = stamp

    def feed(self, m: BagMessage) -> None:
        c = self.config
        try:
            if m.role in ("panorama", "compressed_panorama"):
                pano = panorama_from_message(m.msg, c.max_pano_width)
                self._in_order("panorama", m)
                self.latest.panorama = pano
            elif m.role == "waypoints":
                wps = waypoints_from_pose_array(m.msg, c.map_frame, c.max_waypoints)
                self._in_order("waypoints", m)
                self.latest.waypoints = wps
            elif m.role == "odom":
                pose = robot_pose_from_odometry(m.msg, c.map_frame)
                self._in_order("odometry", m)
                self.latest.pose, self.latest.pose_index = pose, m.index
                ep = self.episode
                if ep is not None and not ep.finished:
                    ep.poses.append((self.latest.pose[0], m.index))
            elif m.role == "instruction":
                instruction_text(m.msg.data, c.max_instruction_chars)
                self.instruction = m
            elif m.role == "goal":
                self._on_goal(m)
            elif m.role == "status":
                self._on_status(m)
        except InputError as err:
            self.drop(m, err)

    def _on_goal(self, m: BagMessage) -> None:
        ep = self.episode
        if ep is None or ep.finished:
            return  # a goal outside a replayed episode
        if ep.pending is not None:
            raise BagError(self.bag, f"a second goal before the navigator_status of decision {len(ep.decisions) + 1} "
                                     f"of episode {ep.number}: status messages were lost while recording",
                           m.topic, m.index)
        ep.pending = (self.latest.copy(), position_of(m.msg.pose, "goal"))

    def _on_status(self, m: BagMessage) -> None:
        s = m.msg
        if s.episode_id == 0 or s.episode_id == self.skip_id:
            return
        if self.episode is None or s.episode_id != self.episode.number:
            self._end_episode("preempted")
            if s.step != 0:
                self.skip_id = s.episode_id
                self.skipped.append(f"episode {s.episode_id}: the recording starts at its decision {s.step} "
                                    f"(topic {m.topic} message {m.index})")
                return
            self._begin(s, m)
        ep = self.episode
        if ep.finished:
            return
        if s.step > len(ep.decisions) + 1:
            raise BagError(self.bag, f"episode {ep.number} jumps from decision {len(ep.decisions)} to {s.step}: "
                                     "status messages were lost while recording", m.topic, m.index)
        if s.step == len(ep.decisions) + 1:
            self._decide(ep, s, m)
        if s.state in (M.STATE_ARRIVED, M.STATE_FAILED):
            self._end_episode(M.STATE_NAMES[s.state])

    def _begin(self, s: Any, m: BagMessage) -> None:
        ins = self.instruction
        if ins is None or ins.msg.data.strip() != s.instruction.strip():
            raise BagError(self.bag, f"episode {s.episode_id} ({s.instruction!r}) has no instruction message before "
                                     "it: the instruction topic was not recorded from the start", m.topic, m.index)
        self.navigator.begin(ins.msg.data)
        self.episode = RecordedEpisode(s.episode_id, ins.msg.data.strip(), ins.index)
        self.episodes.append(self.episode)

    def _decide(self, ep: RecordedEpisode, s: Any, m: BagMessage) -> None:
        inputs, goal = ep.pending if ep.pending is not None else (self.latest.copy(), None)
        ep.pending = None
        missing = [name for name in ("panorama", "waypoints", "pose") if getattr(inputs, name) is None]
        if missing:
            raise BagError(self.bag, f"decision {s.step} of episode {ep.number} has no usable {', '.join(missing)} "
                                     "recorded before it", m.topic, m.index)
        if s.step > self.config.max_steps:
            raise ConfigError(f"{self.bag}: episode {ep.number} has a decision {s.step} (navigator_status message "
                              f"{m.index}) but max_steps is {self.config.max_steps}: the recording navigator ran "
                              f"with a larger max_steps; replay with --set max_steps=<its max_steps>")
        position, heading = inputs.pose
        d = ReplayedDecision(s.step, m.index, inputs.pose_index, position.copy(), goal)
        stop_prob = float(s.stop_probability)
        d.recorded_stop_prob = stop_prob if np.isfinite(stop_prob) else None
        d.recorded_map_nodes = int(s.num_map_nodes) or None  # 0: not reported (the node's map has >= 1 node)
        ep.decisions.append(d)
        if not self.navigator.active:
            d.note = ep.replay_note or "the replayed agent had already stopped"
            return
        try:
            out = self.navigator.decide(inputs.panorama, position, heading, inputs.waypoints)
        except ValueError as err:  # the node would fail the episode here
            ep.replay_note = d.note = f"the replayed agent failed: {err}"
            self.navigator.cancel()
            return
        d.replayed_stop, d.replayed_stop_prob = bool(out.decision.stop), float(out.decision.stop_prob)
        d.replayed_goal = out.goal_position.copy() if out.moves else None
        d.replayed_map_nodes, d.replayed_margin = getattr(out, "num_map_nodes", None), getattr(out, "margin", None)
        if out.decision.stop:
            ep.replay_note = "the replayed agent had already stopped"

    def _end_episode(self, state: str) -> None:
        ep = self.episode
        if ep is None or ep.finished:
            return
        ep.state, ep.finished = state, True
        for d in ep.decisions[:-1]:
            d.recorded_stop = False
        if ep.decisions:  # the last decision stopped iff the navigator reported arrival
            last = ep.decisions[-1]
            last.recorded_stop = True if state == "arrived" else None
            if last.recorded_stop and last.replayed_stop is False and last.same_state(self.config.state_tolerance):
                # the same state and stop probability, yet the node stopped: its stop was forced
                last.forced_stop = True
                last.note = (f"the node stopped here from the same state (stop probability "
                             f"{last.recorded_stop_prob:.3f}): a forced stop, so the recording's max_steps was "
                             f"probably {last.step} (--set max_steps={last.step})")
        if self.navigator.active:
            self.navigator.cancel()

    def finish(self) -> OpenLoopRun:
        ep = self.episode
        if ep is not None and not ep.finished:
            for d in ep.decisions[:-1]:
                d.recorded_stop = False
        return OpenLoopRun(self.bag, self.episodes, self.dropped, self.skipped)


def replay_open_loop(bag: str | Path, navigator: OnlineNavigator, config: ReplayConfig,
                     progress: bool = True) -> OpenLoopRun:
    """Replay every navigator episode of a recorded bag through `navigator` (see the module docstring)."""
    bag = Path(bag)
    with BagReader(bag, config.topics, ROLES, NEED) as reader:
        player = _Player(bag, navigator, config)
        total = sum(c.msgcount for conns in reader.connections.values() for c in conns)
        for m in tqdm(reader.messages(), total=total, desc=f"open loop {bag.name}", unit="msg", disable=not progress):
            player.feed(m)
        return player.finish()


@dataclass
class MatchedEpisode:
    """A recorded episode matched to its annotated episode, with the recorded trajectory."""

    recorded: RecordedEpisode
    episode: Any                         # data.episodes.Episode
    trajectory: list[str]                # viewpoints the robot passed, start first
    decision_places: list[str]           # viewpoint of each decision


def match_episodes(run: OpenLoopRun, episodes: list[Any], graphs: dict[str, Any], config: ReplayConfig,
                   episodes_file: str | Path) -> list[MatchedEpisode]:
    """Match every recorded episode to the episodes file (same instruction, same start place).

    BagError when an instruction is not in the file, or a decision pose is not at a place of the
    episode's building (the bag comes from another building).
    """
    from minivln_core.replay.places import PlaceMatcher

    by_text: dict[str, list[Any]] = {}
    for ep in episodes:
        by_text.setdefault(ep.instruction.strip(), []).append(ep)
    topics = config.topics
    matched = []
    for rec in run.episodes:
        if not rec.decisions:
            continue
        candidates = by_text.get(rec.instruction)
        if not candidates:
            raise BagError(run.bag, f"instruction {rec.instruction!r} (episode {rec.number}) is not in the episodes "
                                    f"file {episodes_file}", topics.instruction, rec.instruction_index)
        first = rec.decisions[0]
        starts = [ep for ep in candidates
                  if PlaceMatcher(graphs[ep.scan], config.match_tolerance).match(first.position) == ep.start]
        if not starts:
            ep = candidates[0]
            vp, dist = PlaceMatcher(graphs[ep.scan], config.match_tolerance).nearest(first.position)
            raise BagError(run.bag, f"episode {rec.number} starts at {np.round(first.position, 2).tolist()}, "
                                    f"{dist:.2f} m from viewpoint {vp} of scan {ep.scan}; {ep.instr_id} starts at "
                                    f"{ep.start}: the bag comes from another building or another start",
                           topics.odom, first.pose_index)
        ep = starts[0]
        matcher = PlaceMatcher(graphs[ep.scan], config.match_tolerance)
        places = []
        for d in rec.decisions:
            vp, dist = matcher.nearest(d.position)
            if dist > matcher.tolerance:
                raise BagError(run.bag, f"the robot pose {np.round(d.position, 2).tolist()} at decision {d.step} of "
                                        f"episode {rec.number} is {dist:.2f} m from the nearest place of scan "
                                        f"{ep.scan} (tolerance {matcher.tolerance} m): the bag comes from another "
                                        "building", topics.odom, d.pose_index)
            places.append(vp)
        passed = [vp for vp in (matcher.match(p) for p, _ in rec.passed()) if vp is not None]
        matched.append(MatchedEpisode(rec, ep, matcher.walk(passed), places))
    return matched
