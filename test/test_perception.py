"""Perception: preprocessing, ViT/CLIP extractors, the viewpoint cache, equirect slicing/stitching,
object crop features and the `minivln features --images` command (tiny models, no network)."""

from __future__ import annotations

import argparse
import json
import logging
import math

import cv2
import numpy as np
import pytest
import torch

from minivln_core.commands import features as features_cmd
from minivln_core.data.bboxes import ObjectAnnotation, ObjectIndex
from minivln_core.data.features import ObjectFeatureStore, ViewFeatureStore
from minivln_core.frames import VIEW_ELEVATIONS, VIEW_HEADINGS
from minivln_core.errors import ConfigError, DataError
from minivln_core.perception import equirect
from minivln_core.perception.config import ExtractorConfig
from minivln_core.perception.equirect import (direction_to_equirect, equirect_angles, focal_length,
                                              pixel_directions, slice_equirect, stitch_equirect)
from minivln_core.perception.objects import (best_view, box_direction, build_object_features,
                                             extract_object_features, square_crop)
from minivln_core.perception.vit import (CachedExtractor, FeatureExtractor, Preprocessing, preprocess,
                                         preprocess_image)

TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)


def tiny_config(**changes) -> ExtractorConfig:
    return ExtractorConfig(**{**TINY, "batch_size": 8, **changes})


