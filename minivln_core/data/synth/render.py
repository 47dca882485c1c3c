"""Render what a camera sees in a synthetic house: a vectorised numpy ray caster.

The house is a set of closed axis-aligned room boxes joined by openings (portals): a door in the
wall shared by the two rooms of every doorway viewpoint, and a hole in the floor/ceiling over
every staircase. A ray starts in the camera's room and leaves it through the first room face it
reaches; through a portal it continues in the next room, otherwise it hits that wall, floor or
ceiling. Objects (boxes, some made of several parts, plus stair steps and railings) are then
tested only in tiles of 8x8 rays whose bounding cone meets the box's bounding sphere; a box hit
counts when it is nearer than the room surface (objects live inside rooms, so that suffices).
Shading: a point light under the ceiling of every room (Lambert term with fall-off, plus
ambient), a deterministic per-room tint, and distance fog. Textures come from render_materials.

Conventions are the project's (see minivln_core.frames): heading clockwise from +y, elevation positive
up, pixel centres at +0.5, principal point at the image centre, square pixels.

    renderer = Renderer(house, width=224, height=168)      # ViT input scale; default 640x480, VFOV 60
    views = renderer.render_views(vp_id)                    # 36 x (168, 224, 3) uint8, ix = 12*row + col
    pano = renderer.render_equirect(position, heading)      # (512, 1024, 3), centre column along heading
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from minivln_core.data.synth.config import SynthConfig
from minivln_core.data.synth.layout import OBJECT_SPECS, House, Room
from minivln_core.data.synth.render_materials import FULL_BOX, SHAPES, TEX, MaterialAtlas, Part, build_atlas
from minivln_core.frames import NUM_VIEWS

TILE = 8                       # rays per tile side for object culling
MAX_HOPS = 8                   # portals a ray may pass before it stops at a wall
AMBIENT, DIFFUSE, LIGHT_RANGE = 0.5, 0.75, 4.5
FOG_DISTANCE = 30.0
FOG_GREY = 200.0
_EPS = 1e-4


def _safe_inverse(d: np.ndarray) -> np.ndarray:
    """1 / d with components near zero replaced by a huge finite value, (..., 3) float32."""
    return (1.0 / np.where(np.abs(d) < 1e-9, np.float32(1e-9), d)).astype(np.float32)


def _camera_axes(heading: float, elevation: float) -> np.ndarray:
    """Rows right, up, forward of a camera in world coordinates, (3, 3)."""
    sh, ch, se, ce = math.sin(heading), math.cos(heading), math.sin(elevation), math.cos(elevation)
    return np.array([[ch, -sh, 0.0], [-sh * se, -ch * se, ce], [sh * ce, ch * ce, se]])


def _to_tiles(a: np.ndarray) -> np.ndarray:
    """(V, H, W, C) -> (V * ceil(H/TILE) * ceil(W/TILE), TILE*TILE, C), edges padded by replication."""
    v, h, w, c = a.shape
    th, tw = -(-h // TILE), -(-w // TILE)
    a = np.pad(a, ((0, 0), (0, th * TILE - h), (0, tw * TILE - w), (0, 0)), mode="edge")
    return a.reshape(v, th, TILE, tw, TILE, c).transpose(0, 1, 3, 2, 4, 5).reshape(v * th * tw, TILE * TILE, c)


def _from_tiles(a: np.ndarray, v: int, h: int, w: int) -> np.ndarray:
    """Inverse of _to_tiles: (n_tiles, TILE*TILE, C) -> (V, H, W, C)."""
    th, tw, c = -(-h // TILE), -(-w // TILE), a.shape[-1]
    a = a.reshape(v, th, tw, TILE, TILE, c).transpose(0, 1, 3, 2, 4, 5).reshape(v, th * TILE, tw * TILE, c)
    return a[:, :h, :w]


def infer_ceiling(house: House) -> float:
    """Room height of a house: its floor spacing, or the default floor height for one-floor houses."""
    levels = sorted({round(r.z, 4) for r in house.rooms})
    return float(levels[1] - levels[0]) if len(levels) > 1 else float(SynthConfig.floor_height)


DOOR_WIDTH, DOOR_HEIGHT, FRAME = 1.0, 2.1, 0.08        # door openings and their frame decals (m)
STAIR_WIDTH, STEP_RISE, RAIL_HEIGHT, RAIL_THICK = 1.0, 0.19, 0.9, 0.05
WINDOW_SILL, WINDOW_TOP, WINDOW_MIN_WALL = 0.9, 2.2, 2.0  # windows on exterior walls at least this long
_BIG = 1e6


@dataclass
class Scene:
    """Render geometry of a house as flat arrays: rooms, portals, decals and boxes."""

    room_lo: np.ndarray       # (R, 3) float32 room box min corner (z = floor)
    room_hi: np.ndarray       # (R, 3) float32 max corner (z = ceiling)
    wall_mat: np.ndarray      # (R,) int32 material ids
    floor_mat: np.ndarray     # (R,)
    ceiling_mat: np.ndarray   # (R,)
    room_light: np.ndarray    # (R, 3) float32 ceiling light position
    room_tint: np.ndarray     # (R,) float32 brightness factor
    portal_room: np.ndarray   # (P,) int32 room the portal is a face opening of
    portal_key: np.ndarray    # (P,) int64 room * 6 + face (face = 2 * axis + [max side])
    portal_lo: np.ndarray     # (P, 3) float32 opening box (unbounded along the face axis)
    portal_hi: np.ndarray     # (P, 3)
    portal_to: np.ndarray     # (P,) int32 room behind the opening
    decal_key: np.ndarray     # (Q,) int64 room * 6 + face
    decal_lo: np.ndarray      # (Q, 3) float32 decal box (unbounded along the face axis)
    decal_hi: np.ndarray      # (Q, 3)
    decal_mat: np.ndarray     # (Q,) int32
    box_lo: np.ndarray        # (B, 3) float32 boxes: object parts, stair steps, railings
    box_hi: np.ndarray        # (B, 3)
    box_centre: np.ndarray    # (B, 3) float64
    box_radius: np.ndarray    # (B,) float64 half diagonal
    box_side: np.ndarray      # (B,) int32 material of vertical (and bottom) faces
    box_top: np.ndarray       # (B,) int32 material of the top face
    box_label: np.ndarray     # (B,) int32 index into house.objects, -1 for stairs and railings
    box_room: np.ndarray      # (B,) int32


def _wall_face(room: Room, x: float, y: float) -> int:
    """Face (0..3) of `room` whose wall plane holds the point (x, y)."""
    x0, y0, x1, y1 = room.bounds
    gaps = [abs(x - x0), abs(x - x1), abs(y - y0), abs(y - y1)]
    return int(np.argmin(gaps))


def _opening(face: int, centre: float, half: float, z0: float, z1: float) -> tuple[list[float], list[float]]:
    """Box of a wall opening: `centre +- half` along the wall, z0..z1, unbounded across the wall."""
    lo, hi = [-_BIG, -_BIG, z0], [_BIG, _BIG, z1]
    along = 1 if face < 2 else 0
    lo[along], hi[along] = centre - half, centre + half
    return lo, hi


def _back_side(house: House, obj_index: int) -> str:
    """Side of an object's box that faces away from the room: its wall, or away from the room centre."""
    obj = house.objects[obj_index]
    x0, y0, x1, y1 = house.rooms[obj.room].bounds
    fx0, fy0, fx1, fy1 = obj.footprint()
    if OBJECT_SPECS[obj.name].wall:
        gaps = {"-x": fx0 - x0, "+x": x1 - fx1, "-y": fy0 - y0, "+y": y1 - fy1}
        return min(gaps, key=lambda k: gaps[k])
    dx, dy = obj.centre[0] - (x0 + x1) / 2, obj.centre[1] - (y0 + y1) / 2
    return ("+x" if dx > 0 else "-x") if abs(dx) > abs(dy) else ("+y" if dy > 0 else "-y")


