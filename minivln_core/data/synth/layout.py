"""Procedural houses: floors of grid rooms, doors, stairs, viewpoints, objects and navigation edges.

A house is a grid of rooms per floor (all floors share the grid, so stairs can join the same cell
on two floors). Adjacent rooms are joined by a random spanning tree of doors plus a few extra
doors (loops). Viewpoints: one in each doorway (belonging to both rooms), two per staircase
(bottom and top, one floor height apart) and 1-4 inside each room. Navigable edges join the
viewpoints of a room within `max_edge_length` and line of sight (tall objects block it), then
every room's viewpoints are made connected; the doorways and stairs connect the rooms.
All coordinates are metres, z up; positions are rounded to 0.1 mm so that they are exactly the
numbers written to the connectivity files.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass, field

import numpy as np

from minivln_core.data.synth.config import SynthConfig

ROOM_TYPES: tuple[str, ...] = (
    "bedroom", "bathroom", "kitchen", "living room", "dining room", "office", "hallway", "laundry room",
    "entryway",
)


@dataclass(frozen=True)
class ObjectSpec:
    """Physical size of an object kind and how it is placed."""

    size: tuple[float, float, float]  # width (along its wall / x), depth, height in metres
    wall: bool = False                # pushed against (or hung on) a wall instead of free-standing
    z: float | None = None            # centre height above the floor (default: height / 2)
    tall: bool = False                # blocks line of sight between viewpoints (edges avoid it)


OBJECT_SPECS: dict[str, ObjectSpec] = {
    "bed": ObjectSpec((2.0, 1.6, 0.6)),
    "nightstand": ObjectSpec((0.5, 0.4, 0.6), wall=True),
    "dresser": ObjectSpec((1.2, 0.5, 1.0), wall=True),
    "wardrobe": ObjectSpec((1.2, 0.6, 2.0), wall=True, tall=True),
    "lamp": ObjectSpec((0.4, 0.4, 1.5)),
    "plant": ObjectSpec((0.5, 0.5, 1.0)),
    "mirror": ObjectSpec((0.8, 0.05, 1.0), wall=True, z=1.5),
    "painting": ObjectSpec((1.0, 0.05, 0.7), wall=True, z=1.6),
    "toilet": ObjectSpec((0.4, 0.7, 0.8), wall=True),
    "sink": ObjectSpec((0.6, 0.5, 0.9), wall=True),
    "bathtub": ObjectSpec((1.7, 0.8, 0.6), wall=True),
    "shower": ObjectSpec((0.9, 0.9, 2.1), wall=True, tall=True),
    "towel": ObjectSpec((0.5, 0.1, 0.8), wall=True, z=1.2),
    "fridge": ObjectSpec((0.8, 0.7, 1.8), wall=True, tall=True),
    "stove": ObjectSpec((0.8, 0.6, 0.9), wall=True),
    "counter": ObjectSpec((2.0, 0.6, 0.9), wall=True),
    "table": ObjectSpec((1.4, 0.9, 0.75)),
    "chair": ObjectSpec((0.5, 0.5, 0.9)),
    "sofa": ObjectSpec((2.0, 0.9, 0.85), wall=True),
    "armchair": ObjectSpec((0.9, 0.9, 0.9)),
    "coffee table": ObjectSpec((1.1, 0.6, 0.45)),
    "tv": ObjectSpec((1.2, 0.1, 0.7), wall=True, z=1.2),
    "fireplace": ObjectSpec((1.5, 0.5, 1.1), wall=True),
    "bookshelf": ObjectSpec((1.0, 0.4, 1.9), wall=True, tall=True),
    "desk": ObjectSpec((1.4, 0.7, 0.75), wall=True),
    "office chair": ObjectSpec((0.6, 0.6, 1.0)),
    "cabinet": ObjectSpec((1.0, 0.5, 1.0), wall=True),
    "bench": ObjectSpec((1.2, 0.4, 0.45), wall=True),
    "coat rack": ObjectSpec((0.5, 0.5, 1.8)),
    "washing machine": ObjectSpec((0.6, 0.6, 0.85), wall=True),
    "dryer": ObjectSpec((0.6, 0.6, 0.85), wall=True),
    "shelf": ObjectSpec((1.0, 0.4, 1.6), wall=True, tall=True),
    "laundry basket": ObjectSpec((0.5, 0.4, 0.5)),
}

# room type -> (essential objects placed first, optional extras drawn without replacement)
ROOM_OBJECTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "bedroom": (("bed",), ("nightstand", "dresser", "wardrobe", "lamp", "plant", "mirror", "painting")),
    "bathroom": (("toilet", "sink"), ("bathtub", "shower", "mirror", "towel")),
    "kitchen": (("fridge", "stove"), ("sink", "counter", "table", "chair", "plant")),
    "living room": (("sofa",), ("armchair", "coffee table", "tv", "fireplace", "bookshelf", "plant", "painting",
                                "lamp")),
    "dining room": (("table",), ("chair", "cabinet", "plant", "painting", "lamp")),
    "office": (("desk",), ("office chair", "bookshelf", "cabinet", "plant", "lamp", "painting")),
    "hallway": ((), ("painting", "plant", "bench", "coat rack", "mirror", "cabinet")),
    "laundry room": (("washing machine",), ("dryer", "sink", "shelf", "laundry basket")),
    "entryway": (("coat rack",), ("bench", "plant", "mirror", "painting")),
}

OBJECT_NAMES: tuple[str, ...] = tuple(sorted(OBJECT_SPECS))
CLASS_NAMES: tuple[str, ...] = ROOM_TYPES + OBJECT_NAMES   # feature classes: rooms first, then objects
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}


# Room types drawn after each floor's essentials: (type, weight); types in UNIQUE_ROOMS appear once.
_GROUND_EXTRAS = (("bedroom", 2.0), ("dining room", 2.0), ("office", 1.0), ("laundry room", 1.0),
                  ("entryway", 1.0), ("bathroom", 0.5), ("hallway", 0.5))
_UPPER_EXTRAS = (("bedroom", 4.0), ("office", 1.0), ("bathroom", 1.0), ("laundry room", 0.5), ("hallway", 0.5))
_UNIQUE_ROOMS = {"kitchen", "living room", "dining room", "entryway", "laundry room"}
_WALL_MARGIN = 0.6      # in-room viewpoints and stairs keep this far from the walls
_DOOR_CLEARANCE = 1.0   # in-room viewpoints keep this far from doorway viewpoints
_OBJ_CLEAR_ROOM = 0.5   # object footprints keep this far from in-room viewpoints
_OBJ_CLEAR_PASSAGE = 0.8  # ... and this far from doorway/stairs viewpoints
_SCAN_ALPHABET = string.digits + string.ascii_letters


@dataclass
class Room:
    """An axis-aligned room on one floor."""

    index: int
    floor: int
    kind: str                                   # one of ROOM_TYPES
    bounds: tuple[float, float, float, float]   # x0, y0, x1, y1
    z: float                                    # floor elevation
    cell: tuple[int, int]                       # grid column, row

    def contains(self, x: float, y: float, margin: float = 0.0) -> bool:
        """True if (x, y) lies inside the room shrunk by `margin`."""
        x0, y0, x1, y1 = self.bounds
        return x0 + margin <= x <= x1 - margin and y0 + margin <= y <= y1 - margin


@dataclass
class SceneObject:
    """A physical object: axis-aligned box in world coordinates."""

    obj_id: str          # REVERIE objId (unique within the house)
    name: str            # key of OBJECT_SPECS
    room: int
    centre: np.ndarray   # (3,) box centre
    size: np.ndarray     # (3,) extents along x, y, z

    def footprint(self) -> tuple[float, float, float, float]:
        """x0, y0, x1, y1 of the box seen from above."""
        hx, hy = self.size[0] / 2, self.size[1] / 2
        return (self.centre[0] - hx, self.centre[1] - hy, self.centre[0] + hx, self.centre[1] + hy)


@dataclass
class Viewpoint:
    """A panorama location (the camera centre)."""

    vp_id: str              # 32-char hex like Matterport image ids
    position: np.ndarray    # (3,) camera position
    rooms: tuple[int, ...]  # the room, or the two rooms of a doorway
    kind: str               # "room" | "door" | "stairs"
    floor: int


@dataclass
class House:
    """One generated house (a scan)."""

    index: int
    scan: str
    floors: int
    rooms: list[Room]
    viewpoints: list[Viewpoint]
    objects: list[SceneObject]
    edges: list[tuple[int, int]]            # navigable edges (i < j), sorted
    camera_height: float
    members: list[list[int]] = field(default_factory=list)  # room index -> viewpoint indices in it

    def room_objects(self, room: int) -> list[SceneObject]:
        """Objects standing in a room."""
        return [o for o in self.objects if o.room == room]

    def room_at(self, floor: int, x: float, y: float) -> int | None:
        """Index of the room of `floor` containing (x, y), or None outside the house."""
        for room in self.rooms:
            if room.floor == floor and room.contains(x, y):
                return room.index
        return None

    def connectivity_entries(self) -> list[dict]:
        """The house as a Matterport `<scan>_connectivity.json` array."""
        n = len(self.viewpoints)
        unobstructed = np.zeros((n, n), dtype=bool)   # (N, N) navigable edges
        for a, b in self.edges:
            unobstructed[a, b] = unobstructed[b, a] = True
        visible = unobstructed.copy()                 # (N, N) line of sight: shared room or an edge
        for vps in self.members:
            visible[np.ix_(vps, vps)] = True
        np.fill_diagonal(visible, False)
        entries = []
        for i, vp in enumerate(self.viewpoints):
            x, y, z = (float(v) for v in vp.position)
            entries.append({"image_id": vp.vp_id,
                            "pose": [1.0, 0.0, 0.0, x, 0.0, 1.0, 0.0, y, 0.0, 0.0, 1.0, z, 0.0, 0.0, 0.0, 1.0],
                            "included": True, "visible": visible[i].tolist(),
                            "unobstructed": unobstructed[i].tolist(), "height": self.camera_height})
        return entries


def _rounded(*values: float) -> np.ndarray:
    return np.round(np.asarray(values, dtype=np.float64), 4)


def _rect_point_distance(rect: tuple[float, float, float, float], x: float, y: float) -> float:
    dx = max(rect[0] - x, 0.0, x - rect[2])
    dy = max(rect[1] - y, 0.0, y - rect[3])
    return math.hypot(dx, dy)


def _rects_overlap(a: tuple[float, ...], b: tuple[float, ...], gap: float) -> bool:
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


def segment_hits_rect(p: np.ndarray, q: np.ndarray, rect: tuple[float, float, float, float]) -> bool:
    """True if the 2-D segment p-q crosses the rectangle (Liang-Barsky clipping)."""
    d = (q[0] - p[0], q[1] - p[1])
    t0, t1 = 0.0, 1.0
    for pk, qk in ((-d[0], p[0] - rect[0]), (d[0], rect[2] - p[0]), (-d[1], p[1] - rect[1]), (d[1], rect[3] - p[1])):
        if pk == 0.0:
            if qk < 0.0:
                return False
            continue
        t = qk / pk
        if pk < 0.0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return False
    return True


def _scan_id(rng: np.random.Generator) -> str:
    return "syn" + "".join(_SCAN_ALPHABET[i] for i in rng.integers(0, len(_SCAN_ALPHABET), 8))


def _grow_cells(rng: np.random.Generator, start: tuple[int, int], count: int, shape: tuple[int, int]) -> list:
    """A connected set of `count` grid cells grown from `start` (growth order)."""
    nx, ny = shape
    chosen = [start]
    while len(chosen) < count:
        taken = set(chosen)
        frontier = sorted({(cx + dx, cy + dy) for cx, cy in chosen for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1))
                           if 0 <= cx + dx < nx and 0 <= cy + dy < ny and (cx + dx, cy + dy) not in taken})
        if not frontier:
            break
        chosen.append(frontier[int(rng.integers(len(frontier)))])
    return chosen


def _room_types(rng: np.random.Generator, cells: list[tuple[int, int]], floor: int, n_floors: int) -> list[str]:
    """Room type per cell: the floor's essentials, weighted extras, the hallway on the best-connected cell."""
    n = len(cells)
    if floor == 0:
        kinds = ["kitchen", "living room", "bathroom"] + (["bedroom"] if n_floors == 1 else [])
        extras = _GROUND_EXTRAS
    else:
        kinds, extras = ["bedroom", "bathroom"], _UPPER_EXTRAS
    if n >= 6:
        kinds.append("hallway")
    kinds = kinds[:n]
    while len(kinds) < n:
        options = [(k, w) for k, w in extras if not (k in _UNIQUE_ROOMS and k in kinds)]
        weights = np.array([w for _, w in options])
        kinds.append(options[int(rng.choice(len(options), p=weights / weights.sum()))][0])
    kinds = [kinds[i] for i in rng.permutation(n)]
    if "hallway" in kinds:
        taken = set(cells)
        degree = [sum((cx + dx, cy + dy) in taken for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1))) for cx, cy in cells]
        best, current = int(np.argmax(degree)), kinds.index("hallway")
        kinds[best], kinds[current] = kinds[current], kinds[best]
    return kinds


