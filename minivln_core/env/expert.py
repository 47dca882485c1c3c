"""Oracle teachers: the full-graph shortest-path expert and DUET's map-level ``spl`` expert."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from minivln_core.data.connectivity import ScanGraph
from minivln_core.env.nav_env import NavEnv
from minivln_core.graph.graph_map import GraphMap


def shortest_path_expert_next(graph: ScanGraph, current: str, goal: str) -> str | None:
    """Next viewpoint on the full-graph shortest path to `goal`, or None (stop) at the goal."""
    if current == goal:
        return None
    return graph.shortest_path(current, goal)[1]


def map_expert(graph: ScanGraph, graph_map: GraphMap, current: str, goal: str,
               candidates_nodes: Sequence[str]) -> str | None:
    """DUET's ``spl`` teacher: the unvisited node v minimising d(current, v) + d(v, goal).

    Distances are true shortest distances on the full scan graph. Returns None (stop) when
    `current` is the goal, and also when no unvisited node is left to choose (the only action
    the agent still has). Ties go to the first node in `candidates_nodes`.
    """
    if current == goal:
        return None
    options = [vp for vp in candidates_nodes if not graph_map.is_visited(vp)]
    if not options:
        return None
    dist = graph.distances                                               # (M, M) full graph
    idx = np.array([graph.require(vp) for vp in options], dtype=np.int64)  # (N,)
    cost = dist[graph.require(current), idx] + dist[idx, graph.require(goal)]  # (N,)
    return options[int(np.argmin(cost))]


def run_expert(env: NavEnv) -> list[dict[str, Any]]:
    """Roll every episode of `env` once with the shortest-path expert; returns results records.

    Each hop is one decision; an agent stops at its goal or when it has used `env.max_steps`
    decisions. The records are `{"instr_id", "trajectory"}` in the order the env served them; when
    the env has object features, `predObjId` is the oracle's pick: the episode's target object if
    it is among the objects at the viewpoint where the expert stopped, else None (RGS then says
    how often the object features let a perfect agent ground the target).
    """
    results: list[dict[str, Any]] = []
    for batch in env.iterate_once():
        picks: list[str | None] = []
        for obs in batch:
            graph = env.graph(obs.index)
            goal = obs.episode.goal
            current = obs.viewpoint
            while True:
                nxt = shortest_path_expert_next(graph, current, goal)
                if nxt is None or env.steps(obs.index) >= env.max_steps:
                    env.stop(obs.index)
                    break
                env.decide(obs.index)
                env.hop(obs.index, nxt)
                current = nxt
            target = obs.episode.obj_id
            seen = env.objects.get(obs.episode.scan, current).obj_ids if env.objects is not None else []
            picks.append(str(target) if target is not None and str(target) in seen else None)
        records = env.results()
        if env.objects is not None:
            for rec, pick in zip(records, picks):
                rec["predObjId"] = pick
        results.extend(records)
    return results