def _orient(part: Part, back: str) -> tuple[np.ndarray, np.ndarray]:
    """Part fractions (local frame, back = +y) turned so the back faces `back`, (3,) lo and hi."""
    (ax, ay, az), (bx, by, bz) = part.lo, part.hi
    x, y = {"+y": ((ax, bx), (ay, by)), "-y": ((1 - bx, 1 - ax), (1 - by, 1 - ay)),
            "+x": ((ay, by), (1 - bx, 1 - ax)), "-x": ((1 - by, 1 - ay), (ax, bx))}[back]
    return np.array([x[0], y[0], az]), np.array([x[1], y[1], bz])


def _box(axes: tuple[int, int], spans: tuple[tuple[float, float], ...]) -> tuple[np.ndarray, np.ndarray]:
    """Box lo, hi (3,) from spans (min, max) along the horizontal axes `axes` and z, in that order."""
    lo, hi = np.zeros(3), np.zeros(3)
    for axis, (a, b) in zip((*axes, 2), spans):
        lo[axis], hi[axis] = min(a, b), max(a, b)
    return lo, hi


_Opening = tuple[int, int, list[float], list[float], int]                 # room, face, lo, hi, target room / material
_Box = tuple[np.ndarray, np.ndarray, int, int, int, int]                 # lo, hi, side mat, top mat, label, room


