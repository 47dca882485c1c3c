"""Stage-2 distillation: the teacher runs on the student's own rollout and map, the terms vanish for
an identical teacher (L_fuse: its gradient), KDWeight and switches turn terms off exactly, no NaN
with -inf logits, a step lowers the terms, the teacher takes no gradient and stays out of the
optimiser and checkpoints, resume keeps the projections, the CLI flags work, and the full-size
duet-base -> minivln pair runs both stages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from minivln_core.cli import main
from minivln_core.data.world import WorldPaths, load_episodes
from minivln_core.distill.projections import KDProjections
from minivln_core.distill.stage1 import DistillPretrainConfig, DistillPretrainTask
from minivln_core.distill.stage2 import TERMS, DistillFinetuneConfig, FinetuneDistiller, run_distill_finetune
from minivln_core.distill.teacher import FrozenTeacher
from minivln_core.eval.evaluate import EvalSpec, build_env
from minivln_core.models import DuetPolicy, preset
from minivln_core.models.checkpoint import from_pretrained, save_pretrained
from minivln_core.models.pretrain import DuetPretrainModel
from minivln_core.train import distributed as D
from minivln_core.train.finetune import FinetuneConfig, FinetuneTask
from minivln_core.train.optim import build_optimizer
from minivln_core.train.pretrain import MixRatio
from minivln_core.train.trainer import LoopConfig

from fixtures_distill import DIM, NO_DROPOUT, make_kd_world


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return make_kd_world(tmp_path_factory, "kd2_world", seed=4)


def _policy(name: str = "tiny-student", seed: int = 0, **overrides) -> DuetPolicy:
    torch.manual_seed(seed)
    return DuetPolicy(preset(name, image_feat_size=DIM, **NO_DROPOUT, **overrides))


def _task(world: Path, student: DuetPolicy, distiller, train_alg: str = "imitation", batch: int = 3) -> FinetuneTask:
    """Fine-tuning task over the world's train episodes, episodes of at most 6 decisions."""
    torch.set_num_threads(1)
    cfg = FinetuneConfig(world=str(world), batch_size=batch, max_steps=6, train_alg=train_alg)
    episodes = load_episodes(WorldPaths(world), "r2r", "train")
    env = build_env(EvalSpec(world, "r2r", "train", batch, 6), episodes)
    return FinetuneTask(student, cfg, env.episodes, env, D.DistInfo(), distiller)


def _distiller(teacher: DuetPolicy, student_dim: int = 24, identity: bool = False, **kd) -> FinetuneDistiller:
    distiller = FinetuneDistiller(FrozenTeacher(teacher), student_dim, max_steps=6, **kd)
    if identity:
        distiller.projections = KDProjections(["text", "panorama"], student_dim, student_dim, identity=True)
    return distiller


class Recorder:
    """An extra_loss that keeps every step's KD part (with graph) and the logits it saw."""

    def __init__(self, distiller: FinetuneDistiller):
        self.distiller, self.parts, self.stats, self.logits = distiller, [], [], []

    def __call__(self, result, states, observations):
        part, stats = self.distiller(result, states, observations)
        self.parts.append(part)
        self.stats.append(stats)
        self.logits.append(result.outputs.fused_logits.detach())
        return part, stats


def test_terms_vanish_for_an_identical_teacher_and_not_for_another(world):
    student = _policy()
    same = _policy()                                                  # same seed: the same weights
    totals, norms = [], []
    for distiller in (_distiller(same, identity=True), _distiller(_policy(seed=5), identity=True)):
        recorder = Recorder(distiller)
        task = _task(world, student, recorder)
        task.train()
        task(0)
        totals.append({t: sum(s[f"kd_{t}"] for s in recorder.stats) for t in TERMS})
        grads = torch.autograd.grad(sum(recorder.parts), [p for p in student.parameters()], allow_unused=True)
        norms.append(sum(float(g.norm()) for g in grads if g is not None))
    (same_total, other_total), (same_norm, other_norm) = totals, norms
    assert same_total["txt"] < 1e-10 and same_total["pano"] < 1e-10
    assert other_total["txt"] > 1e-3 and other_total["pano"] > 1e-3 and other_norm > 1e-3
    # CE(p, q) is at its minimum H(p) when q = p: the gradient is float32 rounding (the teacher's separate
    # no-grad forward rounds differently with the CPU's kernels: 1.5e-5 without AVX-512), ~1e-7 of another's.
    assert same_norm < 1e-5 * max(1.0, other_norm), (same_norm, other_norm)