class _Builder:
    """Accumulates the parts of one house while it is generated."""

    def __init__(self, cfg: SynthConfig, rng: np.random.Generator):
        self.cfg, self.rng = cfg, rng
        self.rooms: list[Room] = []
        self.vps: list[tuple[np.ndarray, tuple[int, ...], str, int]] = []  # position, rooms, kind, floor
        self.objects: list[SceneObject] = []
        self.extra_edges: list[tuple[int, int]] = []

    def add_vp(self, pos: np.ndarray, rooms: tuple[int, ...], kind: str, floor: int) -> int:
        self.vps.append((pos, rooms, kind, floor))
        return len(self.vps) - 1

    def in_room(self, room: int) -> list[int]:
        return [i for i, (_, rooms, _, _) in enumerate(self.vps) if room in rooms]

    # -- doors -------------------------------------------------------------------------------
    def doors(self, floor_rooms: dict[tuple[int, int], int], xs: np.ndarray, ys: np.ndarray) -> None:
        pairs = sorted((a, b) for a in floor_rooms for b in floor_rooms
                       if a < b and abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1)
        parent = {c: c for c in floor_rooms}

        def root(c):
            while parent[c] != c:
                c = parent[c]
            return c

        for k in self.rng.permutation(len(pairs)):
            a, b = pairs[k]
            ra, rb = root(a), root(b)
            extra = self.rng.random() < self.cfg.extra_door_prob
            if ra == rb and not extra:
                continue
            parent[ra] = rb
            if a[0] != b[0]:   # horizontal neighbours share the wall x = xs[b col]
                x = xs[max(a[0], b[0])]
                y = self.rng.uniform(ys[a[1]] + 0.8, ys[a[1] + 1] - 0.8)
            else:
                y = ys[max(a[1], b[1])]
                x = self.rng.uniform(xs[a[0]] + 0.8, xs[a[0] + 1] - 0.8)
            ia, ib = floor_rooms[a], floor_rooms[b]
            z = self.rooms[ia].z + self.cfg.camera_height
            self.add_vp(_rounded(x, y, z), (ia, ib), "door", self.rooms[ia].floor)

    # -- stairs ------------------------------------------------------------------------------
    def stairs(self, low: int, high: int) -> None:
        x0, y0, x1, y1 = self.rooms[low].bounds
        m = _WALL_MARGIN
        along_x = (x1 - x0) >= (y1 - y0)
        extent = (x1 - x0) if along_x else (y1 - y0)
        run = min(self.cfg.stair_run, extent - 2 * m)
        doors = [self.vps[i][0] for i in self.in_room(low) + self.in_room(high)]
        best, best_gap = None, -1.0
        for _ in range(24):  # keep the stairs away from the doorways of both rooms
            start = self.rng.uniform(0.0, extent - 2 * m - run)
            side = self.rng.uniform(y0 + m, y1 - m) if along_x else self.rng.uniform(x0 + m, x1 - m)
            a = (x0 + m + start, side) if along_x else (side, y0 + m + start)
            b = (a[0] + run, a[1]) if along_x else (a[0], a[1] + run)
            gap = min((min(math.dist(p[:2], a), math.dist(p[:2], b)) for p in doors), default=1e9)
            if gap > best_gap:
                best, best_gap = (a, b), gap
        (a, b) = best if self.rng.random() < 0.5 else best[::-1]
        cam = self.cfg.camera_height
        bottom = self.add_vp(_rounded(a[0], a[1], self.rooms[low].z + cam), (low,), "stairs", self.rooms[low].floor)
        top = self.add_vp(_rounded(b[0], b[1], self.rooms[high].z + cam), (high,), "stairs", self.rooms[high].floor)
        self.extra_edges.append((bottom, top))

    # -- in-room viewpoints --------------------------------------------------------------------
    def room_viewpoints(self, room: Room) -> None:
        cfg = self.cfg
        x0, y0, x1, y1 = room.bounds
        area = (x1 - x0) * (y1 - y0)
        lo, hi = cfg.viewpoints_per_room
        target = int(np.clip(round(area / cfg.room_area_per_viewpoint) + int(self.rng.integers(-1, 2)), lo, hi))
        existing = [(self.vps[i][0], self.vps[i][2]) for i in self.in_room(room.index)]
        placed = 0
        for _ in range(target * 60):
            if placed == target:
                break
            x = self.rng.uniform(x0 + _WALL_MARGIN, x1 - _WALL_MARGIN)
            y = self.rng.uniform(y0 + _WALL_MARGIN, y1 - _WALL_MARGIN)
            if all(math.dist(p[:2], (x, y)) >= (_DOOR_CLEARANCE if kind == "door" else cfg.viewpoint_spacing)
                   for p, kind in existing):
                pos = _rounded(x, y, room.z + cfg.camera_height)
                self.add_vp(pos, (room.index,), "room", room.floor)
                existing.append((pos, "room"))
                placed += 1
        if placed == 0:  # crowded room: the centre always hosts one viewpoint
            self.add_vp(_rounded((x0 + x1) / 2, (y0 + y1) / 2, room.z + cfg.camera_height), (room.index,), "room",
                        room.floor)

    # -- objects -------------------------------------------------------------------------------
    def room_objects(self, room: Room) -> None:
        essentials, extras = ROOM_OBJECTS[room.kind]
        lo, hi = self.cfg.objects_per_room
        count = max(int(self.rng.integers(lo, hi + 1)), min(len(essentials), hi))
        order = [extras[i] for i in self.rng.permutation(len(extras))]
        names = (list(essentials) + order)[:count]
        avoid = [(self.vps[i][0], _OBJ_CLEAR_ROOM if self.vps[i][2] == "room" else _OBJ_CLEAR_PASSAGE)
                 for i in self.in_room(room.index)]
        for a, b in self.extra_edges:  # keep the middle of a staircase free
            if room.index in self.vps[a][1] or room.index in self.vps[b][1]:
                avoid.append(((self.vps[a][0] + self.vps[b][0]) / 2, _OBJ_CLEAR_PASSAGE))
        for name in names:
            self._place(room, name, avoid)

    def _place(self, room: Room, name: str, avoid: list[tuple[np.ndarray, float]]) -> None:
        spec = OBJECT_SPECS[name]
        w, d, h = spec.size
        x0, y0, x1, y1 = room.bounds
        others = [o.footprint() for o in self.objects if o.room == room.index]
        for _ in range(40):
            if spec.wall:
                wall = int(self.rng.integers(4))
                sx, sy = (w, d) if wall < 2 else (d, w)          # wall 0/1: y0/y1, wall 2/3: x0/x1
                if wall < 2:
                    cx = self.rng.uniform(x0 + sx / 2 + 0.05, x1 - sx / 2 - 0.05)
                    cy = y0 + sy / 2 + 0.02 if wall == 0 else y1 - sy / 2 - 0.02
                else:
                    cy = self.rng.uniform(y0 + sy / 2 + 0.05, y1 - sy / 2 - 0.05)
                    cx = x0 + sx / 2 + 0.02 if wall == 2 else x1 - sx / 2 - 0.02
            else:
                sx, sy = (w, d) if self.rng.random() < 0.5 else (d, w)
                cx = self.rng.uniform(x0 + sx / 2 + 0.1, x1 - sx / 2 - 0.1)
                cy = self.rng.uniform(y0 + sy / 2 + 0.1, y1 - sy / 2 - 0.1)
            rect = (cx - sx / 2, cy - sy / 2, cx + sx / 2, cy + sy / 2)
            if any(_rect_point_distance(rect, p[0], p[1]) < gap for p, gap in avoid):
                continue
            if any(_rects_overlap(rect, o, 0.1) for o in others):
                continue
            cz = room.z + (spec.z if spec.z is not None else h / 2)
            self.objects.append(SceneObject(str(len(self.objects)), name, room.index, _rounded(cx, cy, cz),
                                            _rounded(sx, sy, h)))
            return

    # -- edges ---------------------------------------------------------------------------------
    def edges(self) -> tuple[list[tuple[int, int]], list[list[int]]]:
        members = [self.in_room(r.index) for r in self.rooms]
        blockers = [o.footprint() for o in self.objects if OBJECT_SPECS[o.name].tall]
        edges = set(self.extra_edges)
        for vps in members:
            parent = {i: i for i in vps}

            def root(i):
                while parent[i] != i:
                    i = parent[i]
                return i

            pairs = sorted((math.dist(self.vps[a][0], self.vps[b][0]), a, b) for a in vps for b in vps if a < b)
            for dist, a, b in pairs:
                pa, pb = self.vps[a][0], self.vps[b][0]
                if dist <= self.cfg.max_edge_length and not any(segment_hits_rect(pa, pb, r) for r in blockers):
                    edges.add((a, b))
                    parent[root(a)] = root(b)
            for dist, a, b in pairs:   # join what line of sight left apart, shortest gaps first
                if root(a) != root(b):
                    edges.add((a, b))
                    parent[root(a)] = root(b)
        return sorted(edges), members


