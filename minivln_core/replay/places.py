"""Recorded poses -> places (viewpoints) of a building's navigation graph, and which building a bag is.

A bag stores metric poses, the episodes file names viewpoints: a pose is the viewpoint whose
camera position is nearest, if within `tolerance` metres (the `goal_tolerance` sim_robot uses to
turn goals into viewpoints). Poses that match no viewpoint of the building mean the bag was
recorded elsewhere.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from minivln_core.data.connectivity import ScanGraph


class PlaceMatcher:
    """Nearest viewpoint of one scan graph within a tolerance."""

    def __init__(self, graph: ScanGraph, tolerance: float):
        self.graph = graph
        self.tolerance = float(tolerance)

    def nearest(self, position: np.ndarray) -> tuple[str, float]:
        """(nearest viewpoint, its distance in metres)."""
        dist = np.linalg.norm(self.graph.positions - np.asarray(position, dtype=np.float64), axis=1)  # (N,)
        best = int(np.argmin(dist))
        return self.graph.viewpoints[best], float(dist[best])

    def match(self, position: np.ndarray) -> str | None:
        """The viewpoint at `position`, or None when none is within the tolerance."""
        viewpoint, dist = self.nearest(position)
        return viewpoint if dist <= self.tolerance else None

    def walk(self, places: Sequence[str]) -> list[str]:
        """Viewpoints visited in order (repeats collapsed), gaps filled with the graph's shortest paths.

        This is the trajectory `sim_robot` scores: a move to a goal walks the shortest path.
        """
        out: list[str] = []
        for vp in places:
            if not out:
                out.append(vp)
            elif vp != out[-1]:
                out.extend(self.graph.shortest_path(out[-1], vp)[1:])
        return out

