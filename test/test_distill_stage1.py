"""Stage-1 distillation: the terms vanish for an identical teacher and not otherwise, the layer map
pairs the paper's layers, the teacher takes no gradient and stays out of checkpoints, a step lowers
the terms, zero weights switch terms off, and `minivln distill-pretrain` writes a loadable student."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from minivln_core.cli import main
from minivln_core.data.world import WorldPaths, load_episodes
from minivln_core.distill.losses import attention_mse, hidden_mse
from minivln_core.distill.projections import KDProjections
from minivln_core.distill.stage1 import (KD_TERMS, DistillPretrainConfig, DistillPretrainTask, layer_pairs)
from minivln_core.distill.teacher import FrozenTeacher
from minivln_core.models.loading import load_policy
from minivln_core.errors import ConfigError
from minivln_core.eval.evaluate import EvalSpec, build_env
from minivln_core.models import DuetPolicy, preset
from minivln_core.models.checkpoint import from_pretrained, save_pretrained
from minivln_core.models.encoders import Trace
from minivln_core.models.pretrain import DuetPretrainModel
from minivln_core.train import distributed as D
from minivln_core.train.pretrain import PretrainTask

from fixtures_distill import DIM, NO_DROPOUT, make_kd_world


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return make_kd_world(tmp_path_factory, "kd1_world", seed=3)


def _task(world: Path, teacher: DuetPolicy, identity: bool = False, **kd) -> DistillPretrainTask:
    """A stage-1 task of a dropout-free tiny student (seed 0) against `teacher`, batch 3."""
    torch.set_num_threads(1)
    cfg = DistillPretrainConfig(world=str(world), preset="tiny-student", teacher="given", batch_size=3, **kd)
    episodes = load_episodes(WorldPaths(world), "r2r", "train")
    env = build_env(EvalSpec(world, "r2r", "train"), episodes)
    torch.manual_seed(0)
    model = DuetPretrainModel(preset("tiny-student", image_feat_size=DIM, **NO_DROPOUT),
                              env.features.logits(episodes[0].scan, episodes[0].start).shape[1])
    task = DistillPretrainTask(model, cfg, episodes, env, D.DistInfo(), FrozenTeacher(teacher))
    if identity:
        task.projections = KDProjections(list(task.projections.maps), 24, 24, identity=True)
    return task


def _teacher(seed: int = 1, **overrides) -> DuetPolicy:
    torch.manual_seed(seed)
    return DuetPolicy(preset("tiny-teacher", image_feat_size=DIM, **NO_DROPOUT, **overrides))


def test_layer_pairs_follow_the_paper():
    paper = {"language": [(0, 2), (1, 5), (2, 8)], "panorama": [(0, 1)], "global": [(0, 1), (1, 3)],
             "local": [(0, 1), (1, 3)]}
    assert layer_pairs(preset("duet-base"), preset("minivln")) == paper
    assert layer_pairs(preset("duet-small"), preset("minivln-small")) == paper
    with pytest.raises(ConfigError, match="language"):
        layer_pairs(preset("tiny-teacher"), preset("tiny-student", num_l_layers=2))


def test_the_panorama_pair_compares_the_teachers_second_layer_with_the_students_first():
    """A teacher whose first pre-LN layer is the identity and whose second is the student's layer:
    the paired layers agree exactly, the unpaired ones do not."""
    torch.manual_seed(0)
    wide = dict(image_feat_size=DIM, initializer_range=0.3, **NO_DROPOUT)    # layers that visibly change their input
    student = DuetPolicy(preset("tiny-student", **wide)).eval()
    teacher = DuetPolicy(preset("tiny-student", num_pano_layers=2, **wide)).eval()
    missing, unexpected = teacher.load_state_dict(
        {k.replace("pano_encoder.0.", "pano_encoder.1."): v for k, v in student.state_dict().items()}, strict=False)
    assert not unexpected and missing and all(".pano_encoder.0." in k for k in missing)
    with torch.no_grad():
        for name in ("out_proj", "linear2"):                    # residual branches off: an identity layer
            getattr(teacher.img_embeddings.pano_encoder[0], name).weight.zero_()
            getattr(teacher.img_embeddings.pano_encoder[0], name).bias.zero_()
    g = torch.Generator().manual_seed(0)
    inputs = dict(view_img_fts=torch.randn(2, 5, DIM, generator=g), view_loc_fts=torch.randn(2, 5, 7, generator=g),
                  view_nav_types=torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0]]),
                  view_masks=torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool))
    s, t = Trace(), Trace()
    with torch.no_grad():
        _, masks = student.encode_panorama(**inputs, trace=s)
        teacher.encode_panorama(**inputs, trace=t)
    [(sm, tm)] = layer_pairs(teacher.config, student.config)["panorama"]
    identity = torch.nn.Identity()
    assert (sm, tm) == (0, 1)
    assert attention_mse(s.scores[sm], t.scores[tm], masks, masks) < 1e-10
    assert hidden_mse(s.hidden[sm], t.hidden[tm], identity, masks) < 1e-10
    assert hidden_mse(s.hidden[0], t.hidden[0], identity, masks) > 1e-2   # the unpaired layers differ
    assert attention_mse(s.scores[0], t.scores[0], masks, masks) > 1e-2


def test_terms_vanish_for_an_identical_teacher_and_not_for_another(world):
    same = _task(world, _teacher()).model.to_policy()                 # the student's own weights (seed 0)
    task = _task(world, same, identity=True)
    task.train()
    for step in range(4):                                              # several proxy tasks
        _, scalars = task(step)
        for term in KD_TERMS:
            assert scalars[f"kd_{term}"] < 1e-10, (task.task_at(step), term, scalars)
    with torch.no_grad():
        for p in same.parameters():
            p.add_(0.05 * torch.randn_like(p))
    _, scalars = task(0)
    assert all(scalars[f"kd_{term}"] > 1e-4 for term in KD_TERMS), scalars


def test_no_gradient_reaches_the_teacher_and_it_is_not_part_of_the_task(world):
    teacher = _teacher()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    task = _task(world, teacher)
    task.train()
    assert not teacher.training                                        # task.train() does not reach it
    loss, _ = task(0)
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert all(p.grad is not None for name, p in task.projections.named_parameters() if "hidden" in name)
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not teacher_ids & {id(p) for p in task.parameters()}
    assert not any(k.startswith("teacher") for k in task.state_dict())
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-2)
    optimizer.step()
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_a_stage1_step_lowers_the_distillation_terms(world):
    # A wider initialisation gives the random teacher attention scores far from zero.
    task = _task(world, _teacher(initializer_range=0.2))
    task.train()
    optimizer = torch.optim.AdamW(task.parameters(), lr=3e-3)
    history = []
    for _ in range(15):
        loss, scalars = task(1)                                        # the same batch every time
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(scalars)
    for term in KD_TERMS:
        first, last = history[0][f"kd_{term}"], history[-1][f"kd_{term}"]
        assert torch.isfinite(torch.tensor(last)) and last < 0.8 * first, (term, first, last)


def test_zero_weights_switch_terms_off(world):
    teacher = _teacher()
    task = _task(world, teacher, kd_attention=0.0)
    _, scalars = task(0)
    assert "kd_attention" not in scalars and "kd_hidden" in scalars
    off = _task(world, teacher, kd_embedding=0.0, kd_attention=0.0, kd_hidden=0.0)
    plain = PretrainTask(off.model, off.cfg, off.episodes, off.env, D.DistInfo())
    for step in range(3):
        kd_loss, kd_scalars = off(step)
        plain_loss, _ = plain(step)
        assert not any(k.startswith("kd_") for k in kd_scalars)
        assert torch.equal(kd_loss, plain_loss)
    with pytest.raises(ConfigError, match="kd_hidden"):
        DistillPretrainConfig(kd_hidden=-1.0).validate()


def test_the_teacher_needs_as_many_heads_as_the_student(world):
    with pytest.raises(ConfigError, match="heads"):
        _task(world, _teacher(num_attention_heads=6))
    _task(world, _teacher(num_attention_heads=6), kd_attention=0.0)   # fine without attention KD


def test_a_whole_pretraining_model_loads_as_a_teacher(tmp_path):
    torch.manual_seed(0)
    model = DuetPretrainModel(preset("tiny-teacher", image_feat_size=DIM), 5)
    save_pretrained(model, tmp_path / "best", {"mrc_classes": 5})
    save_pretrained(model.to_policy(), tmp_path / "policy", {"mrc_classes": 5})
    for name in ("best", "policy"):
        policy = load_policy(tmp_path / name)
        assert isinstance(policy, DuetPolicy)
        for key, value in model.to_policy().state_dict().items():
            assert torch.equal(policy.state_dict()[key], value), (name, key)


def test_distill_pretrain_command_writes_a_student(world, tmp_path, capsys):
    save_pretrained(_teacher(), tmp_path / "teacher")
    args = ["distill-pretrain", "--world", str(world), "--student-preset", "tiny-student", "--out",
            str(tmp_path / "run"), "--set", "loop.steps=2", "--set", "batch_size=2", "--set", "eval_limit=2",
            "--set", "eval_splits=[val_unseen]", "--quiet"]
    assert main(args) == 2
    assert "--teacher" in capsys.readouterr().err
    assert main(args + ["--teacher", str(tmp_path / "teacher")]) == 0
    student = from_pretrained(tmp_path / "run" / "policy")
    assert student.config.hidden_size == 24 and student.config.num_l_layers == 1
    last = load_file(str(tmp_path / "run" / "last" / "model.safetensors"))
    assert {k for k in last if k.startswith("projections.")} == {
        f"projections.maps.{enc}_{kind}.weight" for enc in ("language", "panorama", "global", "local")
        for kind in ("embedding", "hidden")}
    assert not any("teacher" in k for k in last)
    rows = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "train/kd_attention" in rows and "val_unseen/sap_acc" in rows
