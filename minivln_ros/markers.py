"""The agent's topological map as an RViz MarkerArray: visited, current and ghost nodes, edges, goal."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from minivln_core.graph.graph_map import GraphMap

NAMESPACE = "minivln_map"
COLORS = {  # r, g, b, a
    "visited": (0.2, 0.8, 0.2, 0.9),
    "current": (0.1, 0.4, 1.0, 1.0),
    "ghost": (0.6, 0.6, 0.6, 0.6),
    "edge": (0.9, 0.9, 0.9, 0.8),
    "goal": (1.0, 0.2, 0.1, 1.0),
}


def _point(p: np.ndarray) -> Point:
    return Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))


def _color(name: str) -> ColorRGBA:
    r, g, b, a = COLORS[name]
    return ColorRGBA(r=r, g=g, b=b, a=a)


def _marker(header: Header, ident: int, kind: int, name: str, scale: float) -> Marker:
    m = Marker(header=header, ns=NAMESPACE, id=ident, type=kind, action=Marker.ADD)
    m.pose.orientation.w = 1.0
    m.scale.x = m.scale.y = m.scale.z = scale
    m.color = _color(name)
    return m


def _spheres(header: Header, ident: int, name: str, positions: Sequence[np.ndarray], scale: float) -> Marker:
    m = _marker(header, ident, Marker.SPHERE_LIST, name, scale)
    m.points = [_point(p) for p in positions]
    return m


def graph_markers(gmap: GraphMap | None, goal: np.ndarray | None, frame: str, stamp: Time) -> MarkerArray:
    """Markers of `gmap` (None: only clear the display) and the current goal."""
    header = Header(frame_id=frame, stamp=stamp)
    clear = Marker(header=header, ns=NAMESPACE, action=Marker.DELETEALL)
    out = MarkerArray(markers=[clear])
    if gmap is None or not len(gmap):
        return out
    current = gmap.current
    visited = [v for v in gmap.visited if v != current]
    out.markers.append(_spheres(header, 1, "visited", [gmap.position(v) for v in visited], 0.35))
    out.markers.append(_spheres(header, 2, "ghost", [gmap.position(v) for v in gmap.ghosts], 0.25))
    if current is not None:
        out.markers.append(_spheres(header, 3, "current", [gmap.position(current)], 0.45))
    edges = _marker(header, 4, Marker.LINE_LIST, "edge", 0.04)
    for a in gmap.nodes:
        for b in gmap.neighbours(a):
            if a < b:
                edges.points += [_point(gmap.position(a)), _point(gmap.position(b))]
    out.markers.append(edges)
    if goal is not None:
        arrow = _marker(header, 5, Marker.ARROW, "goal", 0.15)
        arrow.scale.x, arrow.scale.y, arrow.scale.z = 0.08, 0.2, 0.3   # shaft, head diameter, head length
        tip = np.asarray(goal, dtype=np.float64)
        arrow.points = [_point(tip + np.array([0.0, 0.0, 1.0])), _point(tip)]
        out.markers.append(arrow)
    return out
