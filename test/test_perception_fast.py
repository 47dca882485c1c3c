"""Fast extractor paths (torch bf16 / int8, onnxruntime fp32 / int8) against the plain torch fp32 one.

Small random ViTs, so the tests are quick; speed itself is measured by `bench_extraction`, not here.
Tolerances come from measurements on these models (4 seeds, 36 images each, see each constant):
`rel_err` is ||f - f32|| / ||f32 - mean(f32)||, the error against the spread of the features
(cosine alone hides it: these CLS features share a large common direction).
"""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch

from minivln_core.config import build_config, from_dict, to_dict
from minivln_core.errors import ConfigError
from minivln_core.perception import onnx_vit
from minivln_core.perception.config import ExtractorConfig
from minivln_core.perception.panorama import encode_panorama
from minivln_core.perception.vit import CachedExtractor, FeatureExtractor, Preprocessing, preprocess

TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
            batch_size=8)
# Measured (seeds 0-3): bf16 min cos >= 0.999997, rel_err 0.014-0.016; int8 min cos >= 0.99990, rel_err
# 0.06-0.095 (onnx 0.06-0.074, torch 0.09-0.095); onnx fp32 max |diff| <= 7.2e-7. Another seed's model:
# cos down to -0.28, rel_err 12-15. The bounds below leave ~3x room and still reject any wrong model.
TOLERANCE = {("torch", "bf16"): (0.9999, 0.05), ("torch", "int8"): (0.999, 0.3), ("onnx", "int8"): (0.999, 0.3),
             ("onnx", "fp32"): (0.999999, 1e-4)}


def images(n: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth (upsampled) and noise images alternately, 48x64 RGB."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        smooth = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (64, 48), interpolation=cv2.INTER_CUBIC)
        out.append(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) if k % 2 else smooth)
    return out