def _doors(house: House, mi: dict[str, int]) -> tuple[list[_Opening], list[_Opening]]:
    """Portals through the wall at every doorway viewpoint (both ways) and their frame decals."""
    portals, frames = [], []
    for vp in house.viewpoints:
        if vp.kind != "door":
            continue
        x, y = float(vp.position[0]), float(vp.position[1])
        for a, b in (vp.rooms, vp.rooms[::-1]):
            room = house.rooms[a]
            face = _wall_face(room, x, y)
            centre = y if face < 2 else x
            portals.append((a, face, *_opening(face, centre, DOOR_WIDTH / 2, room.z, room.z + DOOR_HEIGHT), b))
            frames.append((a, face, *_opening(face, centre, DOOR_WIDTH / 2 + FRAME, room.z,
                                              room.z + DOOR_HEIGHT + FRAME), mi[f"frame:{room.kind}"]))
    return portals, frames


def _windows(house: House, lo: np.ndarray, hi: np.ndarray, window_mat: int) -> list[_Opening]:
    """Window decals centred on exterior walls (no room behind) that no wall furniture covers."""
    windows = []
    for a, room in enumerate(house.rooms):
        for face in range(4):
            axis, along = face // 2, 1 - face // 2
            plane = hi[a, axis] if face % 2 else lo[a, axis]
            shared = any(o.floor == room.floor and o.index != a
                         and abs((lo[o.index, axis] if face % 2 else hi[o.index, axis]) - plane) < 1e-6
                         and min(hi[a, along], hi[o.index, along]) - max(lo[a, along], lo[o.index, along]) > 0.1
                         for o in house.rooms)
            length, centre = hi[a, along] - lo[a, along], (hi[a, along] + lo[a, along]) / 2
            if shared or length < WINDOW_MIN_WALL:
                continue
            half = min(0.8, (length - 1.4) / 2)
            blocked = any(abs(o.centre[axis] + (1 if face % 2 else -1) * o.size[axis] / 2 - plane) < 0.2
                          and abs(o.centre[along] - centre) < half + o.size[along] / 2 + 0.1
                          for o in house.room_objects(a))
            if not blocked:
                windows.append((a, face, *_opening(face, centre, half, room.z + WINDOW_SILL, room.z + WINDOW_TOP),
                                window_mat))
    return windows


def _stairs(house: House, mi: dict[str, int]) -> tuple[list[_Opening], list[_Box]]:
    """Per staircase: a floor/ceiling hole (portals both ways), steps in the lower room, railings above."""
    portals: list[_Opening] = []
    boxes: list[_Box] = []
    for i, j in house.edges:
        va, vb = house.viewpoints[i], house.viewpoints[j]
        if va.kind != "stairs" or vb.kind != "stairs" or va.floor == vb.floor:
            continue
        bottom, top = (va, vb) if va.floor < vb.floor else (vb, va)
        low, high = bottom.rooms[0], top.rooms[0]
        z0, z1 = house.rooms[low].z, house.rooms[high].z
        along = 0 if abs(top.position[0] - bottom.position[0]) >= abs(top.position[1] - bottom.position[1]) else 1
        axes, a0, a1 = (along, 1 - along), float(bottom.position[along]), float(top.position[along])
        c, w = float(bottom.position[1 - along]), STAIR_WIDTH / 2
        n = max(3, int(round((z1 - z0) / STEP_RISE)))
        for k in range(n):                                    # step k spans run k/n..(k+1)/n, rises to (k+1)/n
            span = (a0 + (a1 - a0) * k / n, a0 + (a1 - a0) * (k + 1) / n)
            boxes.append((*_box(axes, (span, (c - w, c + w), (z0, z0 + (z1 - z0) * (k + 1) / n))),
                          mi["stair riser"], mi["stair tread"], -1, low))
        hole_lo, hole_hi = _box(axes, ((a0, a1), (c - w, c + w), (-_BIG, _BIG)))        # unbounded in z
        portals += [(low, 5, hole_lo.tolist(), hole_hi.tolist(), high),
                    (high, 4, hole_lo.tolist(), hole_hi.tolist(), low)]
        foot = a0 - math.copysign(RAIL_THICK, a1 - a0)
        for span in (((a0, a1), (c + w, c + w + RAIL_THICK)), ((a0, a1), (c - w - RAIL_THICK, c - w)),
                     ((foot, a0), (c - w - RAIL_THICK, c + w + RAIL_THICK))):   # two sides and the far end
            boxes.append((*_box(axes, (*span, (z1, z1 + RAIL_HEIGHT))), mi["rail"], mi["stair tread"], -1, high))
    return portals, boxes


