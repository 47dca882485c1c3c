"""Materials of the synthetic renderer: OpenCV-drawn texture tiles per room type and object class, object shapes.

Every texture is a TEX x TEX RGB tile drawn once, deterministically (fixed seeds). A material is
*tiled* (repeats every `period` metres along the surface: walls, floors, ceilings) or *stretched*
once over the face it is drawn on (objects, windows, door frames; texture row 0 at the top).
Wall tiles span the whole room height vertically (row 0 at the ceiling), so skirting boards,
rails and wainscots sit at fixed heights. Object shapes are boxes made of parts given as fractions
of the object's box in a local frame whose +y side is the "back" (turned towards a wall).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from minivln_core.data.synth.layout import OBJECT_NAMES, ROOM_TYPES

TEX = 128                      # texels per tile side
RGB = tuple[int, int, int]


@dataclass(frozen=True)
class RoomStyle:
    """Appearance of one room type."""

    wall: RGB
    wall_pattern: str        # see _wall_texture
    floor: RGB
    floor_alt: RGB           # second floor colour (checks, grout, grain)
    floor_pattern: str       # see _floor_texture
    ceiling: RGB
    trim: RGB                # skirting board, rails, door frames


ROOM_STYLES: dict[str, RoomStyle] = {
    "bedroom": RoomStyle((176, 172, 214), "dots", (196, 170, 140), (170, 142, 112), "carpet", (244, 242, 238),
                         (245, 245, 240)),
    "bathroom": RoomStyle((150, 205, 212), "tiles", (215, 222, 228), (120, 130, 140), "small_tiles",
                          (250, 250, 250), (235, 240, 242)),
    "kitchen": RoomStyle((236, 222, 150), "backsplash", (236, 236, 230), (45, 45, 52), "checker",
                         (248, 246, 236), (250, 250, 245)),
    "living room": RoomStyle((214, 190, 156), "wainscot", (150, 100, 60), (112, 72, 40), "planks",
                             (240, 232, 214), (248, 244, 232)),
    "dining room": RoomStyle((150, 52, 58), "vstripes", (92, 58, 36), (66, 40, 24), "planks",
                             (236, 228, 220), (236, 226, 206)),
    "office": RoomStyle((150, 172, 150), "rail", (95, 100, 112), (75, 80, 92), "carpet_tiles", (225, 225, 222),
                        (60, 66, 60)),
    "hallway": RoomStyle((205, 205, 198), "wainscot", (178, 138, 96), (150, 112, 74), "planks", (246, 246, 242),
                         (90, 96, 110)),
    "laundry room": RoomStyle((150, 180, 230), "plain", (150, 156, 166), (205, 208, 214), "checker",
                              (244, 246, 250), (240, 242, 246)),
    "entryway": RoomStyle((128, 142, 90), "panels", (110, 110, 104), (70, 70, 66), "slate", (238, 236, 228),
                          (226, 220, 200)),
}


@dataclass(frozen=True)
class ObjectStyle:
    """Appearance of one object class: side colour (the class colour), top colour and their patterns."""

    side: RGB
    top: RGB
    side_pattern: str        # see _object_texture
    top_pattern: str


OBJECT_STYLES: dict[str, ObjectStyle] = {
    "bed": ObjectStyle((70, 100, 170), (90, 125, 200), "fabric", "pillows"),
    "nightstand": ObjectStyle((156, 108, 64), (176, 128, 80), "drawers", "wood"),
    "dresser": ObjectStyle((176, 112, 92), (190, 130, 106), "drawers", "wood"),
    "wardrobe": ObjectStyle((92, 58, 38), (110, 74, 50), "doors2", "wood"),
    "lamp": ObjectStyle((236, 214, 150), (255, 246, 200), "shade", "bulb"),
    "plant": ObjectStyle((56, 140, 58), (70, 165, 70), "leaves", "leaves"),
    "mirror": ObjectStyle((176, 196, 218), (150, 150, 150), "mirror", "plain"),
    "painting": ObjectStyle((196, 156, 60), (160, 124, 40), "picture", "plain"),
    "toilet": ObjectStyle((246, 246, 246), (236, 236, 236), "enamel", "seat"),
    "sink": ObjectStyle((196, 228, 222), (232, 236, 236), "doors2", "basin"),
    "bathtub": ObjectStyle((236, 224, 200), (236, 230, 214), "enamel", "tub"),
    "shower": ObjectStyle((150, 212, 222), (200, 206, 210), "glass", "plain"),
    "towel": ObjectStyle((212, 78, 110), (190, 60, 90), "stripes", "plain"),
    "fridge": ObjectStyle((188, 192, 202), (170, 174, 184), "fridge", "plain"),
    "stove": ObjectStyle((52, 52, 58), (30, 30, 34), "oven", "burners"),
    "counter": ObjectStyle((168, 140, 98), (112, 108, 104), "counter", "granite"),
    "table": ObjectStyle((140, 88, 48), (160, 104, 60), "plain", "wood"),
    "chair": ObjectStyle((176, 46, 84), (196, 64, 100), "plain", "cushion"),
    "sofa": ObjectStyle((58, 122, 120), (70, 140, 138), "fabric", "cushion"),
    "armchair": ObjectStyle((204, 152, 44), (220, 170, 60), "fabric", "cushion"),
    "coffee table": ObjectStyle((64, 88, 72), (120, 150, 160), "plain", "glass"),
    "tv": ObjectStyle((26, 26, 32), (40, 40, 46), "screen", "plain"),
    "fireplace": ObjectStyle((162, 72, 50), (200, 196, 186), "bricks", "plain"),
    "bookshelf": ObjectStyle((108, 68, 38), (124, 82, 50), "books", "wood"),
    "desk": ObjectStyle((222, 190, 140), (236, 210, 166), "drawers", "wood"),
    "office chair": ObjectStyle((40, 62, 112), (30, 30, 36), "plain", "mesh"),
    "cabinet": ObjectStyle((110, 130, 152), (126, 146, 166), "cabinet", "plain"),
    "bench": ObjectStyle((184, 134, 80), (196, 148, 92), "slats", "slats"),
    "coat rack": ObjectStyle((96, 36, 56), (80, 28, 44), "plain", "plain"),
    "washing machine": ObjectStyle((212, 226, 246), (222, 232, 248), "porthole", "lid"),
    "dryer": ObjectStyle((226, 212, 176), (232, 222, 192), "porthole", "lid"),
    "shelf": ObjectStyle((150, 156, 162), (130, 136, 142), "wire", "plain"),
    "laundry basket": ObjectStyle((196, 166, 106), (170, 140, 86), "weave", "plain"),
}

GENERIC: dict[str, RGB] = {"metal": (70, 72, 78), "terracotta": (176, 90, 58), "door frame": (236, 232, 222),
                           "stair tread": (150, 104, 64), "stair riser": (226, 222, 214), "rail": (232, 228, 218)}


@dataclass(frozen=True)
class Part:
    """One box of an object's shape: fractions [lo, hi] of the object box; materials by key."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    side: str = "side"      # "side" / "top" = the class materials, else a GENERIC material name
    top: str = "top"


