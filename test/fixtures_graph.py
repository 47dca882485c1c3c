"""Toy navigation graphs, view features and episodes for the graph-map and environment tests."""

from __future__ import annotations

import math

import numpy as np

from minivln_core.data.connectivity import ScanGraph, parse_connectivity
from minivln_core.data.episodes import Episode
from minivln_core.errors import DataError

FEATURE_DIM = 8


def make_graph(scan: str, positions: dict[str, tuple[float, float, float]],
               edges: list[tuple[str, str]]) -> ScanGraph:
    """A ScanGraph built through parse_connectivity from node positions and undirected edges."""
    ids = list(positions)
    linked = {frozenset(e) for e in edges}
    entries = []
    for vp in ids:
        x, y, z = (float(v) for v in positions[vp])
        unobstructed = [frozenset((vp, other)) in linked for other in ids]
        entries.append({"image_id": vp, "pose": [1.0, 0.0, 0.0, x, 0.0, 1.0, 0.0, y, 0.0, 0.0, 1.0, z,
                                                 0.0, 0.0, 0.0, 1.0],
                        "included": True, "visible": unobstructed, "unobstructed": unobstructed, "height": 1.5})
    return parse_connectivity(scan, entries)


def polar(heading_deg: float, dist: float, dz: float = 0.0, z0: float = 1.5) -> tuple[float, float, float]:
    """Position at horizontal distance `dist` and heading `heading_deg` from (0, 0, z0), raised by dz."""
    h = math.radians(heading_deg)
    return (dist * math.sin(h), dist * math.cos(h), z0 + dz)


def star_graph(scan: str = "star") -> ScanGraph:
    """Centre 'c' with neighbours at headings 95 and 200 deg, one above (+35 deg) and one below."""
    positions = {
        "c": (0.0, 0.0, 1.5),
        "h95": polar(95.0, 2.0),
        "h200": polar(200.0, 3.0),
        "up": polar(0.0, 2.0, dz=1.4),      # elevation atan(0.7) = 35 deg -> row 2, col 0
        "down": polar(180.0, 2.0, dz=-1.4),  # elevation -35 deg, heading 180 -> row 0, col 6
        "far": polar(95.0, 4.0),             # reachable only through h95
    }
    edges = [("c", "h95"), ("c", "h200"), ("c", "up"), ("c", "down"), ("h95", "far")]
    return make_graph(scan, positions, edges)


def grid_graph(scan: str = "grid", rows: int = 4, cols: int = 5, seed: int = 0) -> ScanGraph:
    """Jittered grid (ids 'r<i>c<j>', ~2 m spacing) with 4-neighbour edges and a few diagonals."""
    rng = np.random.default_rng(seed)
    positions = {f"r{i}c{j}": (2.0 * j + rng.uniform(-0.3, 0.3), 2.0 * i + rng.uniform(-0.3, 0.3),
                               1.5 + rng.uniform(-0.1, 0.1))
                 for i in range(rows) for j in range(cols)}
    edges = [(f"r{i}c{j}", f"r{i}c{j + 1}") for i in range(rows) for j in range(cols - 1)]
    edges += [(f"r{i}c{j}", f"r{i + 1}c{j}") for i in range(rows - 1) for j in range(cols)]
    edges += [(f"r{i}c{j}", f"r{i + 1}c{j + 1}") for i in range(rows - 1) for j in range(cols - 1)
              if rng.uniform() < 0.3]
    return make_graph(scan, positions, edges)


class FakeFeatures:
    """Dict-backed view-feature store: get(scan, vp) -> (36, D) float32, DataError if missing."""

    def __init__(self, graphs: dict[str, ScanGraph], dim: int = FEATURE_DIM, missing: tuple[str, ...] = ()):
        self.table: dict[tuple[str, str], np.ndarray] = {}
        for scan, graph in graphs.items():
            for k, vp in enumerate(graph.viewpoints):
                if vp not in missing:
                    self.table[scan, vp] = np.full((36, dim), k, dtype=np.float32)

    def get(self, scan: str, viewpoint: str) -> np.ndarray:
        try:
            return self.table[scan, viewpoint]
        except KeyError:
            raise DataError("<fake features>", f"no features for {scan}_{viewpoint}") from None


def make_episode(instr_id: str, scan: str, path: list[str], heading: float = 0.0) -> Episode:
    """An Episode with a dummy instruction."""
    return Episode(instr_id=instr_id, scan=scan, path=list(path), heading=heading,
                   instruction="go", instr_encoding=[101, 2175, 102])