def test_the_teacher_follows_the_students_sampled_rollout(world):
    distiller = _distiller(_policy("tiny-teacher", seed=2), kd_weight=1.0)
    task = _task(world, _policy(), distiller, train_alg="dagger")
    task.train()
    task(0)                                                           # teacher-forced, then sampled
    pairs = list(distiller._pairs.values())
    assert len(pairs) == 3                                            # the finished first rollout was dropped
    for student_state, teacher_state in pairs:
        assert student_state.done and teacher_state.done and student_state.step == teacher_state.step
        assert student_state.graph_map.nodes == teacher_state.graph_map.nodes
        assert student_state.graph_map.visited == teacher_state.graph_map.visited
    late = pairs[0][0]
    late_copy = type(late)(late.txt_embeds, late.txt_kv, step=2)
    result = type("R", (), {"nodes": [[None]], "decisions": []})()
    with pytest.raises(RuntimeError, match="first decision"):
        distiller(result, [late_copy], [None])


def test_kd_weight_and_switches_turn_terms_off_exactly(world):
    teacher = _policy("tiny-teacher", seed=2)
    student = _policy()
    plain_loss, _ = _task(world, student, None)(0)
    loss, stats = _task(world, student, _distiller(teacher, kd_weight=0.0))(0)
    assert torch.equal(loss, plain_loss) and not any("kd_" in k for k in stats)
    for switches in ({"txt": False}, {"pano": False, "fuse": False}, {}):
        loss, stats = _task(world, student, _distiller(teacher, kd_weight=0.5, **switches))(0)
        on = [t for t in TERMS if switches.get(t, True)]
        assert sorted(k for k in stats if "kd_" in k) == sorted(f"teacher_kd_{t}" for t in on)
        expected = plain_loss + 0.5 * sum(stats[f"teacher_kd_{t}"] for t in on)
        assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)


def test_no_nan_where_the_fused_logits_are_minus_infinity(world):
    recorder = Recorder(_distiller(_policy("tiny-teacher", seed=2), kd_weight=1.0, temperature=2.0))
    student = _policy()
    task = _task(world, student, recorder, batch=4)
    task.train()
    loss, _ = task(0)
    loss.backward()
    assert any(torch.isinf(logits).any() for logits in recorder.logits)   # visited nodes were masked
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)
    assert all(torch.isfinite(p.grad).all() for p in recorder.distiller.projections.parameters())


