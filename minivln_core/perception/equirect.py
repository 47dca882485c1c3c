"""Equirectangular panorama <-> the 36 Matterport perspective views (pinhole camera, OpenCV remap).

Conventions
-----------
* World / view angles follow the project (see `minivln_core.frames`): heading is clockwise from +y
  (north), elevation positive up; view ``ix = 12*row + col`` looks at absolute heading
  ``col*30 deg`` and elevation ``(row-1)*30 deg``. A view is a pinhole image, default 640x480
  with a 60 deg vertical FOV (focal ``f = (H/2) / tan(VFOV/2)``, about 415.7 px, so HFOV = 2 atan(320 / f) = 75.2 deg).
* A panorama is **robot-centred**, the convention of 360 cameras mounted on a robot: the
  centre column (u = W/2) looks along the robot's forward axis and azimuth grows to the *right*
  (clockwise seen from above), so column u covers azimuth ``a = (u/W - 1/2) * 360 deg`` relative
  to the robot, from -180 deg at the left edge. Row v covers elevation ``(1/2 - v/H) * 180 deg``
  (+90 deg at the top). Pixel edges sit on integer coordinates (pixel centres at +0.5).
* ``heading`` is the robot's heading in the world (radians, clockwise from north, the
  simulator's convention - not ROS yaw, which is counter-clockwise from +x). World direction
  of absolute heading ``h`` sits at pano azimuth ``a = h - heading``. So the 36 views are
  world-aligned: turning the robot right by 30 deg (heading +30 deg) moves what was in view
  ``col - 1`` into view ``col``: ``slice(p, heading=30deg)[12r + c] == slice(p, 0)[12r + (c-1) % 12]``.

Stitching blends every view that sees a pano pixel with a feather weight equal to the pixel's
distance (px) to the nearest view border, so seams vanish. The views reach about +-58 deg
elevation everywhere (higher only near the view columns); pano pixels no view sees - the polar
caps - are filled from the angularly nearest view, clamped to its border (``fill="nearest"``,
a smeared but gap-free cap) or left black (``fill="black"``).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal, Sequence

import cv2
import numpy as np

from minivln_core.frames import NUM_VIEWS, VIEWS_PER_ROW

VIEW_WIDTH, VIEW_HEIGHT, VIEW_VFOV_DEG = 640, 480, 60.0
_PAD = 3          # wrapped columns added on each side of a pano before sampling (cubic needs 2)
_SHRT_MAX = 32767  # cv2.remap needs images and maps smaller than this on each side
_REMAP_BLOCK = 1024  # so long point lists are sampled as rows of this many points


def focal_length(height: int = VIEW_HEIGHT, vfov_deg: float = VIEW_VFOV_DEG) -> float:
    """Pinhole focal length in pixels for an image `height` px tall with vertical FOV `vfov_deg`."""
    return (height / 2.0) / math.tan(math.radians(vfov_deg) / 2.0)


def _camera_axes(heading: float, elevation: float) -> np.ndarray:
    """Rows: right, up, forward unit vectors (world x east, y north, z up) of a camera -> (3, 3)."""
    sh, ch, se, ce = math.sin(heading), math.cos(heading), math.sin(elevation), math.cos(elevation)
    return np.array([[ch, -sh, 0.0],              # right
                     [-sh * se, -ch * se, ce],    # up
                     [sh * ce, ch * ce, se]])     # forward


def pixel_directions(x: np.ndarray | float, y: np.ndarray | float, heading: float, elevation: float,
                     width: int = VIEW_WIDTH, height: int = VIEW_HEIGHT,
                     vfov_deg: float = VIEW_VFOV_DEG) -> tuple[np.ndarray, np.ndarray]:
    """Absolute (heading, elevation) in rad of continuous pixel coords (x, y) of a view; heading in [0, 2pi)."""
    f = focal_length(height, vfov_deg)
    x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    cam = np.stack([(x - width / 2.0) / f, (height / 2.0 - y) / f, np.ones_like(x)], axis=-1)  # (..., 3)
    world = cam @ _camera_axes(heading, elevation)                                              # (..., 3)
    head = np.mod(np.arctan2(world[..., 0], world[..., 1]), 2 * np.pi)
    elev = np.arctan2(world[..., 2], np.hypot(world[..., 0], world[..., 1]))
    return head, elev


def equirect_angles(pano_w: int, pano_h: int, heading: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Absolute headings (pano_w,) of the pixel-centre columns and elevations (pano_h,) of the rows."""
    rel = ((np.arange(pano_w) + 0.5) / pano_w - 0.5) * 2 * np.pi
    elev = (0.5 - (np.arange(pano_h) + 0.5) / pano_h) * np.pi
    return rel + heading, elev