def _legs(top: float, w: float = 0.07, side: str = "side") -> tuple[Part, ...]:
    """Four corner legs from the floor to height fraction `top`."""
    return tuple(Part((x, y, 0.0), (x + w, y + w, top), side, side) for x in (0.0, 1 - w) for y in (0.0, 1 - w))


SHAPES: dict[str, tuple[Part, ...]] = {
    "table": (Part((0, 0, 0.93), (1, 1, 1)),) + _legs(0.93),
    "coffee table": (Part((0, 0, 0.86), (1, 1, 1)), Part((0.04, 0.04, 0.2), (0.96, 0.96, 0.28), "side", "side"))
    + _legs(0.86, 0.08),
    "desk": (Part((0, 0, 0.93), (1, 1, 1)), Part((0, 0, 0), (0.05, 1, 0.93)), Part((0.6, 0, 0), (1, 1, 0.93))),
    "chair": (Part((0, 0, 0.47), (1, 1, 0.55)), Part((0, 0.86, 0.55), (1, 1, 1), "side", "side"))
    + _legs(0.47, 0.1),
    "office chair": (Part((0, 0, 0), (1, 1, 0.06), "metal", "metal"), Part((0.45, 0.45, 0.06), (0.55, 0.55, 0.45),
                                                                            "metal", "metal"),
                     Part((0.05, 0.05, 0.45), (0.95, 0.95, 0.55)), Part((0.1, 0.85, 0.55), (0.9, 1, 1), "side", "top")),
    "armchair": (Part((0, 0, 0.1), (1, 1, 0.5)), Part((0, 0.78, 0.5), (1, 1, 1), "side", "side"),
                 Part((0, 0, 0.5), (0.16, 0.78, 0.72), "side", "side"), Part((0.84, 0, 0.5), (1, 0.78, 0.72), "side",
                                                                            "side")) + _legs(0.1, 0.1, "metal"),
    "sofa": (Part((0, 0, 0.1), (1, 1, 0.5)), Part((0, 0.75, 0.5), (1, 1, 1), "side", "side"),
             Part((0, 0, 0.5), (0.08, 0.75, 0.7), "side", "side"), Part((0.92, 0, 0.5), (1, 0.75, 0.7), "side", "side"))
    + _legs(0.1, 0.05, "metal"),
    "lamp": (Part((0.2, 0.2, 0), (0.8, 0.8, 0.04), "metal", "metal"), Part((0.45, 0.45, 0.04), (0.55, 0.55, 0.7),
                                                                          "metal", "metal"),
             Part((0, 0, 0.66), (1, 1, 1))),
    "plant": (Part((0.22, 0.22, 0), (0.78, 0.78, 0.38), "terracotta", "terracotta"), Part((0, 0, 0.34), (1, 1, 1))),
    "coat rack": (Part((0.15, 0.15, 0), (0.85, 0.85, 0.04)), Part((0.44, 0.44, 0.04), (0.56, 0.56, 1.0)),
                  Part((0.0, 0.46, 0.86), (1.0, 0.54, 0.9)), Part((0.46, 0.0, 0.78), (0.54, 1.0, 0.82))),
    "bench": (Part((0, 0, 0.8), (1, 1, 1)), Part((0.03, 0, 0), (0.1, 1, 0.8), "side", "side"),
              Part((0.9, 0, 0), (0.97, 1, 0.8), "side", "side")),
}
FULL_BOX: tuple[Part, ...] = (Part((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),)


def class_color(name: str) -> RGB:
    """The class colour of an object kind (the base colour of its sides)."""
    return OBJECT_STYLES[name].side


# -- drawing helpers ---------------------------------------------------------------------------
def _fill(color: RGB) -> np.ndarray:
    return np.full((TEX, TEX, 3), color, dtype=np.uint8)


def _tone(color: RGB, factor: float) -> RGB:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in color)  # type: ignore[return-value]


