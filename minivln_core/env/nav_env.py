"""Batched discrete navigation over Matterport3D-format graphs with precomputed view features.

The environment only moves agents along edges of the full scan graph, one hop at a time; the
agent plans multi-hop moves in its own map (see `minivln_core.graph.graph_map`). After a hop
from u to v the agent faces the centre of the view in which v was seen from u, as the DUET
agent does. Trajectories are `[[viewpoint, heading, elevation], ...]` with the start included.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from minivln_core.data.connectivity import ScanGraph
from minivln_core.data.episodes import Episode
from minivln_core.env.candidates import Candidate, compute_candidates
from minivln_core.errors import DataError
from minivln_core.frames import NUM_VIEWS, VIEW_ELEVATIONS, VIEW_HEADINGS


class ViewFeatures(Protocol):
    """Per-viewpoint panorama features: `get` returns (36, D) float32 or raises DataError."""

    def get(self, scan: str, viewpoint: str, /) -> np.ndarray: ...


class ObjectStore(Protocol):
    """Per-viewpoint object features (REVERIE); the returned record is passed through untouched."""

    def get(self, scan: str, viewpoint: str, /) -> Any: ...


@dataclass
class Observation:
    """What agent `index` of the batch perceives at its current viewpoint."""

    index: int                     # position in the batch
    episode: Episode
    scan: str
    viewpoint: str
    position: np.ndarray           # (3,) metres
    heading: float                 # radians, clockwise from +y
    elevation: float               # radians
    view_features: np.ndarray      # (36, D) float32, rows = view index
    candidates: list[Candidate]    # navigable neighbours, sorted by view index
    objects: Any                   # ObjectFeatures from the object store, or None
    step: int                      # navigation decisions made so far
    distance_to_goal: float        # full-graph shortest distance to episode.goal, metres
    done: bool                     # the agent has stopped

    @property
    def instr_id(self) -> str:
        """Instruction id of the episode."""
        return self.episode.instr_id


@dataclass
class _AgentState:
    episode: Episode
    viewpoint: str
    heading: float
    elevation: float
    steps: int = 0
    done: bool = False
    trajectory: list[list[Any]] = field(default_factory=list)  # [[vp, heading, elevation], ...]


class NavEnv:
    """A batch of agents walking the navigation graphs of their episodes' scans."""

    def __init__(self, graphs: dict[str, ScanGraph], features: ViewFeatures, episodes: Sequence[Episode],
                 batch_size: int, max_steps: int = 15, shuffle: bool = False, seed: int = 0,
                 objects: ObjectStore | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if not episodes:
            raise ValueError("NavEnv needs at least one episode")
        for episode in episodes:
            graph = graphs.get(episode.scan)
            if graph is None:
                raise DataError("<episodes>", f"scan '{episode.scan}' has no connectivity graph loaded",
                                record=episode.instr_id, field="scan")
            if not episode.path:
                raise DataError("<episodes>", "empty path", record=episode.instr_id, field="path")
            for vp in episode.path:
                graph.require(vp, what=f"path viewpoint of episode {episode.instr_id}")
        self.graphs = graphs
        self.features = features
        self.objects = objects
        self.episodes = list(episodes)
        self.batch_size = int(batch_size)
        self.max_steps = int(max_steps)
        self.shuffle = shuffle
        self._rng = np.random.default_rng(seed)
        self.epoch = 0
        self.epoch_done = False
        self._order = self._epoch_order()
        self._cursor = 0
        self._agents: list[_AgentState] = []

    # -- episode order ------------------------------------------------------------------
    def _epoch_order(self) -> list[int]:
        n = len(self.episodes)
        return [int(i) for i in self._rng.permutation(n)] if self.shuffle else list(range(n))

    def _new_epoch(self) -> None:
        self.epoch += 1
        self._order = self._epoch_order()
        self._cursor = 0

    def _take(self, count: int, wrap: bool) -> list[Episode]:
        """Next `count` episodes; with `wrap`, a short remainder is completed from a new epoch."""
        chosen = self._order[self._cursor:self._cursor + count]
        self._cursor += len(chosen)
        self.epoch_done = self._cursor >= len(self._order)
        if self.epoch_done and wrap:
            self._new_epoch()
            while len(chosen) < count:  # batch larger than the remainder (or than the data set)
                extra = self._order[self._cursor:self._cursor + count - len(chosen)]
                self._cursor += len(extra)
                chosen += extra
                if self._cursor >= len(self._order):
                    self._new_epoch()
        return [self.episodes[i] for i in chosen]

    def _start(self, episodes: list[Episode]) -> list[Observation]:
        self._agents = [
            _AgentState(ep, ep.start, float(ep.heading), 0.0, trajectory=[[ep.start, float(ep.heading), 0.0]])
            for ep in episodes]
        return self.observations()

    def start(self, episodes: Sequence[Episode]) -> list[Observation]:
        """Start a batch of the given episodes (training picks its own batches; see `reset`)."""
        if not episodes:
            raise ValueError("start() needs at least one episode")
        return self._start(list(episodes))

    def reset(self) -> list[Observation]:
        """Start the next batch (cycling through epochs); `epoch_done` tells when one has ended."""
        return self._start(self._take(self.batch_size, wrap=True))

    def iterate_once(self) -> Iterator[list[Observation]]:
        """Start a fresh epoch and yield each batch once; roll every batch out before continuing.

        Every episode is started exactly once; the last batch may be smaller.
        """
        self._new_epoch()
        while self._cursor < len(self._order):
            yield self._start(self._take(self.batch_size, wrap=False))

    # -- agent state --------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of agents in the current batch."""
        return len(self._agents)

    @property
    def batch(self) -> list[Episode]:
        """Episodes of the current batch."""
        return [agent.episode for agent in self._agents]

    @property
    def all_done(self) -> bool:
        """True when every agent of the batch has stopped."""
        return all(agent.done for agent in self._agents)

    def _agent(self, i: int) -> _AgentState:
        if not 0 <= i < len(self._agents):
            raise IndexError(f"agent {i} is not in the current batch of {len(self._agents)}")
        return self._agents[i]

    def _active(self, i: int, action: str) -> _AgentState:
        agent = self._agent(i)
        if agent.done:
            raise ValueError(f"agent {i} ({agent.episode.instr_id}) has stopped and cannot {action}")
        return agent

    def viewpoint(self, i: int) -> str:
        """Current viewpoint of agent i."""
        return self._agent(i).viewpoint

    def steps(self, i: int) -> int:
        """Navigation decisions agent i has made."""
        return self._agent(i).steps

    def is_done(self, i: int) -> bool:
        """True once agent i has stopped."""
        return self._agent(i).done

    def graph(self, i: int) -> ScanGraph:
        """Full navigation graph of agent i's scan."""
        return self.graphs[self._agent(i).episode.scan]

    def observation(self, i: int) -> Observation:
        """Current observation of agent i (features read from the store; missing ones raise)."""
        agent = self._agent(i)
        scan, vp = agent.episode.scan, agent.viewpoint
        graph = self.graphs[scan]
        feats = np.asarray(self.features.get(scan, vp), dtype=np.float32)  # (36, D)
        if feats.ndim != 2 or feats.shape[0] != NUM_VIEWS:
            raise DataError(f"<view features {scan}_{vp}>", f"expected ({NUM_VIEWS}, D) features, got {feats.shape}")
        return Observation(
            index=i, episode=agent.episode, scan=scan, viewpoint=vp, position=graph.position(vp).copy(),
            heading=agent.heading, elevation=agent.elevation, view_features=feats,
            candidates=compute_candidates(graph, vp),
            objects=None if self.objects is None else self.objects.get(scan, vp),
            step=agent.steps, distance_to_goal=graph.distance(vp, agent.episode.goal), done=agent.done)

    def observations(self) -> list[Observation]:
        """Current observations of the whole batch."""
        return [self.observation(i) for i in range(len(self._agents))]

    # -- actions ------------------------------------------------------------------------
    def decide(self, i: int) -> int:
        """Count one navigation decision of agent i; returns the new count (at most max_steps)."""
        agent = self._active(i, "decide")
        if agent.steps >= self.max_steps:
            raise ValueError(f"agent {i} ({agent.episode.instr_id}) already made max_steps={self.max_steps} "
                             "decisions; it must stop")
        agent.steps += 1
        return agent.steps

    def hop(self, i: int, next_viewpoint: str) -> None:
        """Move agent i to an adjacent viewpoint, facing the view in which it was seen."""
        agent = self._active(i, "move")
        graph = self.graphs[agent.episode.scan]
        for cand in compute_candidates(graph, agent.viewpoint):
            if cand.viewpoint == next_viewpoint:
                break
        else:
            raise ValueError(f"agent {i} ({agent.episode.instr_id}) cannot hop from '{agent.viewpoint}' to "
                             f"'{next_viewpoint}': not a navigable neighbour in scan {agent.episode.scan}")
        agent.viewpoint = next_viewpoint
        agent.heading = float(VIEW_HEADINGS[cand.view_index])
        agent.elevation = float(VIEW_ELEVATIONS[cand.view_index])
        agent.trajectory.append([next_viewpoint, agent.heading, agent.elevation])

    def walk(self, i: int, hops: Sequence[str]) -> None:
        """Hop agent i along consecutive viewpoints (e.g. `GraphMap.path(current, target)`)."""
        for vp in hops:
            self.hop(i, vp)

    def stop(self, i: int) -> None:
        """Mark agent i as done; later hops or decisions raise."""
        self._agent(i).done = True

    # -- results ------------------------------------------------------------------------
    def trajectories(self) -> list[list[list[Any]]]:
        """Per agent `[[viewpoint, heading, elevation], ...]`, start included (copies)."""
        return [[list(entry) for entry in agent.trajectory] for agent in self._agents]

    def results(self) -> list[dict[str, Any]]:
        """Results records `{"instr_id", "trajectory"}` of the current batch."""
        return [{"instr_id": agent.episode.instr_id, "trajectory": traj}
                for agent, traj in zip(self._agents, self.trajectories())]