def direction_to_equirect(abs_heading: np.ndarray | float, elevation: np.ndarray | float, pano_w: int, pano_h: int,
                          heading: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Continuous pano coords (u in [0, W), v) of world directions, for a robot at `heading`."""
    rel = np.mod(np.asarray(abs_heading, np.float64) - heading + np.pi, 2 * np.pi)  # [0, 2pi) from the left edge
    return rel / (2 * np.pi) * pano_w, (0.5 - np.asarray(elevation, np.float64) / np.pi) * pano_h


def _check_image(image: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ValueError(f"{what}: expected an HxW or HxWxC image, got shape {arr.shape}")
    return arr


# -- slicing -----------------------------------------------------------------------------------
@lru_cache(maxsize=16)
def _slice_grid(pano_w: int, pano_h: int, width: int, height: int, vfov_deg: float,
                row: int) -> tuple[np.ndarray, np.ndarray]:
    """For a view of row `row` at heading 0: pano column offset (before the view/robot shift) and pano row."""
    ys, xs = np.mgrid[0:height, 0:width] + 0.5                          # (h, w) pixel centres
    head, elev = pixel_directions(xs, ys, 0.0, (row - 1) * math.radians(30.0), width, height, vfov_deg)
    head = np.where(head >= np.pi, head - 2 * np.pi, head)              # (h, w) in [-pi, pi)
    u_off = (head / (2 * np.pi) * pano_w).astype(np.float32)           # (h, w) columns right of the view centre
    v = ((0.5 - elev / np.pi) * pano_h - 0.5).astype(np.float32)        # (h, w) remap row coordinate
    u_off.flags.writeable = False
    v.flags.writeable = False
    return u_off, v


def slice_equirect(pano: np.ndarray, heading: float = 0.0, width: int = VIEW_WIDTH, height: int = VIEW_HEIGHT,
                   vfov_deg: float = VIEW_VFOV_DEG, interpolation: int = cv2.INTER_LINEAR) -> list[np.ndarray]:
    """Render the 36 world-aligned views (Matterport order) of a robot-centred equirect pano."""
    pano = _check_image(pano, "panorama")
    pano_h, pano_w = pano.shape[:2]
    tiled = 3 * pano_w + _PAD < _SHRT_MAX  # three copies side by side: one add per view, no wrap-around
    if tiled:
        padded, offset = np.concatenate([pano, pano, pano, pano[:, :_PAD]], axis=1), pano_w - 0.5  # (H, 3W+P, C)
    else:
        padded, offset = np.concatenate([pano[:, -_PAD:], pano, pano[:, :_PAD]], axis=1), _PAD - 0.5
    views = []
    for ix in range(NUM_VIEWS):
        row, col = divmod(ix, VIEWS_PER_ROW)
        u_off, v = _slice_grid(pano_w, pano_h, width, height, float(vfov_deg), row)  # (h, w) each
        rel = np.mod(col * math.radians(30.0) - heading, 2 * np.pi)      # view centre azimuth from pano centre
        centre = (rel / (2 * np.pi) + 0.5) * pano_w                     # in [W/2, 3W/2): u_off + centre >= 0
        if tiled:
            u = u_off + np.float32(centre + offset)                    # (h, w) within [W - 1/2, 3W - 1/2)
        else:
            u = np.mod(u_off + np.float32(centre), np.float32(pano_w)) + np.float32(offset)
        views.append(cv2.remap(padded, u, v, interpolation, borderMode=cv2.BORDER_REPLICATE))
    return views


# -- stitching ---------------------------------------------------------------------------------
def _remap_points(image: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """Sample `image` at n points (bilinear, border clamped) -> (n, C) float32."""
    n = mx.shape[0]
    rows = max(1, -(-n // _REMAP_BLOCK))
    pad = rows * _REMAP_BLOCK - n
    grid_x = np.pad(mx, (0, pad)).reshape(rows, _REMAP_BLOCK)
    grid_y = np.pad(my, (0, pad)).reshape(rows, _REMAP_BLOCK)
    out = cv2.remap(image, grid_x, grid_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(rows * _REMAP_BLOCK, -1)[:n].astype(np.float32)


@lru_cache(maxsize=4)
def _stitch_plan(out_w: int, out_h: int, width: int, height: int, vfov_deg: float, heading: float,
                 fill: str) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], np.ndarray]:
    """Per view: (pano flat indices, remap x, remap y, weight); plus 1/sum(weights) per pano pixel."""
    f = focal_length(height, vfov_deg)
    heads, elevs = equirect_angles(out_w, out_h, heading)                      # (W,), (H,)
    half_diag = math.atan(math.hypot(width / 2.0, height / 2.0) / f) + math.radians(1.0)
    ce, se = np.cos(elevs)[:, None], np.sin(elevs)[:, None]                    # (H, 1)
    dirs_x, dirs_y = ce * np.sin(heads)[None, :], ce * np.cos(heads)[None, :]  # (H, W)
    total = np.zeros(out_h * out_w, np.float64)
    best_cos = np.full((out_h, out_w), -2.0)
    best_view = np.zeros((out_h, out_w), np.int64)
    plan: list[list[np.ndarray]] = []
    for ix in range(NUM_VIEWS):
        vh, ve = math.radians(30.0) * (ix % VIEWS_PER_ROW), math.radians(30.0) * (ix // VIEWS_PER_ROW - 1)
        # cosine of the angle between every pano pixel and the view centre, separable: (H, W)
        cos = ce * math.cos(ve) * np.cos(heads - vh)[None, :] + se * math.sin(ve)
        better = cos > best_cos
        best_cos[better], best_view[better] = cos[better], ix
        rr, cc = np.nonzero(cos > math.cos(half_diag))                        # candidate pixels (n,)
        d = np.stack([dirs_x[rr, cc], dirs_y[rr, cc], np.broadcast_to(se, (out_h, out_w))[rr, cc]], axis=1)
        cam = d @ _camera_axes(vh, ve).T                                       # (n, 3): right, up, forward
        px = width / 2.0 + f * cam[:, 0] / cam[:, 2]
        py = height / 2.0 - f * cam[:, 1] / cam[:, 2]
        weight = np.minimum(np.minimum(px, width - px), np.minimum(py, height - py))  # px to the border
        keep = weight > 0
        flat = rr[keep] * out_w + cc[keep]
        total[flat] += weight[keep]
        plan.append([flat, (px[keep] - 0.5).astype(np.float32), (py[keep] - 0.5).astype(np.float32),
                     weight[keep].astype(np.float32)])
    if fill == "nearest":
        holes = np.flatnonzero(total == 0)                                     # pixels no view sees
        for ix in np.unique(best_view.reshape(-1)[holes]):
            vh, ve = math.radians(30.0) * (ix % VIEWS_PER_ROW), math.radians(30.0) * (ix // VIEWS_PER_ROW - 1)
            flat = holes[best_view.reshape(-1)[holes] == ix]
            rr, cc = np.divmod(flat, out_w)
            d = np.stack([dirs_x[rr, cc], dirs_y[rr, cc], np.sin(elevs)[rr]], axis=1)
            cam = d @ _camera_axes(vh, ve).T                                   # forward > 0: within ~60 deg
            px = width / 2.0 + f * cam[:, 0] / cam[:, 2] - 0.5
            py = height / 2.0 - f * cam[:, 1] / cam[:, 2] - 0.5
            entry = plan[ix]
            plan[ix] = [np.concatenate([entry[0], flat]), np.concatenate([entry[1], px.astype(np.float32)]),
                        np.concatenate([entry[2], py.astype(np.float32)]),
                        np.concatenate([entry[3], np.ones(len(flat), np.float32)])]
            total[flat] = 1.0
    inv = np.divide(1.0, total, out=np.zeros_like(total), where=total > 0).astype(np.float32)  # (H*W,)
    frozen = []
    for entry in plan:
        for arr in entry:
            arr.flags.writeable = False
        frozen.append((entry[0], entry[1], entry[2], entry[3]))
    inv.flags.writeable = False
    return frozen, inv


def stitch_equirect(views: Sequence[np.ndarray], out_w: int = 2048, out_h: int = 1024, heading: float = 0.0,
                    vfov_deg: float = VIEW_VFOV_DEG, fill: Literal["nearest", "black"] = "nearest") -> np.ndarray:
    """Blend the 36 world-aligned views into a robot-centred equirect pano (out_h, out_w[, C])."""
    if len(views) != NUM_VIEWS:
        raise ValueError(f"expected {NUM_VIEWS} views, got {len(views)}")
    if fill not in ("nearest", "black"):
        raise ValueError(f"fill must be 'nearest' or 'black', got {fill!r}")
    first = _check_image(views[0], "view 0")
    for ix, view in enumerate(views):
        if np.shape(view) != first.shape or np.asarray(view).dtype != first.dtype:
            raise ValueError(f"view {ix}: shape {np.shape(view)} / dtype differ from view 0 {first.shape}")
    height, width = first.shape[:2]
    channels = 1 if first.ndim == 2 else first.shape[2]
    plan, inv = _stitch_plan(int(out_w), int(out_h), width, height, float(vfov_deg), float(heading), fill)
    acc = np.zeros((out_h * out_w, channels), np.float32)                       # (H*W, C) weighted sums
    for ix, (flat, mx, my, weight) in enumerate(plan):
        if len(flat):
            acc[flat] += weight[:, None] * _remap_points(np.asarray(views[ix]), mx, my)
    acc *= inv[:, None]
    if np.issubdtype(first.dtype, np.integer):
        info = np.iinfo(first.dtype)
        acc = np.clip(np.rint(acc), info.min, info.max)
    out = acc.astype(first.dtype).reshape(out_h, out_w, channels)
    return out[..., 0] if first.ndim == 2 else out