def build_house(cfg: SynthConfig, index: int) -> House:
    """Generate house `index` of the world (depends only on cfg.seed, the layout keys and `index`)."""
    rng = np.random.default_rng([cfg.seed, index, 0])
    scan = _scan_id(rng)
    n_floors = cfg.floors[0]
    if cfg.floors[1] > n_floors and rng.random() < cfg.multi_floor_prob:
        n_floors = int(rng.integers(n_floors + 1, cfg.floors[1] + 1))
    counts = [int(rng.integers(cfg.rooms_per_floor[0], cfg.rooms_per_floor[1] + 1)) for _ in range(n_floors)]
    cells_needed = math.ceil(max(counts) * 1.5)
    nx = max(2, round(math.sqrt(cells_needed)))
    ny = max(2, math.ceil(cells_needed / nx))
    xs = np.round(np.concatenate([[0.0], np.cumsum(rng.uniform(*cfg.room_width, nx))]), 4)   # (nx + 1,) walls
    ys = np.round(np.concatenate([[0.0], np.cumsum(rng.uniform(*cfg.room_depth, ny))]), 4)   # (ny + 1,) walls
    b = _Builder(cfg, rng)
    start = (int(rng.integers(nx)), int(rng.integers(ny)))
    floor_maps: list[dict[tuple[int, int], int]] = []
    for floor, count in enumerate(counts):
        cells = _grow_cells(rng, start, count, (nx, ny))
        kinds = _room_types(rng, cells, floor, n_floors)
        floor_map = {}
        for cell, kind in zip(cells, kinds):
            bounds = (float(xs[cell[0]]), float(ys[cell[1]]), float(xs[cell[0] + 1]), float(ys[cell[1] + 1]))
            floor_map[cell] = len(b.rooms)
            b.rooms.append(Room(len(b.rooms), floor, kind, bounds, round(floor * cfg.floor_height, 4), cell))
        b.doors(floor_map, xs, ys)
        if floor > 0:
            b.stairs(floor_maps[-1][start], floor_map[start])
        floor_maps.append(floor_map)
        start = cells[int(rng.integers(len(cells)))]   # the next floor's stairs rise from here
    for room in b.rooms:
        b.room_viewpoints(room)
    for room in b.rooms:
        b.room_objects(room)
    edges, members = b.edges()
    ids: list[str] = []
    while len(ids) < len(b.vps):
        vp_id = rng.bytes(16).hex()
        if vp_id not in ids:
            ids.append(vp_id)
    viewpoints = [Viewpoint(ids[i], pos, rooms, kind, floor) for i, (pos, rooms, kind, floor) in enumerate(b.vps)]
    house = House(index, scan, n_floors, b.rooms, viewpoints, b.objects, edges, cfg.camera_height, members)
    _check_connected(house)
    return house


def _check_connected(house: House) -> None:
    seen, stack = {0}, [0]
    neighbours: dict[int, list[int]] = {}
    for a, b in house.edges:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    while stack:
        for j in neighbours.get(stack.pop(), []):
            if j not in seen:
                seen.add(j)
                stack.append(j)
    if len(seen) != len(house.viewpoints):
        raise RuntimeError(f"synthetic house {house.scan} is not connected ({len(seen)}/{len(house.viewpoints)})")
