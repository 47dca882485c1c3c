"""Navigable candidates of a viewpoint: which neighbours each of the 36 views sees.

A neighbour is navigable from a view if its heading is within +-HFOV/2 = 40 deg of the view
heading (elevation ignored) and is assigned to the view that minimises the angular offset
``sqrt(rel_heading**2 + rel_elevation**2)``. Angle conventions: `minivln_core.frames`.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np

from minivln_core.data.connectivity import ScanGraph
from minivln_core.frames import HALF_HFOV, VIEW_ELEVATIONS, VIEW_HEADINGS, heading_elevation, view_offsets, wrap_angle


@dataclass(frozen=True)
class Candidate:
    """A navigable neighbour of a viewpoint, as seen from that viewpoint."""

    viewpoint: str                 # neighbour viewpoint id
    view_index: int                # view (0..35) that best faces the neighbour
    heading: float                 # absolute heading to the neighbour (radians, clockwise from +y)
    elevation: float               # absolute elevation to the neighbour (radians)
    distance: float                # 3-D Euclidean distance in metres
    position: np.ndarray = field(compare=False, repr=False)  # (3,) neighbour position

    @property
    def view_offset(self) -> tuple[float, float]:
        """(rel_heading, rel_elevation) of the neighbour w.r.t. the centre of its view."""
        return (float(wrap_angle(self.heading - VIEW_HEADINGS[self.view_index])),
                self.elevation - float(VIEW_ELEVATIONS[self.view_index]))


# Per-graph cache {viewpoint: candidates}; weak keys so dropping a ScanGraph frees its entries.
_CANDIDATE_CACHE: "weakref.WeakKeyDictionary[ScanGraph, dict[str, tuple[Candidate, ...]]]" = (
    weakref.WeakKeyDictionary())


def _candidates_uncached(graph: ScanGraph, viewpoint: str) -> tuple[Candidate, ...]:
    neighbours = graph.neighbors(viewpoint)
    if not neighbours:
        return ()
    origin = graph.position(viewpoint)                                    # (3,)
    targets = np.stack([graph.position(vp) for vp in neighbours])         # (K, 3)
    vectors = targets - origin                                            # (K, 3)
    heading, elevation = heading_elevation(vectors)                       # (K,), (K,)
    rel_h, _, ang = view_offsets(heading, elevation)                     # (K, 36) each
    ang = np.where(np.abs(rel_h) <= HALF_HFOV + 1e-9, ang, np.inf)        # only views that see it
    views = np.argmin(ang, axis=1)                                        # (K,)
    offsets = ang[np.arange(len(neighbours)), views]                      # (K,)
    lengths = np.linalg.norm(vectors, axis=1)                             # (K,)
    order = np.lexsort((offsets, views))                                  # view index, then offset
    targets.setflags(write=False)  # candidates are shared through the cache
    return tuple(
        Candidate(viewpoint=neighbours[k], view_index=int(views[k]), heading=float(heading[k]),
                  elevation=float(elevation[k]), distance=float(lengths[k]), position=targets[k])
        for k in order)


def compute_candidates(graph: ScanGraph, viewpoint: str) -> list[Candidate]:
    """Navigable neighbours of `viewpoint`, sorted by view index then angular offset (cached)."""
    per_graph = _CANDIDATE_CACHE.setdefault(graph, {})
    cached = per_graph.get(viewpoint)
    if cached is None:
        cached = per_graph[viewpoint] = _candidates_uncached(graph, viewpoint)
    return list(cached)
