"""Perception distillation (`minivln distill-vit`): a shallower ViT trained to reproduce a world's view features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from minivln_core.cli import main
from minivln_core.data.features import ViewFeatureStore
from minivln_core.data.synth.config import SynthConfig
from minivln_core.errors import ConfigError
from minivln_core.experiments.tiny_demo import build_tiny_demo
from minivln_core.perception.config import ExtractorConfig
from minivln_core.distill.vit import make_student, resample_positions, teacher_layers, to_pixels, vit_blocks
from minivln_core.perception.view_dataset import load_view_dataset
from minivln_core.perception.vit import FeatureExtractor, forward_features, preprocess

DIM = 16
WORLD = SynthConfig(houses=3, seed=5, floors=(1, 1), rooms_per_floor=(3, 4), paths_per_house=3, reverie_per_house=1,
                    feature_dim=DIM, path_hops=(2, 4), path_length=(2.0, 20.0))
TEACHER = ExtractorConfig(image_size=32, patch_size=8, hidden_size=DIM, num_layers=4, num_heads=2,
                          intermediate_size=32, seed=1)


def test_student_layer_m_starts_from_teacher_layer_m_times_ratio():
    assert teacher_layers(12, 4) == [2, 5, 8, 11]            # the paper's "student layer m <- teacher layer 3m"
    assert teacher_layers(12, 6) == [1, 3, 5, 7, 9, 11]
    assert teacher_layers(4, 4) == [0, 1, 2, 3]
    assert teacher_layers(12, 3, "first") == [0, 1, 2]
    with pytest.raises(ConfigError, match="1..4 layers"):
        teacher_layers(4, 5)


def test_a_student_with_every_layer_is_the_teacher():
    teacher = FeatureExtractor(TEACHER)
    images = [np.random.default_rng(k).integers(0, 256, (40, 50, 3), dtype=np.uint8) for k in range(5)]
    pixels = torch.from_numpy(preprocess(images, teacher.prep))
    full = make_student(teacher.model, teacher.kind, 4).eval()
    with torch.inference_mode():
        np.testing.assert_array_equal(forward_features(full, "vit", pixels)[0].numpy(), teacher.encode(images))
    half = make_student(teacher.model, teacher.kind, 2)
    assert half.config.num_hidden_layers == 2 and teacher.model.config.num_hidden_layers == 4
    for m, t in enumerate([1, 3]):
        for (name, p), q in zip(vit_blocks(half)[m].named_parameters(), vit_blocks(teacher.model)[t].parameters()):
            assert torch.equal(p, q), name
    assert torch.equal(half.embeddings.patch_embeddings.projection.weight,
                       teacher.model.embeddings.patch_embeddings.projection.weight)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    world, _ = build_tiny_demo(tmp_path_factory.mktemp("distill_vit"), WORLD, TEACHER, "ckpt")
    return world


def _run(world: Path, out: Path, steps: int) -> dict:
    args = ["distill-vit", "--world", str(world), "--out", str(out), "--quiet", "--set", "layers=2",
            "--set", f"loop.steps={steps}", "--set", "loop.eval_every=20", "--set", "batch_size=16",
            "--set", "optim.lr=2e-3", "--set", "optim.warmup_steps=5", "--set", "views_per_viewpoint=4"]
    assert main(args) == 0
    return json.loads((out / "distill_vit.json").read_text())


def test_distillation_learns_the_features_on_held_out_houses_and_resumes(world, tmp_path):
    out = tmp_path / "run"
    first = _run(world, out, 40)
    data, attrs = load_view_dataset(out / "views.h5")
    assert len(data["train"]) and len(data["val"]) and data["train"].crops.shape[1:] == (32, 32, 3)
    assert json.loads(attrs["extractor_config"])["num_layers"] == 4
    # the targets are the feature file's rows for those views
    with ViewFeatureStore(world / "features" / "views_vit.h5") as store:
        key, ix = data["val"].keys[3].rsplit("/", 1)
        scan, vp = key.split("_", 1)
        np.testing.assert_array_equal(data["val"].targets[3], store.get(scan, vp)[int(ix)])
    assert first["student_parameters"] < first["teacher_parameters"] and first["init_layers"] == [1, 3]
    # the held-out error of the best student is below that of its layer-copy initialisation
    meta = json.loads((out / "student" / "distill.json").read_text())
    assert meta["val/rel_error"] < 0.8 * meta["init/rel_error"], meta
    # the student folder is an extractor like any other, and encodes the held-out views as scored
    student = FeatureExtractor(ExtractorConfig(weights_dir=str(out / "student")))
    assert student.model.config.num_hidden_layers == 2 and student.dim == DIM
    crops = data["val"].crops[:8]
    with torch.inference_mode():
        direct = forward_features(student.model, student.kind, to_pixels(crops, student.prep))[0].numpy()
    assert direct.shape == (8, DIM) and np.isfinite(direct).all()
    # rerun with more steps: continues from last/ (the dataset is reused, not rebuilt)
    stamp = (out / "views.h5").stat().st_mtime_ns
    second = _run(world, out, 50)
    assert (out / "views.h5").stat().st_mtime_ns == stamp
    assert json.loads((out / "last" / "trainer.json").read_text())["step"] == 50 and second["steps"] == 50


def test_a_world_without_rendered_features_is_named(world, tmp_path, capsys):
    assert main(["distill-vit", "--world", str(world), "--out", str(tmp_path / "x"), "--quiet",
                 "--set", "features=nothing"]) == 2
    assert "nothing.h5" in capsys.readouterr().err
    assert main(["distill-vit", "--world", str(world), "--out", str(tmp_path / "x"), "--quiet",
                 "--set", "layers=9"]) == 2
    assert "1..4 layers" in capsys.readouterr().err


def test_two_processes_share_the_batch(world, tmp_path):
    out = tmp_path / "ddp"
    assert main(["distill-vit", "--world", str(world), "--out", str(out), "--quiet", "--set", "layers=2",
                 "--set", "loop.steps=3", "--set", "loop.processes=2", "--set", "batch_size=8",
                 "--set", "views_per_viewpoint=2"]) == 0
    assert json.loads((out / "distill_vit.json").read_text())["steps"] == 3
    assert (out / "student" / "model.safetensors").is_file()


def test_a_classifier_teacher_keeps_its_head():
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    teacher = ViTForImageClassification(ViTConfig(hidden_size=DIM, num_hidden_layers=3, num_attention_heads=2,
                                                  intermediate_size=32, image_size=32, patch_size=8, num_labels=5))
    student = make_student(teacher, "vit_cls", 1)
    assert type(student) is ViTForImageClassification and student.config.num_hidden_layers == 1
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)
    assert not any(p.requires_grad for p in student.classifier.parameters())
    feats, logits = forward_features(student, "vit_cls", torch.zeros(2, 3, 32, 32))
    assert feats.shape == (2, DIM) and logits.shape == (2, 5)


def test_position_embeddings_follow_a_smaller_input():
    grid = torch.arange(16.0).reshape(4, 4)                        # a ramp over the 4 x 4 patch grid
    pos = torch.cat([torch.full((1, 1, 2), -1.0), grid.reshape(1, 16, 1).expand(1, 16, 2)], dim=1)   # (1, 17, 2)
    assert resample_positions(pos, 4) is pos
    small = resample_positions(pos, 3)                             # (1, 10, 2): CLS kept, grid resampled
    assert small.shape == (1, 10, 2) and torch.equal(small[:, 0], pos[:, 0])
    cells = small[0, 1:, 0].reshape(3, 3)
    assert (cells.diff(dim=1) > 0).all() and (cells.diff(dim=0) > 0).all()   # still increasing along both axes
    teacher = FeatureExtractor(TEACHER)                            # 32 px, patch 8: 4 x 4 grid + CLS
    student = make_student(teacher.model, teacher.kind, 2, image_size=24)
    assert student.config.image_size == 24 and student.embeddings.position_embeddings.shape == (1, 10, DIM)
    assert torch.equal(student.embeddings.cls_token, teacher.model.embeddings.cls_token)
    assert forward_features(student, "vit", torch.zeros(3, 3, 24, 24))[0].shape == (3, DIM)
    with pytest.raises(ConfigError, match="multiple of the patch size"):
        make_student(teacher.model, teacher.kind, 2, image_size=20)


def test_a_student_with_fewer_tokens(world, tmp_path):
    """image_size=24 on a 32 px teacher: 9 + 1 tokens instead of 16 + 1, trained on the same 32 px crops resized."""
    out = tmp_path / "small"
    assert main(["distill-vit", "--world", str(world), "--out", str(out), "--quiet", "--set", "layers=2",
                 "--set", "image_size=24", "--set", "loop.steps=40", "--set", "loop.eval_every=20",
                 "--set", "batch_size=16", "--set", "optim.lr=2e-3", "--set", "optim.warmup_steps=5",
                 "--set", "views_per_viewpoint=4"]) == 0
    result = json.loads((out / "distill_vit.json").read_text())
    assert result["teacher_image_size"] == 32 and result["student_image_size"] == 24
    meta = json.loads((out / "student" / "distill.json").read_text())
    assert meta["val/rel_error"] < 0.8 * meta["init/rel_error"], meta
    student = FeatureExtractor(ExtractorConfig(weights_dir=str(out / "student")))   # the robot's preprocessing
    assert student.prep.crop_size == 24 and student.model.config.image_size == 24
    view = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    assert student.encode([view]).shape == (1, DIM)