def rand_images(n: int, h: int = 30, w: int = 40, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def tiny() -> FeatureExtractor:
    return FeatureExtractor(tiny_config())


# -- preprocessing and config ------------------------------------------------------------------
def test_preprocess_shape_and_range():
    assert Preprocessing.for_vit(224).resize_short == 248
    out = preprocess_image(rand_images(1, 480, 640)[0], Preprocessing.for_vit(224))
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    assert -1.0 <= out.min() and out.max() <= 1.0
    white_and_black = [np.full((30, 50, 3), 255, np.uint8), np.zeros((50, 30, 3), np.uint8)]
    white = preprocess(white_and_black, Preprocessing.for_vit(32))
    assert white.shape == (2, 3, 32, 32)
    np.testing.assert_allclose(white[0], 1.0)
    np.testing.assert_allclose(white[1], -1.0)
    with pytest.raises(ValueError, match="image 0"):
        preprocess_image(np.zeros((30, 40), np.uint8), Preprocessing.for_vit(32))
    with pytest.raises(ValueError, match="uint8"):
        preprocess_image(np.zeros((30, 40, 3), np.float32), Preprocessing.for_vit(32))


def test_config_validation():
    with pytest.raises(ConfigError, match="num_heads"):
        tiny_config(num_heads=3).validate()
    with pytest.raises(ConfigError, match="weights_dir"):
        ExtractorConfig(backend="clip").validate()
    with pytest.raises(ConfigError, match="patch_size"):
        tiny_config(patch_size=7).validate()


# -- the extractor -----------------------------------------------------------------------------
def test_random_vit_encode_shape_and_seed(tiny, caplog):
    images = rand_images(5)
    feats = tiny.encode(images)
    assert feats.shape == (5, 32) and feats.dtype == np.float32 and np.isfinite(feats).all()
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    with caplog.at_level(logging.WARNING, logger="minivln.perception"):
        again = FeatureExtractor(tiny_config(batch_size=2))            # same seed, other batching
    assert torch.rand(1) == expected                                    # the caller's RNG is untouched
    assert "RANDOM weights" in caplog.text
    np.testing.assert_allclose(again.encode(images), feats, atol=1e-5)
    other = FeatureExtractor(tiny_config(seed=1)).encode(images)
    assert not np.allclose(other, feats, atol=1e-3)
    assert tiny.encode([]).shape == (0, 32)
    assert tiny.encode_panorama(rand_images(36)).shape == (36, 32)
    with pytest.raises(ValueError, match="36 views"):
        tiny.encode_panorama(images)
    with pytest.raises(ValueError, match="classifier"):
        tiny.logits(images)


def test_int8_extractor_runs():
    q = FeatureExtractor(tiny_config(int8=True))
    feats = q.encode(rand_images(3))
    assert feats.shape == (3, 32) and np.isfinite(feats).all()
    assert "DynamicQuantizedLinear" in repr(q.model)


def test_cache_never_reencodes_a_viewpoint(tiny):
    calls = {"encode": 0, "load": 0}
    real = tiny.encode_panorama

    def counting(views):
        calls["encode"] += 1
        return real(views)

    cached = CachedExtractor(tiny, cache_size=2)
    cached.extractor = type("Spy", (), {"encode_panorama": staticmethod(counting), "dim": tiny.dim})()
    pano = rand_images(36)

    def load():
        calls["load"] += 1
        return pano

    first = cached.encode_viewpoint(("s", "a"), load)
    for _ in range(3):
        assert cached.encode_viewpoint(("s", "a"), load) is first
    assert (cached.misses, cached.hits, calls["encode"], calls["load"]) == (1, 3, 1, 1)
    assert not first.flags.writeable
    cached.encode_viewpoint(("s", "b"), pano)
    cached.encode_viewpoint(("s", "c"), pano)                           # evicts the least recent ("s", "a")
    assert calls["encode"] == 3 and len(cached.cache) == 2 and ("s", "a") not in cached.cache
    cached.encode_viewpoint(("s", "a"), load)
    assert (cached.misses, calls["encode"]) == (4, 4)


def test_saved_vit_loads_from_weights_dir(tiny, tmp_path):
    tiny.model.save_pretrained(tmp_path / "vit")
    loaded = FeatureExtractor(ExtractorConfig(weights_dir=str(tmp_path / "vit"), batch_size=4))
    assert not loaded.random_weights and loaded.dim == 32 and loaded.prep == tiny.prep
    images = rand_images(6)
    np.testing.assert_allclose(loaded.encode(images), tiny.encode(images), atol=1e-5)


def test_classifier_vit_gives_features_and_logits(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                    image_size=32, patch_size=8, num_labels=5)
    torch.manual_seed(0)
    model = ViTForImageClassification(cfg).eval()
    model.save_pretrained(tmp_path / "cls")
    ex = FeatureExtractor(ExtractorConfig(weights_dir=str(tmp_path / "cls")))
    images = rand_images(3)
    feats, logits = ex.encode_with_logits(images)
    assert ex.num_logits == 5 and feats.shape == (3, 32) and logits.shape == (3, 5)
    with torch.inference_mode():
        pixels = torch.from_numpy(preprocess(images, ex.prep))
        np.testing.assert_allclose(feats, model.vit(pixel_values=pixels).last_hidden_state[:, 0].numpy(), atol=1e-5)
        np.testing.assert_allclose(logits, model(pixel_values=pixels).logits.numpy(), atol=1e-5)


def test_clip_vision_tower_loads_with_its_normalisation(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8, projection_dim=24)
    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(cfg).eval()
    model.save_pretrained(tmp_path / "clip")
    mean, std = [0.4, 0.45, 0.5], [0.25, 0.26, 0.27]
    (tmp_path / "clip" / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": mean, "image_std": std, "size": {"shortest_edge": 32},
         "crop_size": {"height": 32, "width": 32}}))
    ex = FeatureExtractor(ExtractorConfig(backend="clip", weights_dir=str(tmp_path / "clip")))
    assert ex.dim == 24 and ex.prep == Preprocessing(32, 32, tuple(mean), tuple(std))
    images = rand_images(2)
    with torch.inference_mode():
        expected = model(pixel_values=torch.from_numpy(preprocess(images, ex.prep))).image_embeds.numpy()
    np.testing.assert_allclose(ex.encode(images), expected, atol=1e-5)
    with pytest.raises(DataError, match="expected model_type 'vit'"):
        FeatureExtractor(ExtractorConfig(weights_dir=str(tmp_path / "clip")))