def agreement(feats: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(min per-row cosine, error relative to the spread of `ref`) of (N, D) features against (N, D) ones."""
    cos = np.sum(feats * ref, 1) / (np.linalg.norm(feats, axis=1) * np.linalg.norm(ref, axis=1))
    return float(cos.min()), float(np.linalg.norm(feats - ref) / np.linalg.norm(ref - ref.mean(0)))


def retrieval(feats: np.ndarray, ref: np.ndarray) -> float:
    """Fraction of rows of `feats` whose most similar row of `ref` (cosine about ref's mean) is their own."""
    centre = ref.mean(0)
    a, b = feats - centre, ref - centre                                                   # (N, D) each
    sim = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
    return float(np.mean(sim.argmax(1) == np.arange(len(ref))))


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx")


def tiny(onnx_dir, **changes) -> FeatureExtractor:
    return FeatureExtractor(ExtractorConfig(**{**TINY, "onnx_dir": str(onnx_dir), **changes}))


@pytest.fixture(scope="module")
def reference(onnx_dir) -> tuple[FeatureExtractor, list[np.ndarray], np.ndarray]:
    plain = tiny(onnx_dir)
    imgs = images(36)
    return plain, imgs, plain.encode(imgs)


# -- preprocessing -----------------------------------------------------------------------------
def test_batched_preprocess_equals_the_plain_recipe():
    prep = Preprocessing.for_vit(32)
    imgs = images(5) + [np.random.default_rng(1).integers(0, 256, (70, 40, 3), dtype=np.uint8)]  # + a portrait
    batch = preprocess(imgs, prep)
    assert batch.shape == (6, 3, 32, 32) and batch.dtype == np.float32 and batch.flags.c_contiguous
    for img, got in zip(imgs, batch):  # the recipe written out: resize, centre crop, /255, -mean, /std, CHW
        h, w = img.shape[:2]
        new_h, new_w = (35, max(35, int(35 * w / h))) if h <= w else (max(35, int(35 * h / w)), 35)
        resized = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_CUBIC)
        top, left = int(round((new_h - 32) / 2)), int(round((new_w - 32) / 2))
        crop = resized[top:top + 32, left:left + 32].astype(np.float32) / 255.0
        want = ((crop - np.float32(0.5)) / np.float32(0.5)).transpose(2, 0, 1)
        np.testing.assert_array_equal(got, want)
    assert preprocess([], prep).shape == (0, 3, 32, 32)
    with pytest.raises(ValueError, match="image 1"):
        preprocess([imgs[0], np.zeros((8, 8), np.uint8)], prep)


# -- every fast path against torch fp32 --------------------------------------------------------
@pytest.mark.parametrize("runtime,precision", list(TOLERANCE))
def test_fast_path_features_match_fp32(reference, onnx_dir, runtime, precision):
    _, imgs, ref = reference
    fast = tiny(onnx_dir, runtime=runtime, precision=precision)
    assert fast.describe()["runtime"] == runtime and fast.describe()["precision"] == precision
    feats = fast.encode(imgs)
    assert feats.shape == ref.shape and feats.dtype == np.float32
    min_cos, rel = agreement(feats, ref)
    want_cos, want_rel = TOLERANCE[(runtime, precision)]
    assert min_cos >= want_cos and rel <= want_rel, (min_cos, rel)
    if (runtime, precision) == ("onnx", "fp32"):
        np.testing.assert_allclose(feats, ref, atol=1e-5)
    other_model = tiny(onnx_dir, seed=1).encode(imgs)                 # the same check rejects a wrong model
    bad_cos, bad_rel = agreement(other_model, ref)
    assert bad_cos < want_cos and bad_rel > want_rel


def test_int8_paths_really_quantise(reference, onnx_dir):
    import onnx

    legacy = tiny(onnx_dir, int8=True)                               # the older spelling still works
    assert legacy.precision == "int8" and "DynamicQuantizedLinear" in repr(legacy.model)
    runner = tiny(onnx_dir, runtime="onnx", precision="int8").onnx
    ops = {node.op_type for node in onnx.load(str(runner.path)).graph.node}
    assert "MatMulInteger" in ops and runner.path.name.endswith("-int8.onnx")


def test_onnx_export_is_cached_and_keyed_by_the_weights(reference, onnx_dir, monkeypatch):
    plain = reference[0]
    first = tiny(onnx_dir, runtime="onnx")                           # exported by now (the tests above or here)
    files = sorted(p.name for p in onnx_dir.iterdir())
    assert not [f for f in files if f.startswith(".")]                # no temporary file left behind

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the cached file matches")

    monkeypatch.setattr(onnx_vit, "export_fp32", no_export)
    again = tiny(onnx_dir, runtime="onnx", batch_size=3)              # batching is not part of the key
    assert again.onnx.path == first.onnx.path and sorted(p.name for p in onnx_dir.iterdir()) == files
    digest = onnx_vit.model_digest(plain.model, plain.kind, 32)
    assert digest in first.onnx.path.name
    assert onnx_vit.model_digest(tiny(onnx_dir, seed=1).model, "vit", 32) != digest
    with torch.no_grad():
        plain.model.layernorm.bias[0] += 1e-3                         # one changed weight is a new model
    try:
        assert onnx_vit.model_digest(plain.model, plain.kind, 32) != digest
    finally:
        with torch.no_grad():
            plain.model.layernorm.bias[0] -= 1e-3
    np.testing.assert_allclose(again.encode(reference[1]), reference[2], atol=1e-5)


def test_onnx_classifier_gives_features_and_logits(tmp_path, onnx_dir):
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, num_labels=5)
    ViTForImageClassification(cfg).eval().save_pretrained(tmp_path / "cls")
    config = ExtractorConfig(weights_dir=str(tmp_path / "cls"), batch_size=8, onnx_dir=str(onnx_dir))
    plain = FeatureExtractor(config)
    fast = FeatureExtractor(dataclasses.replace(config, runtime="onnx"))
    imgs = images(10)
    (f0, l0), (f1, l1) = plain.encode_with_logits(imgs), fast.encode_with_logits(imgs)
    assert fast.num_logits == 5 and l1.shape == (10, 5)
    np.testing.assert_allclose(f1, f0, atol=1e-5)
    np.testing.assert_allclose(l1, l0, atol=1e-5)


