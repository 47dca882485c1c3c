"""Features of a generated world from rendered panoramas: the robot's perception path, offline."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from minivln_core.data.bboxes import ObjectIndex
from minivln_core.data.features import ObjectFeatureStore, ViewFeatureStore
from minivln_core.data.synth import SynthConfig, generate_world, load_houses
from minivln_core.data.synth.render import Renderer
from minivln_core.perception.config import ExtractorConfig
from minivln_core.perception.panorama import DEFAULT_PANO_WIDTH, encode_panorama
from minivln_core.perception.vit import FeatureExtractor
from minivln_core.perception.world_features import build_world_features, build_world_object_features

TINY_VIT = ExtractorConfig(image_size=32, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    generate_world(root, SynthConfig(houses=2, paths_per_house=4, reverie_per_house=2, feature_dim=16))
    extractor = FeatureExtractor(TINY_VIT)
    build_world_features(root, extractor, progress=False)
    return root, extractor


def test_every_viewpoint_gets_rendered_features_with_class_columns(world):
    root, extractor = world
    houses = load_houses(root)
    store = ViewFeatureStore(root / "features" / "views_vit.h5")
    semantic = ViewFeatureStore(root / "features" / "views.h5")
    assert len(store) == sum(len(h.viewpoints) for h in houses.values())
    scan, house = sorted(houses.items())[0]
    vp = house.viewpoints[0].vp_id
    assert store.get(scan, vp).shape == (36, extractor.dim)
    assert np.array_equal(store.logits(scan, vp), semantic.logits(scan, vp))  # MRC targets carried over
    with h5py.File(root / "features" / "views_vit.h5", "r") as f:
        assert json.loads(f.attrs["extractor_config"])["hidden_size"] == 16
        assert int(f.attrs["pano_width"]) == DEFAULT_PANO_WIDTH


def test_offline_features_equal_the_robot_path(world):
    root, extractor = world
    scan, house = sorted(load_houses(root).items())[0]
    renderer = Renderer(house)
    vp = house.viewpoints[1].vp_id
    pano = renderer.render_equirect(renderer.camera_position(vp), 0.0, DEFAULT_PANO_WIDTH, DEFAULT_PANO_WIDTH // 2)
    online = encode_panorama(extractor, pano, 0.0)
    assert np.allclose(online, ViewFeatureStore(root / "features" / "views_vit.h5").get(scan, vp), atol=1e-5)
    # A robot facing 90 degrees sees the panorama rolled; slicing at its heading gives the same
    # world-aligned views (the width is a multiple of 12, so the roll is whole columns).
    turned = renderer.render_equirect(renderer.camera_position(vp), np.pi / 2, DEFAULT_PANO_WIDTH,
                                      DEFAULT_PANO_WIDTH // 2)
    assert np.allclose(encode_panorama(extractor, turned, np.pi / 2), online, atol=1e-4)


def test_object_crops_are_encoded_where_objects_are_seen_best(world):
    root, extractor = world
    index = ObjectIndex.load(root / "annotations" / "BBoxes.json")
    keys = [key for key in index if index.objects_at(*key)][:2]
    stats = build_world_object_features(root, extractor, keys=keys)
    store = ObjectFeatureStore(root / "features" / "objects_vit.h5")
    objs = store.get(*keys[0])
    assert stats["objects"] >= len(objs) > 0
    assert objs.features.shape == (len(objs), extractor.dim)
    assert set(objs.obj_ids) <= {str(o) for o in index.objects_at(*keys[0])}