def test_missing_or_empty_weights_dir_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="nowhere.*does not exist"):
        FeatureExtractor(ExtractorConfig(weights_dir=str(tmp_path / "nowhere")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty.*no config.json"):
        FeatureExtractor(ExtractorConfig(weights_dir=str(tmp_path / "empty")))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(DataError, match="broken.*cannot load"):
        FeatureExtractor(ExtractorConfig(weights_dir=str(tmp_path / "broken")))


# -- equirect ----------------------------------------------------------------------------------
def smooth_pano(width: int, height: int) -> np.ndarray:
    """A colour that varies smoothly with the (robot-relative) direction, continuous across the seam."""
    heads, elevs = equirect_angles(width, height)
    e, a = elevs[:, None], heads[None, :]
    img = np.stack([127 + 100 * np.cos(e) * np.sin(a), 127 + 100 * np.sin(e) + 0 * a,
                    127 + 100 * np.cos(e) * np.cos(a)], axis=-1)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def test_pinhole_geometry():
    assert focal_length() == pytest.approx(240 / math.tan(math.radians(30)))
    head, elev = pixel_directions(320.0, 240.0, 1.0, 0.3)
    assert (head, elev) == (pytest.approx(1.0), pytest.approx(0.3))
    head, elev = pixel_directions(640.0, 240.0, 0.0, 0.0)                # right edge of a level view
    assert math.degrees(head) == pytest.approx(37.59, abs=0.01)  # HFOV 75.2 deg and elev == pytest.approx(0.0)
    head, elev = pixel_directions(320.0, 0.0, 0.0, 0.0)                  # top edge
    assert math.degrees(elev) == pytest.approx(30.0) and head == pytest.approx(0.0)


def test_equirect_round_trip():
    width, height = 1024, 512
    pano = smooth_pano(width, height)
    views = slice_equirect(pano)
    assert len(views) == 36 and views[0].shape == (480, 640, 3) and views[0].dtype == np.uint8
    stitched = stitch_equirect(views, width, height)
    assert stitched.shape == pano.shape
    band = np.abs(equirect_angles(width, height)[1]) < math.radians(50)
    assert np.abs(stitched.astype(float) - pano)[band].mean() < 0.5
    again = slice_equirect(stitched)
    centre = (slice(120, 360), slice(160, 480))
    assert max(np.abs(a[centre].astype(float) - b[centre]).mean() for a, b in zip(views, again)) < 0.5
    black = stitch_equirect(views, 256, 128, fill="black")
    assert black[0].max() == 0 and black[64].min() > 0                  # pole row unseen, equator seen
    assert stitch_equirect(views, 256, 128)[0].min() > 0                # nearest-view fill


def test_heading_rolls_the_views(monkeypatch):
    pano = smooth_pano(1152, 576)                                        # 30 deg = 96 whole columns
    level = slice_equirect(pano, heading=0.0, width=64, height=48)
    turned = slice_equirect(pano, heading=math.radians(30), width=64, height=48)
    for ix in range(36):
        row, col = divmod(ix, 12)
        diff = np.abs(turned[ix].astype(int) - level[12 * row + (col - 1) % 12])
        assert diff.max() <= 1, ix
    monkeypatch.setattr(equirect, "_SHRT_MAX", 100)                      # the wrap-around path of wide panos
    wrapped = slice_equirect(pano, heading=math.radians(30), width=64, height=48)
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(wrapped, turned)) <= 1


@pytest.mark.parametrize("heading,rel_az,elev,view", [(0.0, 90, 0, 15), (90.0, 90, 0, 18), (0.0, 0, 30, 24),
                                                      (-60.0, -30, -30, 9)])
def test_pano_centre_is_robot_forward(heading, rel_az, elev, view):
    """A marker at a robot-relative direction lands in the centre of the world-aligned view."""
    width, height = 1152, 576
    pano = np.zeros((height, width, 3), np.uint8)
    u, v = direction_to_equirect(math.radians(heading + rel_az), math.radians(elev), width, height,
                                 heading=math.radians(heading))
    assert u == pytest.approx(width / 2 + rel_az / 360 * width)          # centre column = robot forward
    u, v = int(round(float(u))), int(round(float(v)))
    pano[v - 3:v + 3, u - 3:u + 3] = 255                                  # a 6x6 square centred on (u, v)
    image = slice_equirect(pano, heading=math.radians(heading))[view][..., 0]
    ys, xs = np.nonzero(image > 128)
    assert abs(xs.mean() + 0.5 - 320) < 2 and abs(ys.mean() + 0.5 - 240) < 2


# -- objects -----------------------------------------------------------------------------------
def test_square_crop_pads_and_keeps_min_side():
    image = np.full((480, 640, 3), 7, np.uint8)
    crop = square_crop(image, (0.0, 0.0, 10.0, 4.0), min_side=32)
    assert crop.shape == (32, 32, 3)
    assert crop[0, 0, 0] == 128 and crop[-1, -1, 0] == 7                # outside grey, inside the image
    assert square_crop(image, (100, 100, 50, 80)).shape == (80, 80, 3)
    assert square_crop(image[::2, ::2], (100, 100, 50, 80)).shape == (40, 40, 3)  # box scaled to a 320x240 view


def test_object_features_shapes_and_directions(tiny, tmp_path):
    views = rand_images(36, 480, 640, seed=3)
    objects = {
        "1": ObjectAnnotation("1", "lamp", [14, 3], [(300.0, 220.0, 40.0, 40.0), (0.0, 0.0, 10.0, 10.0)]),
        "2": ObjectAnnotation("2", "door", [27], [(400.0, 100.0, 100.0, 60.0)]),
        "3": ObjectAnnotation("3", "ghost", [], []),
    }
    assert best_view(objects["1"]) == (14, (300.0, 220.0, 40.0, 40.0))
    loads: list[int] = []
    objs = extract_object_features(tiny, objects, lambda ix: loads.append(ix) or views[ix])
    assert objs.obj_ids == ["1", "2"] and sorted(loads) == [14, 27]
    assert objs.features.shape == (2, 32) and objs.sizes.tolist() == [[40, 40], [100, 60]]
    np.testing.assert_allclose(objs.directions[0], [VIEW_HEADINGS[14], VIEW_ELEVATIONS[14]], atol=1e-6)
    head, elev = objs.directions[1]
    assert head > VIEW_HEADINGS[27] and elev > VIEW_ELEVATIONS[27]      # right of and above view 27's centre
    np.testing.assert_allclose(objs.features[1], tiny.encode([square_crop(views[27], objects["2"].bbox2d[0])])[0],
                               atol=1e-5)
    assert box_direction(0, (310, 230, 20, 20)) == (pytest.approx(0.0), pytest.approx(-math.radians(30)))
    index = ObjectIndex({("scanA", "vp1"): objects, ("scanA", "vp2"): {"3": objects["3"]}})
    assert build_object_features(tiny, index, lambda scan, vp: views, tmp_path / "obj.h5") == 2
    with ObjectFeatureStore(tmp_path / "obj.h5") as store:
        assert store.dim == 32 and store.get("scanA", "vp1").obj_ids == ["1", "2"]
        assert len(store.get("scanA", "vp2")) == 0


# -- the command ---------------------------------------------------------------------------------
def features_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="minivln")
    features_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["features", *argv])
    return args.func(args)