def _object_boxes(house: House, mi: dict[str, int]) -> list[_Box]:
    """The part boxes of every object, turned so each shape's back faces its wall (or away from the room)."""
    boxes = []
    for k, obj in enumerate(house.objects):
        back, o_lo = _back_side(house, k), obj.centre - obj.size / 2
        for part in SHAPES.get(obj.name, FULL_BOX):
            f_lo, f_hi = _orient(part, back)
            side, top = (mi[f"{key}:{obj.name}"] if key in ("side", "top") else mi[key]
                         for key in (part.side, part.top))
            boxes.append((o_lo + f_lo * obj.size, o_lo + f_hi * obj.size, side, top, k, obj.room))
    return boxes


def build_scene(house: House, atlas: MaterialAtlas, ceiling: float) -> Scene:
    """Derive the render geometry (portals, decals, object parts, stairs) of a house."""
    mi, rooms = atlas.index, house.rooms
    lo = np.array([[r.bounds[0], r.bounds[1], r.z] for r in rooms])                         # (R, 3)
    hi = np.array([[r.bounds[2], r.bounds[3], r.z + ceiling] for r in rooms])               # (R, 3)
    portals, decals = _doors(house, mi)
    decals += _windows(house, lo, hi, mi["window"])
    stair_portals, boxes = _stairs(house, mi)
    portals += stair_portals
    boxes += _object_boxes(house, mi)
    tint = np.random.default_rng([house.index, 9173]).uniform(0.93, 1.07, len(rooms))     # seeded by the house
    f32, i32 = np.float32, np.int32
    b_lo = np.array([b[0] for b in boxes]).reshape(-1, 3)                                   # (B, 3)
    b_hi = np.array([b[1] for b in boxes]).reshape(-1, 3)
    return Scene(
        room_lo=lo.astype(f32), room_hi=hi.astype(f32),
        wall_mat=np.array([mi[f"wall:{r.kind}"] for r in rooms], i32),
        floor_mat=np.array([mi[f"floor:{r.kind}"] for r in rooms], i32),
        ceiling_mat=np.array([mi[f"ceiling:{r.kind}"] for r in rooms], i32),
        room_light=np.column_stack([(lo[:, :2] + hi[:, :2]) / 2, hi[:, 2] - 0.35]).astype(f32),
        room_tint=tint.astype(f32),
        portal_room=np.array([p[0] for p in portals], i32),
        portal_key=np.array([p[0] * 6 + p[1] for p in portals], np.int64),
        portal_lo=np.array([p[2] for p in portals], f32).reshape(-1, 3),
        portal_hi=np.array([p[3] for p in portals], f32).reshape(-1, 3),
        portal_to=np.array([p[4] for p in portals], i32),
        decal_key=np.array([q[0] * 6 + q[1] for q in decals], np.int64),
        decal_lo=np.array([q[2] for q in decals], f32).reshape(-1, 3),
        decal_hi=np.array([q[3] for q in decals], f32).reshape(-1, 3),
        decal_mat=np.array([q[4] for q in decals], i32),
        box_lo=b_lo.astype(f32), box_hi=b_hi.astype(f32), box_centre=(b_lo + b_hi) / 2,
        box_radius=np.linalg.norm(b_hi - b_lo, axis=1) / 2,
        box_side=np.array([b[2] for b in boxes], i32), box_top=np.array([b[3] for b in boxes], i32),
        box_label=np.array([b[4] for b in boxes], i32), box_room=np.array([b[5] for b in boxes], i32))


