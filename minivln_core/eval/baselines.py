"""Reference policies that need no model: a random walk (the floor) beside the expert (the ceiling)."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from minivln_core.env.nav_env import NavEnv


def run_random_walk(env: NavEnv, seed: int = 0, hops: tuple[int, int] = (4, 7)) -> list[dict[str, Any]]:
    """Every episode once: walk a random number of hops (R2R paths have 4-7) to random unvisited
    neighbours (any neighbour when all are visited), then stop. Seeded per instruction id."""
    records: list[dict[str, Any]] = []
    for batch in env.iterate_once():
        for obs in batch:
            rng = np.random.default_rng([seed, zlib.crc32(obs.instr_id.encode())])
            graph, current = env.graph(obs.index), obs.viewpoint
            visited = {current}
            for _ in range(int(rng.integers(hops[0], hops[1] + 1))):
                if env.steps(obs.index) >= env.max_steps - 1:
                    break
                options = [v for v in graph.neighbors(current) if v not in visited] or graph.neighbors(current)
                if not options:
                    break
                current = options[int(rng.integers(len(options)))]
                visited.add(current)
                env.decide(obs.index)
                env.hop(obs.index, current)
            env.stop(obs.index)
        records.extend(env.results())
    return records
