"""The synthetic-house renderer: shapes, determinism, geometry (objects, doors, equirect) and room looks."""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest

from minivln_core.data.synth import SynthConfig, build_house
from minivln_core.data.synth.layout import House, segment_hits_rect
from minivln_core.data.synth.render import Renderer
from minivln_core.data.synth.render_materials import OBJECT_STYLES, class_color
from minivln_core.data.synth.visibility import view_rooms

CFG = SynthConfig(seed=11)
W, H = 224, 168                                   # the ViT input scale
SOLID = ("wardrobe", "fridge", "cabinet", "dresser", "counter", "washing machine", "dryer")


@pytest.fixture(scope="module")
def house() -> House:
    """House 0 of the test world."""
    return build_house(CFG, 0)


@pytest.fixture(scope="module")
def renderer(house: House) -> Renderer:
    """A renderer of that house at the ViT input scale."""
    return Renderer(house, width=W, height=H)


def _vp(house: House, kind: str, room_kind: str | None = None) -> int:
    """Index of the first viewpoint of `kind` (optionally in a room of `room_kind`)."""
    for i, vp in enumerate(house.viewpoints):
        if vp.kind == kind and (room_kind is None or house.rooms[vp.rooms[0]].kind == room_kind):
            return i
    raise LookupError(f"no {kind} viewpoint in a {room_kind}")


def _facing_object(house: House) -> tuple[int, np.ndarray]:
    """A solid object and a camera 2 m in front of it (inside its room, nothing in between)."""
    for k, obj in enumerate(house.objects):
        if obj.name not in SOLID:
            continue
        room = house.rooms[obj.room]
        x0, y0, x1, y1 = room.bounds
        fx0, fy0, fx1, fy1 = obj.footprint()
        gaps = {(1, 0): fx0 - x0, (-1, 0): x1 - fx1, (0, 1): fy0 - y0, (0, -1): y1 - fy1}
        out = np.array(min(gaps, key=lambda g: gaps[g]), dtype=float)          # away from its wall
        camera = np.array([*(obj.centre[:2] + 2.0 * out), room.z + house.camera_height])
        blockers = [o.footprint() for j, o in enumerate(house.objects) if j != k and o.room == obj.room]
        if room.contains(camera[0], camera[1], margin=0.2) and not any(
                segment_hits_rect(camera[:2], obj.centre[:2], b) for b in blockers):
            return k, camera
    raise LookupError("no unobstructed solid object")


def test_shapes_and_dtypes(renderer: Renderer, house: House) -> None:
    views = renderer.render_views(_vp(house, "room"))
    assert len(views) == 36
    assert all(v.shape == (H, W, 3) and v.dtype == np.uint8 for v in views)
    position = renderer.camera_position(0)
    pano = renderer.render_equirect(position, width=512, height=256)
    assert pano.shape == (256, 512, 3) and pano.dtype == np.uint8
    labels = renderer.label_view(position, 0.0, 0.0)
    assert labels.shape == (H, W) and labels.dtype == np.int32 and labels.min() >= -1
    odd = Renderer(house, width=37, height=21).render_view(position, 1.0, 0.2)   # sizes not multiples of 8
    assert odd.shape == (21, 37, 3)


def test_viewpoint_by_id_or_index_and_outside(renderer: Renderer, house: House) -> None:
    vp = _vp(house, "door")
    by_id, by_index = renderer.render_views(house.viewpoints[vp].vp_id), renderer.render_views(vp)
    assert all(np.array_equal(a, b) for a, b in zip(by_id, by_index))
    with pytest.raises(ValueError, match="outside"):
        renderer.render_view(np.array([-5.0, -5.0, 1.5]), 0.0, 0.0)


def test_deterministic(renderer: Renderer, house: House) -> None:
    again = Renderer(build_house(CFG, 0), width=W, height=H)
    vp = _vp(house, "room")
    assert all(np.array_equal(a, b) for a, b in zip(renderer.render_views(vp), again.render_views(vp)))
    position = renderer.camera_position(vp)
    assert np.array_equal(renderer.render_equirect(position, 0.7, 256, 128), again.render_equirect(position, 0.7, 256,
                                                                                                    128))


def test_views_differ_by_direction(renderer: Renderer, house: House) -> None:
    vp = _vp(house, "door")
    views = renderer.render_views(vp)
    rooms = view_rooms(house, vp)[12:24]                                   # horizontal row: room each column faces
    a, b = house.viewpoints[vp].rooms
    col_a, col_b = int(np.flatnonzero(rooms == a)[0]), int(np.flatnonzero(rooms == b)[0])
    diff = np.abs(views[12 + col_a].astype(float) - views[12 + col_b].astype(float)).mean()
    assert diff > 20.0, f"views into the two rooms of a doorway look alike ({diff:.1f})"
    for i, j in itertools.combinations(range(12, 24), 2):                  # every horizontal view is distinct
        assert not np.array_equal(views[i], views[j])
    up, down = np.mean(views[30]), np.mean(views[6])                       # ceiling vs floor rows differ too
    assert abs(up - down) > 5.0


