"""What each of the 36 views of a viewpoint sees: objects with 2-D boxes, and the room it looks into.

Camera model (Matterport3D simulator): 640x480 pinhole with square pixels and VFOV 60 deg, so
f = 240 / tan(30 deg) px. View ix = 12*row + col looks at heading col*30 deg (clockwise from +y)
and elevation (row-1)*30 deg. An object is annotated in a view when its centre lies within
+-40 deg of the view heading and +-30 deg of its elevation, it stands in a room of the viewpoint
(a doorway sees both rooms), it is at most `max_view_distance` away, and its projected box, clipped
to the image, is at least `min_box_pixels` on both sides. The box is the bounding rectangle of
the projected corners of the object's 3-D box, [x, y, w, h] in integer pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from minivln_core.data.synth.config import SynthConfig
from minivln_core.data.synth.layout import House

WIDTH, HEIGHT = 640, 480
FOCAL = (HEIGHT / 2) / math.tan(math.radians(30.0))   # px, from VFOV 60 deg
HALF_HFOV = math.radians(40.0)
HALF_VFOV = math.radians(30.0)
_MIN_DEPTH = 0.05                                      # corners behind the camera are pulled to this depth

_IX = np.arange(36)
VIEW_HEADINGS = (_IX % 12) * math.radians(30.0)        # (36,)
VIEW_ELEVATIONS = (_IX // 12 - 1) * math.radians(30.0)  # (36,)
_CORNERS = np.array([[sx, sy, sz] for sx in (-0.5, 0.5) for sy in (-0.5, 0.5) for sz in (-0.5, 0.5)])  # (8, 3)


def _camera_axes() -> np.ndarray:
    """Rows right, up, forward of every view camera in world coordinates, (36, 3, 3)."""
    h, e = VIEW_HEADINGS, VIEW_ELEVATIONS
    forward = np.stack([np.sin(h) * np.cos(e), np.cos(h) * np.cos(e), np.sin(e)], axis=-1)      # (36, 3)
    right = np.stack([np.cos(h), -np.sin(h), np.zeros_like(h)], axis=-1)                       # (36, 3)
    up = np.stack([-np.sin(h) * np.sin(e), -np.cos(h) * np.sin(e), np.cos(e)], axis=-1)        # (36, 3)
    return np.stack([right, up, forward], axis=1)


_AXES = _camera_axes()


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


@dataclass(frozen=True)
class Sighting:
    """One object as seen from one viewpoint."""

    obj: int                                  # index into House.objects
    views: tuple[int, ...]                    # view indices (ascending) that annotate it
    boxes: tuple[tuple[int, int, int, int], ...]  # [x, y, w, h] px, one per view
    heading: float                            # absolute heading of the object centre (rad)
    elevation: float                          # absolute elevation of the object centre (rad)
    distance: float                           # metres from the camera to the object centre

    def largest(self) -> tuple[int, tuple[int, int, int, int]]:
        """(view, box) of the view where the object's box is largest (first on ties)."""
        k = max(range(len(self.views)), key=lambda i: (self.boxes[i][2] * self.boxes[i][3], -i))
        return self.views[k], self.boxes[k]