def _noise(seed: int, blur: float, stretch: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Seamless smooth noise in about [-1, 1], (TEX, TEX) float32 (blurred over a 3x3 tiling)."""
    field = np.random.default_rng(seed).uniform(-1, 1, (TEX, TEX)).astype(np.float32)
    big = cv2.GaussianBlur(np.tile(field, (3, 3)), (0, 0), sigmaX=blur * stretch[0], sigmaY=blur * stretch[1])
    out = big[TEX:2 * TEX, TEX:2 * TEX]
    return out / max(float(np.abs(out).max()), 1e-6)


def _grain(img: np.ndarray, seed: int, amp: float, blur: float = 1.0,
           stretch: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Multiply `img` by 1 + amp * noise."""
    n = _noise(seed, blur, stretch)[..., None]
    return np.clip(img.astype(np.float32) * (1.0 + amp * n), 0, 255).astype(np.uint8)


def _px(frac: float) -> int:
    return int(round(frac * TEX))


def _grid(img: np.ndarray, n_u: int, n_v: int, color: RGB, thick: int = 1, v_range: tuple[float, float] = (0, 1),
          offset_rows: bool = False) -> None:
    """Grout / joint lines: n_u columns and n_v rows of cells within texture rows v_range."""
    r0, r1 = _px(v_range[0]), _px(v_range[1])
    for j in range(n_v + 1):
        y = r0 + (r1 - r0) * j // n_v
        cv2.line(img, (0, y), (TEX - 1, y), color, thick)
        if j == n_v:
            break
        y_next = r0 + (r1 - r0) * (j + 1) // n_v
        shift = (TEX // n_u // 2) if (offset_rows and j % 2) else 0
        for i in range(n_u):
            x = (TEX * i // n_u + shift) % TEX
            cv2.line(img, (x, y), (x, y_next), color, thick)


# -- room textures -----------------------------------------------------------------------------
def _wall_texture(style: RoomStyle, ceiling: float, seed: int) -> np.ndarray:
    """Wall tile: 1 m wide, the full room height tall (row 0 at the ceiling)."""
    row = lambda h: _px(1.0 - h / ceiling)   # noqa: E731 - texture row of a height above the floor
    img = _grain(_fill(style.wall), seed, 0.04, 2.0)
    pattern, dark, light = style.wall_pattern, _tone(style.wall, 0.8), _tone(style.wall, 1.15)
    if pattern == "dots":
        for j, y in enumerate(range(4, TEX, 16)):
            for x in range((j % 2) * 8 + 4, TEX, 16):
                cv2.circle(img, (x, y), 2, light, -1)
    elif pattern == "tiles":
        img[row(1.4):] = _grain(_fill(_tone(style.wall, 1.12)), seed + 1, 0.03)[row(1.4):]
        _grid(img, 5, 7, (170, 176, 180), 1, (1.0 - 1.4 / ceiling, 1.0))
    elif pattern == "backsplash":
        img[row(1.5):row(0.9)] = (238, 238, 232)
        _grid(img, 4, 6, (190, 190, 184), 1, (1.0 - 1.5 / ceiling, 1.0 - 0.9 / ceiling), offset_rows=True)
    elif pattern == "wainscot":
        img[row(0.9):] = style.trim
        for x in (0, TEX // 2):
            cv2.rectangle(img, (x + 6, row(0.8)), (x + TEX // 2 - 6, row(0.2)), _tone(style.trim, 0.85), 2)
        cv2.rectangle(img, (0, row(0.95)), (TEX - 1, row(0.9)), _tone(style.trim, 0.75), -1)
    elif pattern == "vstripes":
        for x in range(0, TEX, TEX // 4):
            img[:, x:x + TEX // 8] = (img[:, x:x + TEX // 8] * 0.78).astype(np.uint8)
    elif pattern == "rail":
        cv2.rectangle(img, (0, row(2.25)), (TEX - 1, row(2.2)), style.trim, -1)
        img[row(0.9):] = _tone(style.wall, 0.85)
    elif pattern == "panels":
        cv2.rectangle(img, (8, row(2.4)), (TEX - 8, row(0.3)), dark, 3)
    img[row(0.12):] = style.trim                                   # skirting board
    img[:max(row(ceiling - 0.06), 1)] = style.trim                  # crown moulding
    return img


def _floor_texture(style: RoomStyle, seed: int) -> tuple[np.ndarray, float]:
    """Floor tile and its period in metres."""
    base, alt, pattern = style.floor, style.floor_alt, style.floor_pattern
    if pattern == "carpet":
        return _grain(_fill(base), seed, 0.12, 0.7), 1.0
    if pattern == "small_tiles":
        img = _grain(_fill(base), seed, 0.03)
        _grid(img, 5, 5, alt, 1)
        return img, 1.0
    if pattern == "checker":
        cells = (np.add.outer(np.arange(TEX) // (TEX // 4), np.arange(TEX) // (TEX // 4)) % 2).astype(bool)
        img = np.where(cells[..., None], np.array(alt, np.uint8), np.array(base, np.uint8))
        return _grain(img, seed, 0.04), 1.2
    if pattern == "planks":
        img = _grain(_fill(base), seed, 0.12, 1.5, (8.0, 0.3))        # grain along u
        n = 6
        for j in range(n):
            y0, y1 = TEX * j // n, TEX * (j + 1) // n
            img[y0:y1] = (img[y0:y1] * (0.9 + 0.1 * ((j * 7) % 3) / 2)).astype(np.uint8)
            cv2.line(img, (0, y0), (TEX - 1, y0), alt, 1)
            x = (TEX * ((j * 5) % n)) // n
            cv2.line(img, (x, y0), (x, y1), alt, 1)
        return img, 1.0
    if pattern == "carpet_tiles":
        img = _grain(_fill(base), seed, 0.1, 0.6)
        img[:TEX // 2, :TEX // 2] = (img[:TEX // 2, :TEX // 2] * 0.85).astype(np.uint8)
        img[TEX // 2:, TEX // 2:] = (img[TEX // 2:, TEX // 2:] * 0.85).astype(np.uint8)
        return img, 1.0
    img = _fill(base)                                                 # slate: 2x2 stones of varied tone
    for i, f in enumerate((1.0, 0.85, 0.92, 1.1)):
        y, x = (i // 2) * TEX // 2, (i % 2) * TEX // 2
        img[y:y + TEX // 2, x:x + TEX // 2] = _tone(base, f)
    img = _grain(img, seed, 0.1, 3.0)
    _grid(img, 2, 2, alt, 2)
    return img, 1.0


def _ceiling_texture(style: RoomStyle, kind: str, seed: int) -> tuple[np.ndarray, float]:
    """Ceiling tile and its period in metres (office: suspended ceiling tiles)."""
    img = _grain(_fill(style.ceiling), seed, 0.02, 4.0)
    if kind == "office":
        _grid(img, 2, 2, _tone(style.ceiling, 0.75), 2)
        return img, 1.2
    return img, 1.0


# -- object textures (stretched over a face, row 0 at its top) ---------------------------------
def _object_texture(pattern: str, base: RGB, seed: int) -> np.ndarray:
    """A class texture: `pattern` drawn over the class colour `base`."""
    img = _grain(_fill(base), seed, 0.05, 2.0)
    dark, light = _tone(base, 0.55), _tone(base, 1.25)
    rng = np.random.default_rng(seed)
    t, q, h = TEX, TEX // 4, TEX // 2
    if pattern == "fabric":
        img = _grain(img, seed + 1, 0.1, 0.6)
        cv2.line(img, (0, t // 3), (t - 1, t // 3), dark, 2)
    elif pattern == "drawers":
        for y in (t // 3, 2 * t // 3):
            cv2.line(img, (2, y), (t - 3, y), dark, 2)
        for y in (t // 6, h, 5 * t // 6):
            cv2.circle(img, (h, y), 4, (200, 190, 150), -1)
    elif pattern in ("doors2", "cabinet", "counter"):
        n = {"doors2": 2, "cabinet": 2, "counter": 3}[pattern]
        for i in range(n):
            x0, x1 = t * i // n + 4, t * (i + 1) // n - 4
            cv2.rectangle(img, (x0, 6), (x1, t - 14), dark, 2)
            hx = x1 - 10 if i % 2 == 0 else x0 + 10
            cv2.line(img, (hx, h - 12), (hx, h + 12), (200, 200, 205), 3)
        img[t - 10:] = _tone(base, 0.4)
    elif pattern == "fridge":
        cv2.line(img, (0, t // 3), (t - 1, t // 3), dark, 2)
        for y0, y1 in ((10, t // 3 - 12), (t // 3 + 12, t - 30)):
            cv2.line(img, (t - 14, y0), (t - 14, y1), (110, 112, 118), 4)
    elif pattern == "porthole":
        img[:t // 6] = _tone(base, 0.88)
        for x in (q, h, 3 * q):
            cv2.circle(img, (x, t // 12), 4, (90, 90, 96), -1)
        cv2.circle(img, (h, 3 * t // 5), t // 4, (120, 124, 130), 6)
        cv2.circle(img, (h, 3 * t // 5), t // 4 - 6, (60, 70, 90), -1)
    elif pattern == "oven":
        for x in range(q // 2, t, q):
            cv2.circle(img, (x, t // 10), 5, (170, 170, 176), -1)
        cv2.rectangle(img, (12, t // 3), (t - 12, t - 16), (16, 16, 20), -1)
        cv2.line(img, (16, t // 4), (t - 16, t // 4), (180, 180, 186), 3)
    elif pattern == "books":
        for k in range(4):
            y0, y1 = t * k // 4 + 6, t * (k + 1) // 4
            x = 4
            while x < t - 8:
                w = int(rng.integers(5, 11))
                color = tuple(int(c) for c in rng.integers(40, 230, 3))
                cv2.rectangle(img, (x, y0 + int(rng.integers(0, 8))), (x + w - 1, y1 - 1), color, -1)
                x += w + 1
            img[y1 - 3:y1] = dark
    elif pattern == "picture":
        img[:] = base
        inner = np.linspace((90, 150, 210), (230, 200, 150), t - 24).astype(np.uint8)[:, None, :]
        img[12:t - 12, 12:t - 12] = inner
        for _ in range(4):
            color = tuple(int(c) for c in rng.integers(30, 230, 3))
            cv2.circle(img, tuple(int(c) for c in rng.integers(24, t - 24, 2)), int(rng.integers(8, 20)), color, -1)
    elif pattern == "mirror":
        img[:] = (150, 150, 150)
        inner = np.linspace(_tone(base, 1.2), _tone(base, 0.8), t - 16).astype(np.uint8)[:, None, :]
        img[8:t - 8, 8:t - 8] = inner
        cv2.line(img, (20, t - 20), (t - 20, 20), (240, 245, 250), 3)
    elif pattern == "screen":
        img[8:t - 8, 8:t - 8] = (10, 12, 20)
        cv2.line(img, (16, t - 24), (t - 40, 16), (40, 44, 60), 5)
    elif pattern == "glass":
        cv2.rectangle(img, (0, 0), (t - 1, t - 1), (200, 206, 210), 5)
        cv2.line(img, (20, t - 10), (t - 10, 20), light, 4)
    elif pattern == "stripes":
        for y in (2 * t // 3, 3 * t // 4):
            img[y:y + 6] = (245, 240, 235)
    elif pattern == "weave":
        for k in range(0, t, 8):
            cv2.line(img, (k, 0), (k, t - 1), dark, 1)
            cv2.line(img, (0, k + 4), (t - 1, k + 4), light, 2)
    elif pattern == "bricks":
        _grid(img, 4, 10, (200, 190, 180), 1, offset_rows=True)
        img[:t // 8] = (200, 196, 186)
        cv2.rectangle(img, (q, 2 * t // 5), (3 * q, t - 1), (24, 18, 16), -1)
        cv2.ellipse(img, (h, t - 12), (q - 6, 10), 0, 180, 360, (230, 120, 30), -1)
    elif pattern == "leaves":
        for _ in range(60):
            c = _tone(base, float(rng.uniform(0.6, 1.3)))
            cv2.ellipse(img, tuple(int(v) for v in rng.integers(0, t, 2)), (int(rng.integers(5, 12)), 4),
                        float(rng.uniform(0, 180)), 0, 360, c, -1)
    elif pattern == "shade":
        for y in (8, t - 10):
            img[y:y + 4] = _tone(base, 0.8)
    elif pattern == "slats":
        for y in range(0, t, t // 6):
            img[y:y + 3] = dark
    elif pattern == "wire":
        img[:] = (60, 62, 66)
        for y in range(0, t, q):
            img[y:y + 5] = base
            cv2.rectangle(img, (14, y + 10), (50, y + q - 1), (180, 120, 60), -1)
            cv2.rectangle(img, (64, y + 16), (110, y + q - 1), (80, 130, 180), -1)
        img[:, :5], img[:, -5:] = base, base
    elif pattern == "enamel":
        img[:6] = light
        img[int(t * 0.8):] = _tone(base, 0.88)
    elif pattern == "pillows":
        for x0 in (8, h + 4):
            cv2.rectangle(img, (x0, 6), (x0 + h - 16, t // 5), (240, 240, 236), -1)
        img[t // 4:t // 4 + 10] = (236, 236, 230)
    elif pattern == "burners":
        for x in (q + 4, 3 * q - 4):
            for y in (q + 4, 3 * q - 4):
                cv2.circle(img, (x, y), q - 10, (90, 90, 96), 3)
    elif pattern == "basin":
        cv2.ellipse(img, (h, h), (q + 12, q), 0, 0, 360, (160, 170, 176), -1)
        cv2.circle(img, (h, h), 4, (80, 80, 86), -1)
    elif pattern == "tub":
        cv2.rectangle(img, (12, 12), (t - 12, t - 12), (110, 170, 210), -1)
    elif pattern == "seat":
        cv2.ellipse(img, (h, int(t * 0.6)), (q + 8, q + 16), 0, 0, 360, (200, 200, 204), 6)
    elif pattern == "granite":
        for _ in range(300):
            cv2.circle(img, tuple(int(v) for v in rng.integers(0, t, 2)), 1, _tone(base, float(rng.uniform(0.5, 1.6))),
                       -1)
    elif pattern == "cushion":
        cv2.line(img, (h, 0), (h, t - 1), dark, 2)
    elif pattern == "wood":
        img = _grain(img, seed + 2, 0.15, 1.5, (8.0, 0.3))
    elif pattern == "mesh":
        _grid(img, 16, 16, (70, 70, 80), 1)
    elif pattern == "lid":
        cv2.rectangle(img, (10, 10), (t - 10, t - 10), dark, 2)
    elif pattern == "bulb":
        cv2.circle(img, (h, h), q, (255, 255, 235), -1)
    return img


# -- the atlas -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class MaterialAtlas:
    """All material textures of the renderer, indexable by material id."""

    textures: np.ndarray     # (M, TEX, TEX, 3) uint8
    period: np.ndarray       # (M, 2) float32 metres per tile along u, v (tiled materials)
    tiled: np.ndarray        # (M,) bool: repeats every period (else stretched over its face)
    emissive: np.ndarray     # (M,) bool: not shaded (windows)
    index: dict[str, int]    # material name -> id: "wall:<room>", "floor:<room>", "ceiling:<room>",
    #                           "side:<object>", "top:<object>", "window", "frame:<room>" and GENERIC names


def _window_texture() -> np.ndarray:
    """A window: white frame and mullions around a sky gradient with a green horizon."""
    img = np.linspace((150, 196, 240), (226, 238, 248), TEX).astype(np.uint8)[:, None, :].repeat(TEX, 1)
    img[int(TEX * 0.78):] = (120, 168, 110)
    cv2.rectangle(img, (0, 0), (TEX - 1, TEX - 1), (246, 246, 246), 8)
    cv2.line(img, (TEX // 2, 0), (TEX // 2, TEX - 1), (246, 246, 246), 4)
    cv2.line(img, (0, TEX // 2), (TEX - 1, TEX // 2), (246, 246, 246), 4)
    return img


@lru_cache(maxsize=4)
def build_atlas(ceiling: float) -> MaterialAtlas:
    """Draw every material for rooms `ceiling` metres tall (cached; deterministic)."""
    textures: list[np.ndarray] = []
    meta: list[tuple[float, float, bool, bool]] = []    # period u, period v, tiled, emissive
    index: dict[str, int] = {}

    def add(name: str, tex: np.ndarray, period: tuple[float, float] = (1.0, 1.0), tiled: bool = False,
            emissive: bool = False) -> None:
        """Register one material."""
        index[name] = len(textures)
        textures.append(tex)
        meta.append((period[0], period[1], tiled, emissive))

    for k, kind in enumerate(ROOM_TYPES):
        style = ROOM_STYLES[kind]
        add(f"wall:{kind}", _wall_texture(style, ceiling, 100 + k), (1.0, ceiling), tiled=True)
        floor, p = _floor_texture(style, 200 + k)
        add(f"floor:{kind}", floor, (p, p), tiled=True)
        ceil, p = _ceiling_texture(style, kind, 300 + k)
        add(f"ceiling:{kind}", ceil, (p, p), tiled=True)
        frame = _grain(_fill(style.trim), 400 + k, 0.03)
        add(f"frame:{kind}", frame)
    for k, name in enumerate(OBJECT_NAMES):
        style = OBJECT_STYLES[name]
        add(f"side:{name}", _object_texture(style.side_pattern, style.side, 500 + k))
        add(f"top:{name}", _object_texture(style.top_pattern, style.top, 600 + k))
    for k, (name, color) in enumerate(GENERIC.items()):
        tex = _grain(_fill(color), 700 + k, 0.06)
        if name == "stair riser":
            tex[:6] = _tone(color, 0.7)
        elif name == "rail":                                   # balusters under a handrail
            for x in range(4, TEX, TEX // 8):
                tex[:, x:x + 3] = _tone(color, 0.6)
            tex[:10] = GENERIC["stair tread"]
        add(name, tex)
    add("window", _window_texture(), emissive=True)
    arr = np.stack(textures)
    arr.setflags(write=False)
    m = np.asarray(meta, dtype=np.float32)
    return MaterialAtlas(arr, m[:, :2].copy(), m[:, 2].astype(bool), m[:, 3].astype(bool), index)
