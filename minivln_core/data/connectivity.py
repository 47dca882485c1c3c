"""Matterport3D-format navigation graphs (`<scan>_connectivity.json`) with all-pairs shortest paths.

A connectivity file is a JSON array with one entry per panorama: `image_id`, `pose` (16 floats,
4x4 row-major camera-to-world, z up; the position is elements 3, 7, 11), `included`, `visible`
and `unobstructed` (bool per entry; `unobstructed` are the navigable edges, `visible` the panoramas
in line of sight, optional and then taken to be the navigable ones) and `height`. Excluded entries
are dropped. Edge weight is the 3-D Euclidean distance between camera positions.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path

from minivln_core.errors import DataError

SUFFIX = "_connectivity.json"


class ScanGraph:
    """The full navigation graph of one house: positions, edges, shortest distances and paths."""

    def __init__(self, scan: str, viewpoints: list[str], positions: np.ndarray, edges: list[tuple[int, int]],
                 heights: np.ndarray | None = None, source: str = "<memory>",
                 visible: list[tuple[int, int]] | None = None):
        self.scan = scan
        self.viewpoints = list(viewpoints)
        self.index = {vp: i for i, vp in enumerate(self.viewpoints)}
        if len(self.index) != len(self.viewpoints):
            raise DataError(source, "duplicated image_id among included viewpoints", field="image_id")
        self.positions = np.asarray(positions, dtype=np.float64).reshape(len(self.viewpoints), 3)  # (N, 3)
        self.heights = np.zeros(len(self.viewpoints)) if heights is None else np.asarray(heights, dtype=np.float64)
        self.source = source
        self._neighbors: list[list[int]] = [[] for _ in self.viewpoints]
        for a, b in sorted({(min(a, b), max(a, b)) for a, b in edges if a != b}):
            self._neighbors[a].append(b)
            self._neighbors[b].append(a)
        # Line of sight (a sees b), directed as in the files; without it, the navigable edges.
        self._visible: list[list[int]] | None = None
        if visible is not None:
            self._visible = [[] for _ in self.viewpoints]
            for a, b in sorted(set(visible)):
                if a != b:
                    self._visible[a].append(b)

    # -- structure -------------------------------------------------------------------------
    def __contains__(self, viewpoint: str) -> bool:
        return viewpoint in self.index

    def __len__(self) -> int:
        return len(self.viewpoints)

    def require(self, viewpoint: str, what: str = "viewpoint") -> int:
        """Index of `viewpoint`, or a DataError naming the scan and the id."""
        try:
            return self.index[viewpoint]
        except KeyError:
            raise DataError(self.source, f"{what} '{viewpoint}' is not an included viewpoint of scan {self.scan}") from None

    def neighbors(self, viewpoint: str) -> list[str]:
        """Navigable neighbours (unobstructed edges) of a viewpoint."""
        return [self.viewpoints[j] for j in self._neighbors[self.require(viewpoint)]]

    def visible(self, viewpoint: str) -> list[str]:
        """Included viewpoints in line of sight of `viewpoint` (the file's `visible`; else its neighbours)."""
        i = self.require(viewpoint)
        rows = self._neighbors[i] if self._visible is None else self._visible[i]
        return [self.viewpoints[j] for j in rows]

    def position(self, viewpoint: str) -> np.ndarray:
        """Camera position (x, y, z) in metres."""
        return self.positions[self.require(viewpoint)]

    def edges(self) -> list[tuple[str, str]]:
        """Each undirected edge once."""
        return [(self.viewpoints[a], self.viewpoints[b]) for a, ns in enumerate(self._neighbors) for b in ns if a < b]

    # -- shortest paths (Dijkstra on the full graph, computed once per scan) ----------------
    @cached_property
    def _all_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.viewpoints)
        rows, cols, weights = [], [], []
        for a, ns in enumerate(self._neighbors):
            for b in ns:
                rows.append(a)
                cols.append(b)
                weights.append(float(np.linalg.norm(self.positions[a] - self.positions[b])))
        matrix = csr_matrix((weights, (rows, cols)), shape=(n, n))
        dist, pred = shortest_path(matrix, method="D", directed=False, return_predecessors=True)
        return dist, pred  # (N, N) metres (inf if unreachable), (N, N) predecessor index (-9999 none)

    @property
    def distances(self) -> np.ndarray:
        """All-pairs shortest-path distances in metres, (N, N); inf where unreachable."""
        return self._all_pairs[0]

    def distance(self, a: str, b: str) -> float:
        """Shortest-path length in metres between two viewpoints."""
        return float(self._all_pairs[0][self.require(a), self.require(b)])

    def shortest_path(self, a: str, b: str) -> list[str]:
        """Viewpoints on the shortest path from a to b, both ends included."""
        ia, ib = self.require(a), self.require(b)
        dist, pred = self._all_pairs
        if not np.isfinite(dist[ia, ib]):
            raise DataError(self.source, f"no path from '{a}' to '{b}' in scan {self.scan}")
        path = [ib]
        while path[-1] != ia:
            path.append(int(pred[ia, path[-1]]))
        return [self.viewpoints[i] for i in reversed(path)]

    def path_length(self, path: list[str]) -> float:
        """Sum of shortest distances between consecutive viewpoints of a path."""
        return float(sum(self.distance(a, b) for a, b in zip(path[:-1], path[1:])))

    def is_walk(self, path: list[str]) -> bool:
        """True if every consecutive pair is an edge of the graph (or a repeat of the same node)."""
        for a, b in zip(path[:-1], path[1:]):
            if a != b and self.require(b) not in self._neighbors[self.require(a)]:
                return False
        return True