def test_object_ahead_is_at_image_centre_in_its_class_colour() -> None:
    for index in range(6):
        house = build_house(CFG, index)
        try:
            k, camera = _facing_object(house)
            break
        except LookupError:
            continue
    else:
        pytest.fail("no house with an unobstructed solid object")
    obj = house.objects[k]
    rel = obj.centre - camera
    heading, elevation = math.atan2(rel[0], rel[1]), math.atan2(rel[2], math.hypot(rel[0], rel[1]))
    renderer = Renderer(house)                                             # 640 x 480, the BBoxes camera
    image, labels = renderer.render_view(camera, heading, elevation), renderer.label_view(camera, heading, elevation)
    assert np.all(labels[236:244, 316:324] == k)
    centre = image[234:246, 314:326].reshape(-1, 3).astype(float).mean(axis=0)
    base = np.asarray(class_color(obj.name), dtype=float)
    scale = float(centre @ base / (base @ base))
    assert 0.4 < scale < 1.4, f"{obj.name}: brightness scale {scale:.2f}"
    assert np.linalg.norm(centre - scale * base) < 0.12 * np.linalg.norm(scale * base), (obj.name, centre, base)
    # the pixels labelled as the object fill the box the annotations project for it (same pinhole camera)
    ys, xs = np.nonzero(labels == k)
    box = _project(_view_rotation(heading, elevation), camera, obj.centre, obj.size)
    got = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=float)
    assert np.abs(got - box).max() <= 2.0, (got, box)


def _view_rotation(heading: float, elevation: float) -> np.ndarray:
    """Rows right, up, forward of a camera (the project's pinhole convention)."""
    sh, ch, se, ce = math.sin(heading), math.cos(heading), math.sin(elevation), math.cos(elevation)
    return np.array([[ch, -sh, 0.0], [-sh * se, -ch * se, ce], [sh * ce, ch * ce, se]])


def _project(rot: np.ndarray, camera: np.ndarray, centre: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Clipped 640x480 image box [x0, y0, x1, y1] of a 3-D box (all corners in front of the camera)."""
    corners = np.array(list(itertools.product((-0.5, 0.5), repeat=3))) * size + centre - camera   # (8, 3)
    cam = corners @ rot.T
    f = 240.0 / math.tan(math.radians(30.0))
    u, v = 320.0 + f * cam[:, 0] / cam[:, 2], 240.0 - f * cam[:, 1] / cam[:, 2]
    return np.clip([u.min(), v.min(), u.max(), v.max()], 0.0, [640.0, 480.0, 640.0, 480.0])


@pytest.mark.parametrize("heading", [0.0, 1.1, 2.6, -2.0])
def test_equirect_centre_matches_perspective(renderer: Renderer, house: House, heading: float) -> None:
    position = renderer.camera_position(_vp(house, "room"))
    width = 2 * round(math.pi * renderer.focal)                            # same angular resolution as the view
    pano = renderer.render_equirect(position, heading, width, width // 2)
    view = renderer.render_view(position, heading, 0.0)
    a = pano[width // 4 - 3:width // 4 + 3, width // 2 - 3:width // 2 + 3].reshape(-1, 3).astype(float).mean(0)
    b = view[H // 2 - 3:H // 2 + 3, W // 2 - 3:W // 2 + 3].reshape(-1, 3).astype(float).mean(0)
    assert np.abs(a - b).max() < 12.0, (a, b)
    # the whole equator band turns with the heading: a quarter turn moves it by a quarter of the width
    turned = renderer.render_equirect(position, heading + math.pi / 2, width, width // 2)
    assert np.abs(np.roll(turned, width // 4, axis=1).astype(int) - pano.astype(int)).mean() < 3.0


def test_room_types_look_different() -> None:
    means = {}
    for index in range(8):
        house = build_house(CFG, index)
        for kind in ("bathroom", "kitchen"):
            if kind not in means:
                try:
                    vp = _vp(house, "room", kind)
                except LookupError:
                    continue
                views = Renderer(house, width=W, height=H).render_views(vp)
                means[kind] = np.mean([v.reshape(-1, 3).mean(0) for v in views], axis=0)
        if len(means) == 2:
            break
    assert len(means) == 2, "no bathroom and kitchen viewpoints found"
    assert np.linalg.norm(means["bathroom"] - means["kitchen"]) > 10.0, means


def test_class_colours_distinct() -> None:
    colors = {name: np.asarray(style.side, dtype=float) for name, style in OBJECT_STYLES.items()}
    closest = min(np.linalg.norm(colors[a] - colors[b]) for a, b in itertools.combinations(colors, 2))
    assert closest > 15.0


def test_multi_floor_stairs_render() -> None:
    cfg = SynthConfig(seed=11, floors=(2, 2))
    house = build_house(cfg, 0)
    renderer = Renderer(house, width=W, height=H)
    bottom, top = (i for i, vp in enumerate(house.viewpoints) if vp.kind == "stairs")
    if house.viewpoints[bottom].floor > house.viewpoints[top].floor:
        bottom, top = top, bottom
    towards = house.viewpoints[top].position - house.viewpoints[bottom].position
    heading = math.atan2(towards[0], towards[1])
    steps = np.flatnonzero(renderer.scene.box_label == -1)
    assert steps.size > 3
    looking_down = renderer.render_view(renderer.camera_position(top), heading + math.pi, -math.radians(60))
    looking_up = renderer.render_view(renderer.camera_position(bottom), heading, math.radians(20))
    assert looking_down.std() > 10.0 and looking_up.std() > 10.0


def test_print_timings(house: House, capsys: pytest.CaptureFixture[str]) -> None:
    vp = _vp(house, "room")
    lines = []
    for w, h in ((224, 168), (640, 480)):
        renderer = Renderer(house, width=w, height=h)
        start = time.perf_counter()
        renderer.render_views(vp)
        lines.append(f"render_views 36 x {w}x{h}: {time.perf_counter() - start:.3f} s")
    start = time.perf_counter()
    renderer.render_equirect(renderer.camera_position(vp))
    lines.append(f"render_equirect 1024x512: {time.perf_counter() - start:.3f} s")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