class Renderer:
    """Ray-cast RGB images (perspective views and equirect panoramas) of one synthetic house."""

    def __init__(self, house: House, width: int = 640, height: int = 480, vfov_deg: float = 60.0,
                 ceiling_height: float | None = None, batch_rays: int = 1_500_000) -> None:
        if width < 1 or height < 1 or not 0.0 < vfov_deg < 180.0:
            raise ValueError(f"bad camera: {width}x{height}, vfov {vfov_deg} deg")
        self.house, self.width, self.height, self.vfov_deg = house, int(width), int(height), float(vfov_deg)
        self.ceiling = float(ceiling_height) if ceiling_height is not None else infer_ceiling(house)
        self.atlas = build_atlas(round(self.ceiling, 4))
        self.scene = build_scene(house, self.atlas, self.ceiling)
        self.batch_rays = int(batch_rays)
        self.focal = (self.height / 2.0) / math.tan(math.radians(self.vfov_deg) / 2.0)
        ys, xs = np.mgrid[0:self.height, 0:self.width] + 0.5                              # (H, W) pixel centres
        cam = np.stack([(xs - self.width / 2.0) / self.focal, (self.height / 2.0 - ys) / self.focal,
                        np.ones_like(xs)], axis=-1)                                       # (H, W, 3) right, up, fwd
        cam /= np.linalg.norm(cam, axis=-1, keepdims=True)
        self._cam_tiles = _to_tiles(cam[None].astype(np.float32))                        # (n_t, S, 3)
        rgba = np.zeros(self.atlas.textures.shape[:3] + (4,), np.uint8)                  # (M, TEX, TEX, 4)
        rgba[..., :3] = self.atlas.textures
        self._texels = rgba.reshape(-1).view(np.uint32)                                  # (M*TEX*TEX,) packed
        self._ids = {vp.vp_id: i for i, vp in enumerate(house.viewpoints)}
        s, n_keys = self.scene, len(house.rooms) * 6
        # per room face (key = room * 6 + face): material and 1 / texture period along u, v
        key_mat = np.stack([s.wall_mat] * 4 + [s.floor_mat, s.ceiling_mat], axis=1).reshape(n_keys)
        self._key_mat = key_mat.astype(np.int32)                                         # (R*6,)
        self._key_inv_pu = (1.0 / self.atlas.period[key_mat, 0]).astype(np.float32)      # (R*6,)
        self._key_inv_pv = (1.0 / self.atlas.period[key_mat, 1]).astype(np.float32)      # (R*6,)
        self._light = [np.ascontiguousarray(s.room_light[:, k]) for k in range(3)]       # 3 x (R,)

    # -- public API ------------------------------------------------------------------------------
    def render_view(self, position: np.ndarray, heading: float, elevation: float) -> np.ndarray:
        """Pinhole image looking along (heading, elevation) from `position`, (H, W, 3) uint8 RGB."""
        return self._render(position, self._view_tiles([(heading, elevation)]), 1, self.height, self.width)[0][0]

    def label_view(self, position: np.ndarray, heading: float, elevation: float) -> np.ndarray:
        """Per-pixel index into house.objects of the object seen (-1: structure), (H, W) int32."""
        return self._render(position, self._view_tiles([(heading, elevation)]), 1, self.height, self.width)[1][0]

    def camera_position(self, viewpoint: str | int) -> np.ndarray:
        """Camera centre of a viewpoint given by id or index, (3,) float64."""
        index = self._ids[viewpoint] if isinstance(viewpoint, str) else int(viewpoint)
        return np.asarray(self.house.viewpoints[index].position, dtype=np.float64)

    def render_views(self, viewpoint: str | int) -> list[np.ndarray]:
        """The 36 Matterport views (ix = 12*row + col) of a viewpoint, each (H, W, 3) uint8."""
        position = self.camera_position(viewpoint)
        poses = [((ix % 12) * math.radians(30.0), (ix // 12 - 1) * math.radians(30.0)) for ix in range(NUM_VIEWS)]
        per_batch = max(1, self.batch_rays // (self.width * self.height))
        images: list[np.ndarray] = []
        for k in range(0, NUM_VIEWS, per_batch):
            batch = poses[k:k + per_batch]
            rgb, _ = self._render(position, self._view_tiles(batch), len(batch), self.height, self.width)
            images.extend(rgb)
        return images

    def segment_views(self, viewpoint: str | int) -> tuple[np.ndarray, np.ndarray]:
        """What every pixel of the 36 views sees, without shading (a perfect segmentation):
        the room whose surface or object it hits (V, H, W) int32 (rays pass through doorways and
        stairwells as in the images) and the object, an index into house.objects (-1: structure)."""
        position = self.camera_position(viewpoint)
        origin = np.asarray(position, dtype=np.float64).reshape(3)
        o = origin.astype(np.float32)
        poses = [((ix % 12) * math.radians(30.0), (ix // 12 - 1) * math.radians(30.0)) for ix in range(NUM_VIEWS)]
        tiles = self._view_tiles(poses)                                                  # (n_t, S, 3)
        flat = tiles.reshape(-1, 3)
        inv = _safe_inverse(flat)
        d = [np.ascontiguousarray(flat[:, k]) for k in range(3)]
        iv = [np.ascontiguousarray(inv[:, k]) for k in range(3)]
        t, room, _, visited = self._trace_rooms(o, d, iv, self._locate(origin))
        box, _, _ = self._trace_boxes(o, tiles, inv.reshape(tiles.shape), t.reshape(tiles.shape[:2]), visited)
        box = box.reshape(-1)
        hit = np.maximum(box, 0)
        objects = np.where(box >= 0, self.scene.box_label[hit], -1).astype(np.int32)     # (N,)
        rooms = np.where(box >= 0, self.scene.box_room[hit], room).astype(np.int32)      # (N,)
        shape = (len(tiles), -1, 1)
        return (_from_tiles(rooms.reshape(shape), NUM_VIEWS, self.height, self.width)[..., 0],
                _from_tiles(objects.reshape(shape), NUM_VIEWS, self.height, self.width)[..., 0])

    def render_equirect(self, position: np.ndarray, heading: float = 0.0, width: int = 1024,
                        height: int = 512) -> np.ndarray:
        """Equirect panorama, centre column along `heading`, azimuth clockwise, rows +90..-90 deg, (h, w, 3)."""
        az = heading + ((np.arange(width) + 0.5) / width - 0.5) * 2.0 * np.pi             # (w,)
        el = (0.5 - (np.arange(height) + 0.5) / height) * np.pi                            # (h,)
        ce = np.cos(el)[:, None]
        dirs = np.stack(np.broadcast_arrays(ce * np.sin(az)[None], ce * np.cos(az)[None], np.sin(el)[:, None]),
                        axis=-1).astype(np.float32)                                        # (h, w, 3)
        rows = max(TILE, self.batch_rays // width // TILE * TILE)
        out = [self._render(position, _to_tiles(dirs[None, r:r + rows]), 1, len(dirs[r:r + rows]), width)[0][0]
               for r in range(0, height, rows)]
        return np.concatenate(out, axis=0)

    # -- internals -------------------------------------------------------------------------------
    def _view_tiles(self, poses: list[tuple[float, float]]) -> np.ndarray:
        """Unit ray directions of pinhole views in tile order, (V * n_t, S, 3) float32."""
        return np.concatenate([self._cam_tiles @ _camera_axes(h, e).astype(np.float32) for h, e in poses])

    def _locate(self, position: np.ndarray) -> int:
        """Room containing a camera position (the first one for a point on a shared wall)."""
        s = self.scene
        inside = np.all((position >= s.room_lo - 1e-6) & (position <= s.room_hi + 1e-6), axis=1)   # (R,)
        rooms = np.flatnonzero(inside)
        if not rooms.size:
            raise ValueError(f"camera position {position.tolist()} is outside every room of {self.house.scan}")
        return int(rooms[0])

    def _render(self, position: np.ndarray, tiles: np.ndarray, v: int, h: int,
                w: int) -> tuple[np.ndarray, np.ndarray]:
        """Trace tiled rays (n_t, S, 3) of V images h x w -> RGB (V, h, w, 3) uint8, labels (V, h, w) int32."""
        origin = np.asarray(position, dtype=np.float64).reshape(3)
        o = origin.astype(np.float32)
        flat = tiles.reshape(-1, 3)                                                      # (N, 3)
        inv = _safe_inverse(flat)                                                        # (N, 3)
        d = [np.ascontiguousarray(flat[:, k]) for k in range(3)]                         # 3 x (N,)
        iv = [np.ascontiguousarray(inv[:, k]) for k in range(3)]                         # 3 x (N,)
        t, room, face, visited = self._trace_rooms(o, d, iv, self._locate(origin))
        box, axis, t = self._trace_boxes(o, tiles, inv.reshape(tiles.shape), t.reshape(tiles.shape[:2]), visited)
        box, axis, t = box.reshape(-1), axis.reshape(-1), t.reshape(-1)
        rgb = self._shade(o, d, iv, t, room, face, box, axis, visited)
        labels = np.where(box >= 0, self.scene.box_label[np.maximum(box, 0)], -1).astype(np.int32)
        return (_from_tiles(rgb.reshape(tiles.shape), v, h, w),
                _from_tiles(labels.reshape(len(tiles), -1, 1), v, h, w)[..., 0])

    def _trace_rooms(self, o: np.ndarray, d: list[np.ndarray], iv: list[np.ndarray],
                     start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, set[int]]:
        """Walk rays through rooms and portals -> distance (N,), room (N,) and face (N,) hit, rooms visited."""
        s, n = self.scene, len(d[0])
        t_out, room_out, face_out = np.empty(n, np.float32), np.empty(n, np.int32), np.empty(n, np.int8)
        idx = np.arange(n)
        room = np.full(n, start, np.int32)
        visited = {start}
        for hop in range(MAX_HOPS):
            dd, ii = (d, iv) if hop == 0 else ([c[idx] for c in d], [c[idx] for c in iv])  # 3 x (n,)
            lo, hi = (s.room_lo[start], s.room_hi[start]) if hop == 0 else (s.room_lo[room].T, s.room_hi[room].T)
            tk = [(np.where(ii[k] > 0, hi[k], lo[k]) - o[k]) * ii[k] for k in range(3)]    # 3 x (n,) far planes
            t = np.minimum(np.minimum(tk[0], tk[1]), tk[2])
            face = np.where(tk[0] == t, ii[0] > 0, np.where(tk[1] == t, 2 + (ii[1] > 0), 4 + (ii[2] > 0)))
            face = face.astype(np.int8)
            dest = np.full(len(t), -1, np.int32)
            if hop < MAX_HOPS - 1:
                for p in np.flatnonzero(np.isin(s.portal_room, list(visited))):
                    key = int(s.portal_key[p])                             # python ints: no int64 promotion
                    sel = np.flatnonzero((face == key % 6) & (room == key // 6))
                    inside = np.ones(len(sel), bool)
                    for k in range(3):
                        if k != key % 6 // 2:
                            q = o[k] + t[sel] * dd[k][sel]
                            inside &= (q >= s.portal_lo[p, k]) & (q <= s.portal_hi[p, k])
                    dest[sel[inside]] = s.portal_to[p]
            if hop == 0:
                t_out[:], room_out[:], face_out[:] = t, room, face
            else:
                t_out[idx], room_out[idx], face_out[idx] = t, room, face
            through = dest >= 0
            idx, room = idx[through], dest[through]
            if not idx.size:
                break
            visited.update(np.unique(room).tolist())
        return t_out, room_out, face_out, visited

    def _trace_boxes(self, o: np.ndarray, tiles: np.ndarray, inv: np.ndarray, t: np.ndarray,
                     visited: set[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nearest box hit nearer than the room surface t (n_t, S) -> box index, face axis, distance."""
        s = self.scene
        axis_t = tiles.mean(axis=1)
        axis_t /= np.linalg.norm(axis_t, axis=1, keepdims=True)                             # (n_t, 3) cone axes
        cos_half = np.clip(np.einsum("tsc,tc->ts", tiles, axis_t).min(axis=1), -1.0, 1.0)   # (n_t,)
        sin_half = np.sqrt(1.0 - cos_half ** 2)
        t_far = t.max(axis=1)                                                                # (n_t,)
        box = np.full(t.shape, -1, np.int32)
        hit_axis = np.zeros(t.shape, np.int8)
        for b in np.flatnonzero(np.isin(s.box_room, list(visited))):
            to_c = s.box_centre[b] - o
            dist, r = float(np.linalg.norm(to_c)), float(s.box_radius[b])
            if dist > r:
                sin_b = r / dist
                cos_b = math.sqrt(1.0 - sin_b ** 2)
                cos_g = axis_t @ (to_c / dist).astype(np.float32)                            # (n_t,)
                cand = np.flatnonzero((cos_g >= cos_half * cos_b - sin_half * sin_b - 1e-4) & (t_far > dist - r))
            else:
                cand = np.arange(len(t))
            if not cand.size:
                continue
            ii = inv[cand]                                                                   # (k, S, 3)
            t1, t2 = (s.box_lo[b] - o) * ii, (s.box_hi[b] - o) * ii
            t_min, t_max = np.minimum(t1, t2), np.maximum(t1, t2)                            # (k, S, 3)
            t_near = np.maximum(np.maximum(t_min[..., 0], t_min[..., 1]), t_min[..., 2])      # (k, S)
            t_exit = np.minimum(np.minimum(t_max[..., 0], t_max[..., 1]), t_max[..., 2])
            tc = t[cand]
            hit = (t_near <= t_exit) & (t_near > _EPS) & (t_near < tc)
            if not hit.any():
                continue
            t[cand] = np.where(hit, t_near, tc)
            box[cand] = np.where(hit, b, box[cand])
            entry = np.where(t_min[..., 0] == t_near, 0, np.where(t_min[..., 1] == t_near, 1, 2))
            hit_axis[cand] = np.where(hit, entry, hit_axis[cand])
        return box, hit_axis, t

    def _shade(self, o: np.ndarray, d: list[np.ndarray], iv: list[np.ndarray], t: np.ndarray, room: np.ndarray,
               face: np.ndarray, box: np.ndarray, b_axis: np.ndarray, visited: set[int]) -> np.ndarray:
        """Colour every ray's hit: texture, light, tint and fog -> (N, 3) uint8."""
        s, atlas = self.scene, self.atlas
        p = [o[k] + t * d[k] for k in range(3)]                                              # 3 x (N,) hit points
        # room surfaces: walls (u along the wall, v down from the ceiling), floors and ceilings (u = x, v = y)
        key = room * 6 + face
        axis = face >> 1
        mat = self._key_mat[key]
        tu = np.where(axis == 0, p[1], p[0]) * self._key_inv_pu[key]
        tv = np.where(axis == 2, p[1], s.room_hi[:, 2][room] - p[2]) * self._key_inv_pv[key]
        sign = (1 - 2 * (face & 1)).astype(np.float32)                                       # inward normal sign
        for k in np.flatnonzero(np.isin(s.decal_key // 6, list(visited))):                  # stretched decals
            sel = np.flatnonzero(key == int(s.decal_key[k]))
            lo, hi = s.decal_lo[k], s.decal_hi[k]
            h_ax = 1 if s.decal_key[k] % 6 < 2 else 0
            ph, pz = p[h_ax][sel], p[2][sel]
            inside = (ph >= lo[h_ax]) & (ph <= hi[h_ax]) & (pz >= lo[2]) & (pz <= hi[2])
            sel = sel[inside]
            mat[sel] = s.decal_mat[k]
            tu[sel] = np.clip((ph[inside] - lo[h_ax]) / (hi[h_ax] - lo[h_ax]), 0.0, 0.9999)
            tv[sel] = np.clip((hi[2] - pz[inside]) / (hi[2] - lo[2]), 0.0, 0.9999)
        # boxes: stretched textures, top material on upward faces, normal towards the camera
        bi = np.flatnonzero(box >= 0)
        b, ax = box[bi], b_axis[bi].astype(np.int64)
        q = np.stack([c[bi] for c in p], axis=1)                                             # (k, 3)
        rel = np.clip((q - s.box_lo[b]) / np.maximum(s.box_hi[b] - s.box_lo[b], 1e-6), 0.0, 0.9999)
        going = np.stack([c[bi] for c in iv], axis=1)[np.arange(len(bi)), ax]                # (k,)
        mat[bi] = np.where((ax == 2) & (going < 0), s.box_top[b], s.box_side[b])
        tu[bi] = np.where(ax == 0, rel[:, 1], rel[:, 0])
        tv[bi] = np.where(ax == 2, rel[:, 1], 1.0 - rel[:, 2])
        axis[bi], sign[bi], room[bi] = ax, np.where(going > 0, -1.0, 1.0), s.box_room[b]
        # nearest texel (TEX is a power of two: & wraps tiled coordinates, stretched ones are clipped)
        col = np.floor(tu * TEX).astype(np.int32) & (TEX - 1)
        row = np.floor(tv * TEX).astype(np.int32) & (TEX - 1)
        texel = self._texels[(mat * TEX + row) * TEX + col]                                  # (N,) packed RGBA
        color = texel.view(np.uint8).reshape(-1, 4)[:, :3].astype(np.float32)               # (N, 3)
        # lighting: Lambert term towards the room's ceiling light with fall-off, ambient, tint; then fog
        lk = [self._light[k][room] - p[k] for k in range(3)]                                 # 3 x (N,)
        dist2 = lk[0] * lk[0] + lk[1] * lk[1] + lk[2] * lk[2] + 1e-6
        along = np.where(axis == 0, lk[0], np.where(axis == 1, lk[1], lk[2]))
        ndl = np.maximum(sign * along / np.sqrt(dist2), 0.0)
        shade = (AMBIENT + DIFFUSE * ndl / (1.0 + dist2 / LIGHT_RANGE ** 2)) * s.room_tint[room]
        shade = np.where(atlas.emissive[mat], 1.0, shade)
        fog = np.exp(-t / FOG_DISTANCE)
        color *= (shade * fog)[:, None].astype(np.float32)
        color += ((1.0 - fog) * FOG_GREY)[:, None].astype(np.float32)
        np.clip(color, 0.0, 255.0, out=color)
        return color.astype(np.uint8)