def _field(entry: dict, name: str, path: Path, record: int):
    if not isinstance(entry, dict):
        raise DataError(path, "entry is not an object", record=record)
    if name not in entry:
        raise DataError(path, "missing field", record=record, field=name)
    return entry[name]


def parse_connectivity(scan: str, data: object, path: str | Path = "<memory>") -> ScanGraph:
    """Build a ScanGraph from the decoded JSON array of a connectivity file."""
    path = Path(path)
    if not isinstance(data, list):
        raise DataError(path, "expected a JSON array of panoramas")
    n = len(data)
    ids, included, positions, heights, unobstructed, visible = [], [], [], [], [], []
    for i, entry in enumerate(data):
        image_id = _field(entry, "image_id", path, i)
        if not isinstance(image_id, str) or not image_id:
            raise DataError(path, f"expected a non-empty string, got {image_id!r}", record=i, field="image_id")
        pose = _field(entry, "pose", path, i)
        if (not isinstance(pose, list) or len(pose) != 16
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pose)):
            raise DataError(path, "expected 16 numbers (4x4 row-major camera-to-world)", record=i, field="pose")
        inc = _field(entry, "included", path, i)
        if not isinstance(inc, bool):
            raise DataError(path, f"expected true/false, got {inc!r}", record=i, field="included")
        unob = _field(entry, "unobstructed", path, i)
        if not isinstance(unob, list) or len(unob) != n or not all(isinstance(v, bool) for v in unob):
            raise DataError(path, f"expected {n} booleans (one per entry)", record=i, field="unobstructed")
        vis = entry.get("visible")
        if vis is not None and (not isinstance(vis, list) or len(vis) != n
                                or not all(isinstance(v, bool) for v in vis)):
            raise DataError(path, f"expected {n} booleans (one per entry)", record=i, field="visible")
        height = entry.get("height", 0.0)
        if isinstance(height, bool) or not isinstance(height, (int, float)):
            raise DataError(path, f"expected a number, got {height!r}", record=i, field="height")
        ids.append(image_id)
        included.append(inc)
        positions.append((pose[3], pose[7], pose[11]))
        heights.append(float(height))
        unobstructed.append(unob)
        visible.append(vis)
    for i, pos in enumerate(positions):
        if not all(np.isfinite(pos)):
            raise DataError(path, "pose holds a non-finite number", record=i, field="pose")
    keep = [i for i in range(n) if included[i]]
    new_index = {old: new for new, old in enumerate(keep)}
    seen: dict[str, int] = {}
    for i in keep:
        if ids[i] in seen:
            raise DataError(path, f"image_id '{ids[i]}' appears again (first at record {seen[ids[i]]})",
                            record=i, field="image_id")
        seen[ids[i]] = i
    edges = [(new_index[i], new_index[j]) for i in keep for j in range(n)
             if unobstructed[i][j] and j in new_index and j != i]
    seen_by = None
    if keep and all(visible[i] is not None for i in keep):
        seen_by = [(new_index[i], new_index[j]) for i in keep for j in range(n)
                   if visible[i][j] and j in new_index and j != i]
    return ScanGraph(scan, [ids[i] for i in keep], np.asarray([positions[i] for i in keep]).reshape(-1, 3),
                     edges, np.asarray([heights[i] for i in keep]), source=str(path), visible=seen_by)


def load_scan(connectivity_dir: str | Path, scan: str) -> ScanGraph:
    """Read `<dir>/<scan>_connectivity.json`."""
    from minivln_core.io_utils import read_json

    path = Path(connectivity_dir) / f"{scan}{SUFFIX}"
    return parse_connectivity(scan, read_json(path, f"connectivity file for scan '{scan}' does not exist"), path)


def list_scans(connectivity_dir: str | Path) -> list[str]:
    """Scans in a connectivity folder: `scans.txt` if present, else every `*_connectivity.json`."""
    directory = Path(connectivity_dir)
    if not directory.is_dir():
        raise DataError(directory, "connectivity folder does not exist")
    listing = directory / "scans.txt"
    if listing.exists():
        from minivln_core.io_utils import read_text

        return [line.strip() for line in read_text(listing).splitlines() if line.strip()]
    return sorted(p.name[: -len(SUFFIX)] for p in directory.glob(f"*{SUFFIX}"))


def load_connectivity(connectivity_dir: str | Path, scans: list[str] | None = None) -> dict[str, ScanGraph]:
    """Load the graphs of `scans` (default: all in the folder) keyed by scan id."""
    names = list_scans(connectivity_dir) if scans is None else list(scans)
    return {scan: load_scan(connectivity_dir, scan) for scan in names}