# -- the one panorama path and the viewpoint cache ---------------------------------------------
def test_panorama_path_and_cache_with_a_fast_extractor(reference, onnx_dir):
    plain = reference[0]
    fast = tiny(onnx_dir, runtime="onnx", precision="int8")
    pano = cv2.resize(np.random.default_rng(2).integers(0, 256, (8, 16, 3), dtype=np.uint8), (192, 96),
                      interpolation=cv2.INTER_CUBIC)                  # a smooth (96, 192, 3) equirect
    ref = encode_panorama(plain, pano, heading=0.0)                   # (36, D)
    feats = encode_panorama(fast, pano, heading=0.0)
    assert feats.shape == (36, plain.dim)
    min_cos, rel = agreement(feats, ref)
    assert min_cos >= TOLERANCE[("onnx", "int8")][0] and rel <= TOLERANCE[("onnx", "int8")][1]
    # A decision made from the features: which of the 36 fp32 views is each fast-path view closest to?
    assert retrieval(feats, ref) == 1.0
    assert retrieval(encode_panorama(tiny(onnx_dir, seed=1), pano, heading=0.0), ref) < 0.5   # can fail

    runs = {"n": 0}
    session = fast.onnx

    def counting(pixels):
        runs["n"] += 1
        return session(pixels)

    fast.onnx = counting
    cached = CachedExtractor(fast, cache_size=4)
    views = [np.random.default_rng(k).integers(0, 256, (48, 64, 3), dtype=np.uint8) for k in range(36)]
    first = cached.encode_viewpoint(("scan", "vp"), views)
    batches = runs["n"]
    assert batches == 36 // TINY["batch_size"] + 1                    # 36 views in batches of 8
    for _ in range(3):
        assert cached.encode_viewpoint(("scan", "vp"), lambda: pytest.fail("views loaded again")) is first
    assert runs["n"] == batches and (cached.hits, cached.misses) == (3, 1)
    cached.encode_viewpoint(("scan", "other"), views)
    assert runs["n"] == 2 * batches


# -- configuration -----------------------------------------------------------------------------
@pytest.mark.parametrize("changes,key", [
    (dict(runtime="tpu"), "runtime"),
    (dict(precision="fp16"), "precision"),
    (dict(int8=True, precision="bf16"), "int8"),
    (dict(runtime="onnx", precision="bf16"), "precision"),
    (dict(onnx_dir=" "), "onnx_dir"),
])
def test_config_errors_name_the_key(changes, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        ExtractorConfig(**changes).validate()


def test_config_overrides_and_stored_settings():
    with pytest.raises(ConfigError, match="'runtime'"):
        build_config(ExtractorConfig, overrides=["runtime=gpu"])
    with pytest.raises(ConfigError, match="'precision'"):
        build_config(ExtractorConfig, overrides=["runtime=onnx", "precision=bf16"])
    cfg = build_config(ExtractorConfig, overrides=["runtime=onnx", "precision=int8", "threads=2"])
    assert (cfg.runtime, cfg.resolved_precision, cfg.threads) == ("onnx", "int8", 2)
    assert from_dict(ExtractorConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg   # stored settings round-trip
    older = {k: v for k, v in to_dict(ExtractorConfig(int8=True)).items()
             if k not in ("runtime", "precision", "onnx_dir")}                      # written before these keys
    assert from_dict(ExtractorConfig, older).resolved_precision == "int8"


# -- the benchmark -----------------------------------------------------------------------------
def test_bench_extraction_times_every_variant_against_fp32(onnx_dir):
    from minivln_core.eval.bench import EXTRACTION_VARIANTS, bench_extraction

    base = ExtractorConfig(**{**TINY, "batch_size": 36, "onnx_dir": str(onnx_dir)})
    result = bench_extraction(2, 1, base=base, progress=False)
    variants = result["variants"]
    assert list(variants)[0] == "torch_fp32" and set(variants) == {f"{r}_{p}" for r, p in EXTRACTION_VARIANTS}
    assert variants["torch_fp32"]["vs_torch_fp32"] == 1.0 and variants["torch_fp32"]["rel_err"] == 0.0
    for label, row in variants.items():
        assert row["ms"] >= row["min_ms"] > 0 and row["cpu_ms"] > 0 and result["preprocess_ms"] > 0, label
        want_cos, want_rel = TOLERANCE.get(tuple(label.split("_")), (1.0, 0.0))
        assert row["cosine_min"] >= want_cos - 1e-6 and row["rel_err"] <= want_rel, label
    assert variants["onnx_int8"]["rel_err"] > 1e-3 > variants["onnx_fp32"]["rel_err"]  # int8 really differs
    assert result["model"]["hidden_size"] == 32 and result["threads"] == 1 and result["repeats"] == 2
