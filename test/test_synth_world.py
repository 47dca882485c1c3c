"""The synthetic world: written in the real formats, loadable by the project readers, deterministic."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest

from minivln_core.config import build_config
from minivln_core.data.bboxes import ObjectIndex
from minivln_core.data.connectivity import load_connectivity
from minivln_core.data.features import ObjectFeatureStore, ViewFeatureStore
from minivln_core.data.r2r import load_r2r, validate_against
from minivln_core.data.reverie import load_reverie
from minivln_core.data.synth import CLASS_NAMES, SynthConfig, build_house, generate_world
from minivln_core.data.synth.visibility import HEIGHT, WIDTH
from minivln_core.errors import ConfigError

SPLITS = ("train", "val_seen", "val_unseen")
TINY = SynthConfig(houses=4, seed=7, floors=(1, 2), multi_floor_prob=0.5, rooms_per_floor=(4, 5),
                   paths_per_house=8, reverie_per_house=5, feature_dim=16, val_seen_fraction=0.25)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(out, TINY)
    return out


@pytest.fixture(scope="module")
def graphs(world: Path) -> dict:
    return load_connectivity(world / "connectivity")


@pytest.fixture(scope="module")
def bboxes(world: Path) -> ObjectIndex:
    return ObjectIndex.load(world / "annotations" / "BBoxes.json")


@pytest.fixture(scope="module")
def houses() -> dict:
    built = [build_house(TINY, i) for i in range(TINY.houses)]
    return {h.scan: h for h in built}


def _r2r(world: Path, split: str, tokenize: bool = False) -> list:
    return load_r2r(world / "annotations" / f"R2R_{split}.json", tokenize=tokenize)


def _reverie(world: Path, split: str, bboxes: ObjectIndex) -> list:
    return load_reverie(world / "annotations" / f"REVERIE_{split}.json", bboxes, tokenize=False)


def test_every_output_loads_through_the_project_readers(world: Path, graphs: dict, bboxes: ObjectIndex) -> None:
    assert len(graphs) == TINY.houses
    for split in SPLITS:
        episodes = _r2r(world, split, tokenize=(split == "val_unseen"))
        reverie = _reverie(world, split, bboxes)
        assert episodes and reverie, split
        validate_against(episodes, graphs)
        validate_against(reverie, graphs)
    assert all(ep.instr_encoding[0] == 101 and ep.instr_encoding[-1] == 102 for ep in _r2r(world, "val_unseen", True))
    assert ViewFeatureStore(world / "features" / "views.h5").dim == TINY.feature_dim
    assert ObjectFeatureStore(world / "features" / "objects.h5").dim == TINY.feature_dim
    summary = json.loads((world / "world.json").read_text())
    assert summary["config"]["seed"] == TINY.seed and summary["class_names"] == list(CLASS_NAMES)


def test_graphs_are_connected_with_matterport_ids(world: Path, graphs: dict) -> None:
    for scan, graph in graphs.items():
        assert re.fullmatch(r"syn[0-9A-Za-z]{8}", scan)
        assert all(re.fullmatch(r"[0-9a-f]{32}", vp) for vp in graph.viewpoints)
        assert np.isfinite(graph.distances).all(), f"{scan} is not connected"
        for vp in graph.viewpoints:
            assert vp not in graph.neighbors(vp)
    raw = json.loads(next((world / "connectivity").glob("*_connectivity.json")).read_text())
    assert set(raw[0]) == {"image_id", "pose", "included", "visible", "unobstructed", "height"}
    assert len(raw[0]["pose"]) == 16 and len(raw[0]["unobstructed"]) == len(raw)


def test_annotated_paths_are_walks_with_r2r_lengths(world: Path, graphs: dict) -> None:
    for split in SPLITS:
        for ep in _r2r(world, split):
            graph = graphs[ep.scan]
            assert graph.is_walk(ep.path)
            assert ep.path == graph.shortest_path(ep.start, ep.goal)
            assert TINY.path_hops[0] <= len(ep.path) - 1 <= TINY.path_hops[1]
            assert ep.distance == pytest.approx(graph.path_length(ep.path), abs=0.01)
            assert 0.0 <= ep.heading < 2 * np.pi
    records = json.loads((world / "annotations" / "R2R_train.json").read_text())
    assert all(len(r["instructions"]) == TINY.instructions_per_path for r in records)


def test_splits_are_disjoint(world: Path, bboxes: ObjectIndex) -> None:
    scans = {split: {ep.scan for ep in _r2r(world, split)} for split in SPLITS}
    assert scans["val_unseen"].isdisjoint(scans["train"])
    assert scans["val_seen"] <= scans["train"]
    pairs = {split: {(ep.scan, ep.start, ep.goal) for ep in _r2r(world, split)} for split in SPLITS}
    assert pairs["val_seen"].isdisjoint(pairs["train"])
    reverie_scans = {split: {ep.scan for ep in _reverie(world, split, bboxes)} for split in SPLITS}
    assert reverie_scans["val_unseen"].isdisjoint(reverie_scans["train"] | reverie_scans["val_seen"])
    splits = json.loads((world / "world.json").read_text())["splits"]
    assert set(splits["val_unseen"]) == scans["val_unseen"] and not set(splits["val_unseen"]) & set(splits["train"])


def test_same_seed_is_byte_identical_and_other_seed_differs(world: Path, tmp_path: Path) -> None:
    generate_world(tmp_path / "again", TINY)
    assert _files(tmp_path / "again") == _files(world)
    generate_world(tmp_path / "other", build_config(SynthConfig, TINY, overrides=["seed=8"]))
    other = _files(tmp_path / "other")
    assert other["connectivity/scans.txt"] != _files(world)["connectivity/scans.txt"]
    assert other["features/views.h5"] != _files(world)["features/views.h5"]


def test_instructions_name_the_goal_room_or_stop_object(world: Path, houses: dict, bboxes: ObjectIndex) -> None:
    for split in SPLITS:
        for ep in _r2r(world, split):
            house = houses[ep.scan]
            goal = next(vp for vp in house.viewpoints if vp.vp_id == ep.goal)
            names = {house.rooms[r].kind for r in goal.rooms}
            names |= {o.name for r in goal.rooms for o in house.room_objects(r)}
            text = ep.instruction.lower()
            assert any(name in text for name in names), (ep.instruction, names)
        for ep in _reverie(world, split, bboxes):
            house = houses[ep.scan]
            obj = house.objects[int(ep.obj_id)]
            assert obj.name in ep.instruction.lower() and house.rooms[obj.room].kind in ep.instruction.lower()


def test_every_viewpoint_has_semantic_view_features(world: Path, graphs: dict) -> None:
    store = ViewFeatureStore(world / "features" / "views.h5")
    labels, feats = [], []
    for scan, graph in graphs.items():
        for vp in graph.viewpoints:
            f = store.get(scan, vp)
            assert f.shape == (36, TINY.feature_dim) and f.dtype == np.float32
            logits = store.logits(scan, vp)
            assert logits.shape == (36, len(CLASS_NAMES))
            labels.append(np.argmax(logits, axis=1))
            feats.append(f)
    labels_all, feats_all = np.concatenate(labels), np.concatenate(feats)   # (M,), (M, D)
    unit = feats_all / np.linalg.norm(feats_all, axis=1, keepdims=True)
    sims = unit[:300] @ unit[:300].T
    same = labels_all[:300, None] == labels_all[None, :300]
    assert sims[same].mean() > sims[~same].mean() + 0.2   # features carry the class


def test_reverie_goal_object_is_visible_at_goal(world: Path, bboxes: ObjectIndex) -> None:
    objects = ObjectFeatureStore(world / "features" / "objects.h5")
    for split in SPLITS:
        for ep in _reverie(world, split, bboxes):
            ann = bboxes.objects_at(ep.scan, ep.goal)[ep.obj_id]
            assert ann.visible_pos and len(ann.bbox2d) == len(ann.visible_pos)
            assert ep.goal in ep.goal_viewpoints
            feats = objects.get(ep.scan, ep.goal)
            assert ep.obj_id in feats.obj_ids
            k = feats.obj_ids.index(ep.obj_id)
            assert 0.0 <= feats.directions[k, 0] < 2 * np.pi and abs(feats.directions[k, 1]) < np.pi / 2


def test_boxes_lie_inside_the_image(bboxes: ObjectIndex) -> None:
    for scan, vp in bboxes:
        for ann in bboxes.objects_at(scan, vp).values():
            for x, y, w, h in ann.bbox2d:
                assert 0 <= x and 0 <= y and x + w <= WIDTH and y + h <= HEIGHT
                assert w >= TINY.min_box_pixels - 1 and h >= TINY.min_box_pixels - 1


def test_stairs_join_floors() -> None:
    cfg = build_config(SynthConfig, TINY, overrides=["floors=[2, 2]"])
    house = build_house(cfg, 0)
    stairs = [i for i, vp in enumerate(house.viewpoints) if vp.kind == "stairs"]
    assert len(stairs) == 2 and tuple(stairs) in house.edges
    dz = abs(house.viewpoints[stairs[0]].position[2] - house.viewpoints[stairs[1]].position[2])
    assert dz == pytest.approx(cfg.floor_height)
    for vp in house.viewpoints:
        assert vp.position[2] == pytest.approx(house.rooms[vp.rooms[0]].z + cfg.camera_height)


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="houses"):
        build_config(SynthConfig, overrides=["houses=1"])
    with pytest.raises(ConfigError, match="path_hops"):
        build_config(SynthConfig, overrides=["path_hops=[5, 2]"])
    with pytest.raises(ConfigError, match="no_such_key"):
        build_config(SynthConfig, overrides=["no_such_key=3"])


def test_synth_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from minivln_core.commands import synth

    parser = argparse.ArgumentParser()
    synth.register(parser.add_subparsers())
    (tmp_path / "cfg.yaml").write_text("feature_dim: 8\npaths_per_house: 4\nreverie_per_house: 2\n")
    args = parser.parse_args(["synth", "--out", str(tmp_path / "w"), "--houses", "2", "--seed", "3",
                              "--config", str(tmp_path / "cfg.yaml"), "--set", "rooms_per_floor=[3, 4]"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "houses: train 1, val_unseen 1" in out and "R2R instructions" in out
    world = json.loads((tmp_path / "w" / "world.json").read_text())
    assert world["config"]["feature_dim"] == 8 and world["config"]["seed"] == 3


def test_semantic_views_see_through_doorways_into_the_next_room():
    # The view weights come from a segmentation by the image ray caster: from inside a room, a view
    # facing a doorway shows some of the room behind it (as its image does), so vision can tell where
    # a door leads; every view's room weights sum to room_weight.
    from minivln_core.data.synth.features import CLASS_INDEX, view_class_weights
    from minivln_core.data.synth.layout import ROOM_TYPES
    from minivln_core.data.synth.render import Renderer

    cfg = SynthConfig(houses=2)
    house = build_house(cfg, 0)
    renderer = Renderer(house, width=32, height=24)
    room_classes = [CLASS_INDEX[kind] for kind in ROOM_TYPES]
    seen_beyond = 0
    for i, vp in enumerate(house.viewpoints):
        if vp.kind != "room":
            continue
        rooms, objects = renderer.segment_views(i)
        assert rooms.shape == objects.shape == (36, 24, 32)
        weights = view_class_weights(house, rooms, objects, cfg)
        assert np.allclose(weights[:, room_classes].sum(1), cfg.room_weight)   # every pixel is in some room
        own = house.rooms[vp.rooms[0]]
        other_pixels = (rooms != own.index).reshape(36, -1).mean(1)              # (36,)
        seen_beyond += int((other_pixels > 0.05).any())
        if (rooms == own.index).all():
            assert np.isclose(weights[:, CLASS_INDEX[own.kind]].min(), cfg.room_weight)
    assert seen_beyond >= 3  # several in-room viewpoints look into another room