def test_a_stage2_step_lowers_the_distillation_terms(world):
    """Steps on the distillation loss alone: every term falls. The teacher first learns the batch a
    little (a random one gives every node about the same logit: nothing to distil in L_fuse)."""
    teacher = _policy("tiny-teacher", seed=2)
    lesson = _task(world, teacher, None)
    optimizer = torch.optim.AdamW(teacher.parameters(), lr=3e-3)
    for _ in range(8):
        loss, _ = lesson(1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    recorder = Recorder(_distiller(teacher, kd_weight=1.0))
    task = _task(world, _policy(), recorder)
    task.train()
    optimizer = torch.optim.AdamW(task.parameters(), lr=3e-3)
    history = []
    for _ in range(12):
        recorder.parts.clear()
        _, stats = task(1)                                            # the same teacher-forced batch
        optimizer.zero_grad()
        sum(recorder.parts).backward()
        optimizer.step()
        history.append(stats)
    for term in TERMS:
        first, last = history[0][f"teacher_kd_{term}"], history[-1][f"teacher_kd_{term}"]
        assert last < 0.9 * first, (term, first, last)


def test_the_teacher_is_frozen_and_out_of_the_optimiser(world):
    teacher = _policy("tiny-teacher", seed=2)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    task = _task(world, _policy(), _distiller(teacher, kd_weight=1.0))
    task.train()
    assert not teacher.training
    loss, _ = task(0)
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    optimizer = build_optimizer(task, FinetuneConfig().optim)
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert {id(p) for p in task.extra_loss.projections.parameters()} <= optimised
    assert not optimised & {id(p) for p in teacher.parameters()}
    optimizer.step()
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def _config(world: Path, teacher: Path, steps: int, **changes) -> DistillFinetuneConfig:
    return DistillFinetuneConfig(world=str(world), preset="tiny-student", teacher=str(teacher), kd_weight=0.5,
                          batch_size=2, max_steps=5, train_alg="dagger", eval_splits=["val_unseen"], eval_limit=2,
                          **NO_DROPOUT, loop=LoopConfig(steps=steps, eval_every=0, save_every=1, log_every=1),
                          **changes)


def test_checkpoints_hold_the_projections_in_last_only_and_resume_keeps_them(world, tmp_path):
    save_pretrained(_policy("tiny-teacher", seed=2), tmp_path / "teacher")
    run_distill_finetune(_config(world, tmp_path / "teacher", 4), tmp_path / "straight", progress=False)
    run_distill_finetune(_config(world, tmp_path / "teacher", 2), tmp_path / "resumed", progress=False)
    run_distill_finetune(_config(world, tmp_path / "teacher", 4), tmp_path / "resumed", progress=False)
    a = load_file(str(tmp_path / "straight" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "last" / "model.safetensors"))
    assert {k for k in a if not k.startswith("policy.")} == {"extra_loss.projections.maps.text.weight",
                                                             "extra_loss.projections.maps.panorama.weight"}
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    best = load_file(str(tmp_path / "straight" / "best" / "model.safetensors"))
    assert set(best) == {k[len("policy."):] for k in a if k.startswith("policy.")}
    assert from_pretrained(tmp_path / "straight" / "best").config.hidden_size == 24


def test_finetune_command_flags(world, tmp_path, capsys):
    save_pretrained(_policy("tiny-teacher", seed=2), tmp_path / "teacher")
    base = ["finetune", "--world", str(world), "--out", str(tmp_path / "run"), "--set", "preset=tiny-student",
            "--set", "loop.steps=1", "--set", "batch_size=2", "--set", "max_steps=4", "--set", "eval_limit=2",
            "--set", "eval_splits=[val_unseen]", "--set", "train_alg=imitation", "--quiet"]
    assert main(base + ["--teacher", str(tmp_path / "teacher"), "--kd-temperature", "0"]) == 2
    assert "kd_temperature" in capsys.readouterr().err
    assert main(base + ["--teacher", str(tmp_path / "teacher"), "--kd-weight", "0.5", "--no-kd-pano"]) == 0
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "kd_weight: 0.5" in saved and "kd_pano: false" in saved and "kd_txt: true" in saved
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert "train/teacher_kd_fuse" in row and "train/teacher_kd_txt" in row and "train/teacher_kd_pano" not in row


def test_the_full_size_pair_runs_both_stages(world):
    """duet-base (180M) -> minivln (21M): one stage-1 and one stage-2 step on a single episode."""
    torch.set_num_threads(1)
    teacher = FrozenTeacher(_policy("duet-base"))
    episodes = load_episodes(WorldPaths(world), "r2r", "train")
    env = build_env(EvalSpec(world, "r2r", "train"), episodes)
    torch.manual_seed(0)
    model = DuetPretrainModel(preset("minivln", image_feat_size=DIM, **NO_DROPOUT), 42)
    cfg = DistillPretrainConfig(world=str(world), preset="minivln", teacher="duet-base", batch_size=1,
                                max_traj_nodes=3, mix_ratio=MixRatio(mlm=0.0, mrc=0.0, sap=1.0, og=0.0))
    stage1 = DistillPretrainTask(model, cfg, episodes, env, D.DistInfo(), teacher)
    loss, scalars = stage1(0)
    loss.backward()
    assert torch.isfinite(loss) and all(scalars[f"kd_{t}"] > 0 for t in ("embedding", "attention", "hidden"))
    assert stage1.projections["language_hidden"].weight.shape == (768, 312)
    stage2 = _task(world, model.to_policy(), FinetuneDistiller(teacher, 312, max_steps=6, kd_weight=0.1), batch=1)
    loss, stats = stage2(0)
    loss.backward()
    assert torch.isfinite(loss) and stats["teacher_kd_fuse"] > 0 and stats["teacher_kd_txt"] > 0
    assert all(p.grad is None for p in teacher.policy.parameters())