def project_boxes(camera: np.ndarray, centres: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Clipped image boxes [x0, y0, x1, y1] of 3-D boxes in all 36 views, (n, 36, 4) float px."""
    corners = centres[:, None, :] + _CORNERS[None] * sizes[:, None, :] - camera  # (n, 8, 3)
    cam = np.einsum("vij,nkj->nvki", _AXES, corners)                              # (n, 36, 8, 3)
    depth = np.maximum(cam[..., 2], _MIN_DEPTH)                                   # (n, 36, 8)
    u = WIDTH / 2 + FOCAL * cam[..., 0] / depth
    v = HEIGHT / 2 - FOCAL * cam[..., 1] / depth
    boxes = np.stack([u.min(-1), v.min(-1), u.max(-1), v.max(-1)], axis=-1)      # (n, 36, 4)
    return np.clip(boxes, 0.0, [WIDTH, HEIGHT, WIDTH, HEIGHT])


def viewpoint_sightings(house: House, vp: int, cfg: SynthConfig) -> list[Sighting]:
    """Objects annotated at viewpoint `vp` (ordered by object index)."""
    viewpoint = house.viewpoints[vp]
    objs = [i for i, o in enumerate(house.objects) if o.room in viewpoint.rooms]
    if not objs:
        return []
    camera = viewpoint.position                                              # (3,)
    centres = np.stack([house.objects[i].centre for i in objs])               # (n, 3)
    sizes = np.stack([house.objects[i].size for i in objs])                   # (n, 3)
    rel = centres - camera                                                    # (n, 3)
    heading = np.arctan2(rel[:, 0], rel[:, 1])                                # (n,)
    elevation = np.arctan2(rel[:, 2], np.hypot(rel[:, 0], rel[:, 1]))         # (n,)
    distance = np.linalg.norm(rel, axis=1)                                    # (n,)
    rel_h = _wrap(heading[:, None] - VIEW_HEADINGS[None])                     # (n, 36)
    rel_e = elevation[:, None] - VIEW_ELEVATIONS[None]                        # (n, 36)
    boxes = project_boxes(camera, centres, sizes)                             # (n, 36, 4)
    widths, heights = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    seen = ((np.abs(rel_h) <= HALF_HFOV) & (np.abs(rel_e) <= HALF_VFOV) & (distance[:, None] <= cfg.max_view_distance)
            & (widths >= cfg.min_box_pixels) & (heights >= cfg.min_box_pixels))  # (n, 36)
    out = []
    for k, obj in enumerate(objs):
        views = tuple(int(v) for v in np.flatnonzero(seen[k]))
        if not views:
            continue
        rects = tuple(_xywh(boxes[k, v]) for v in views)
        out.append(Sighting(obj, views, rects, float(heading[k]), float(elevation[k]), float(distance[k])))
    return out


def _xywh(box: np.ndarray) -> tuple[int, int, int, int]:
    x0, y0 = int(round(float(box[0]))), int(round(float(box[1])))
    return (x0, y0, max(1, int(round(float(box[2]))) - x0), max(1, int(round(float(box[3]))) - y0))


def house_sightings(house: House, cfg: SynthConfig) -> list[list[Sighting]]:
    """Sightings of every viewpoint of the house (outer index = viewpoint index)."""
    return [viewpoint_sightings(house, i, cfg) for i in range(len(house.viewpoints))]


def view_rooms(house: House, vp: int, probe: float = 1.0) -> np.ndarray:
    """Room each of the 36 views looks into, (36,) int: the room `probe` metres ahead horizontally."""
    viewpoint = house.viewpoints[vp]
    x, y = float(viewpoint.position[0]), float(viewpoint.position[1])
    per_col = []
    for col in range(12):
        h = col * math.radians(30.0)
        room = house.room_at(viewpoint.floor, x + probe * math.sin(h), y + probe * math.cos(h))
        per_col.append(room if room is not None and room in viewpoint.rooms else viewpoint.rooms[0])
    return np.tile(np.asarray(per_col, dtype=np.int64), 3)


def bboxes_entries(house: House, sightings: list[list[Sighting]]) -> dict[str, dict[str, dict]]:
    """DUET merged-BBoxes entries of a house: {"<scan>_<vp>": {objId: {name, visible_pos, bbox2d}}}."""
    out: dict[str, dict[str, dict]] = {}
    for i, vp in enumerate(house.viewpoints):
        entry = {}
        for s in sightings[i]:
            obj = house.objects[s.obj]
            entry[obj.obj_id] = {"name": obj.name, "visible_pos": list(s.views), "bbox2d": [list(b) for b in s.boxes]}
        out[f"{house.scan}_{vp.vp_id}"] = entry
    return out