def tiny_sets() -> list[str]:
    out = []
    for key, value in {**TINY, "batch_size": 12}.items():
        out += ["--set", f"{key}={value}"]
    return out


def test_features_command_encodes_an_image_folder(tmp_path):
    folder = tmp_path / "views"
    folder.mkdir()
    for key, image in [("scanA_vp1", 10), ("scanA_vp2", 200)]:
        for ix in range(36):
            cv2.imwrite(str(folder / f"{key}_{ix}.{'png' if ix % 2 else 'jpg'}"), np.full((30, 40, 3), image, np.uint8))
    (folder / "README.txt").write_text("not an image")
    assert features_main(["--images", str(folder), "--out", str(tmp_path / "f.h5"), *tiny_sets()]) == 0
    with ViewFeatureStore(tmp_path / "f.h5") as store:
        assert sorted(store.keys()) == ["scanA_vp1", "scanA_vp2"] and store.dim == 32
        assert store.get("scanA", "vp1").shape == (36, 32)
    (folder / "scanA_vp2_17.png").unlink()
    (folder / "scanA_vp2_20.jpg").unlink()
    with pytest.raises(DataError, match=r"scanA_vp2 is missing 2 of its 36 views: scanA_vp2_17.png\|jpg, scanA_vp2_20"):
        features_main(["--images", str(folder), "--out", str(tmp_path / "g.h5")])
