"""Panorama geometry: the 36 discretised views, angle conventions and navigable candidates.

Conventions (Matterport3D simulator, used everywhere in the project):

* angles are radians; the heading of a vector (dx, dy, dz) is ``atan2(dx, dy)`` (clockwise from
  +y) and its elevation ``atan2(dz, hypot(dx, dy))``; relative angles are wrapped to (-pi, pi];
* view ``ix = 12 * row + col`` has absolute heading ``col * 30 deg`` and elevation
  ``(row - 1) * 30 deg``;
* a neighbour is navigable from a view if its heading is within +-HFOV/2 = 40 deg of the view
  heading (elevation ignored) and is assigned to the view that minimises the angular offset
  ``sqrt(rel_heading**2 + rel_elevation**2)``.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field

import numpy as np

from minivln_core.data.connectivity import ScanGraph

NUM_VIEWS = 36
VIEWS_PER_ROW = 12
VIEW_STEP = math.radians(30.0)
HALF_HFOV = math.radians(40.0)

_VIEW_IDS = np.arange(NUM_VIEWS)
VIEW_HEADINGS: np.ndarray = (_VIEW_IDS % VIEWS_PER_ROW) * VIEW_STEP          # (36,) radians in [0, 2pi)
VIEW_ELEVATIONS: np.ndarray = (_VIEW_IDS // VIEWS_PER_ROW - 1) * VIEW_STEP   # (36,) -30, 0, +30 deg
VIEW_HEADINGS.setflags(write=False)
VIEW_ELEVATIONS.setflags(write=False)


def _check_view(ix: int) -> int:
    if not 0 <= int(ix) < NUM_VIEWS:
        raise ValueError(f"view index {ix} is outside 0..{NUM_VIEWS - 1}")
    return int(ix)


def view_heading(ix: int) -> float:
    """Absolute heading (radians) of the centre of view `ix`."""
    return float(VIEW_HEADINGS[_check_view(ix)])


def view_elevation(ix: int) -> float:
    """Absolute elevation (radians) of the centre of view `ix`."""
    return float(VIEW_ELEVATIONS[_check_view(ix)])


def wrap_angle(angle: np.ndarray | float) -> np.ndarray | float:
    """Wrap angles (radians, any shape) into (-pi, pi]; floats in, float out."""
    wrapped = np.asarray(angle, dtype=np.float64)
    wrapped = wrapped - 2.0 * np.pi * np.ceil((wrapped - np.pi) / (2.0 * np.pi))
    return float(wrapped) if wrapped.ndim == 0 else wrapped


def heading_elevation(vec: np.ndarray) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Heading and elevation of vectors `vec` (..., 3); a zero vector gives (0, 0)."""
    vec = np.asarray(vec, dtype=np.float64)
    if vec.shape[-1:] != (3,):
        raise ValueError(f"expected vectors of shape (..., 3), got {vec.shape}")
    dx, dy, dz = vec[..., 0], vec[..., 1], vec[..., 2]
    heading = np.arctan2(dx, dy)
    elevation = np.arctan2(dz, np.hypot(dx, dy))
    if vec.ndim == 1:
        return float(heading), float(elevation)
    return heading, elevation


def angle_features(rel_heading: np.ndarray | float, rel_elevation: np.ndarray | float) -> np.ndarray:
    """[sin dh, cos dh, sin de, cos de] for broadcastable angle arrays -> (..., 4) float32."""
    h, e = np.broadcast_arrays(np.asarray(rel_heading, dtype=np.float64),
                               np.asarray(rel_elevation, dtype=np.float64))
    return np.stack([np.sin(h), np.cos(h), np.sin(e), np.cos(e)], axis=-1).astype(np.float32)


def view_angle_features(heading: float, elevation: float = 0.0) -> np.ndarray:
    """Angle features of the 36 view centres relative to an agent pose -> (36, 4) float32."""
    return angle_features(VIEW_HEADINGS - heading, VIEW_ELEVATIONS - elevation)


def _view_offsets(heading: np.ndarray, elevation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets of directions (K,) to every view centre: rel_h, rel_e, angular distance, each (K, 36)."""
    rel_h = wrap_angle(heading[:, None] - VIEW_HEADINGS[None, :])  # (K, 36)
    rel_e = elevation[:, None] - VIEW_ELEVATIONS[None, :]          # (K, 36)
    return rel_h, rel_e, np.hypot(rel_h, rel_e)


def nearest_view_index(heading: float, elevation: float = 0.0) -> int:
    """Index of the view whose centre is angularly closest to (heading, elevation)."""
    _, _, dist = _view_offsets(np.array([heading], dtype=np.float64), np.array([elevation], dtype=np.float64))
    return int(np.argmin(dist[0]))


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
    rel_h, _, ang = _view_offsets(heading, elevation)                     # (K, 36) each
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
