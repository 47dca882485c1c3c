"""Fine-tuning: a tiny iteration, SIGKILL + rerun resumes to the same weights, 2-process DDP
equals one process with the same global batch, and checkpoints half-written are never loaded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from minivln_core.data.synth import SynthConfig, generate_world
from minivln_core.train.batches import global_batch
from minivln_core.train.finetune import FinetuneConfig, run_finetune
from minivln_core.train.state import is_complete

COMMON = ["--set", "preset=tiny-student", "--set", "batch_size=4", "--set", "eval_limit=4",
          "--set", "eval_splits=[val_unseen]", "--set", "loop.eval_every=0", "--set", "loop.log_every=1",
          "--set", "hidden_dropout_prob=0.0", "--set", "attention_probs_dropout_prob=0.0",
          "--set", "feat_dropout=0.0", "--set", "max_steps=6", "--quiet"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    generate_world(root, SynthConfig(houses=3, paths_per_house=8, reverie_per_house=4, feature_dim=16))
    return root


def _env() -> dict:
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    return env


def _finetune_cmd(world: Path, out: Path, steps: int, extra=()) -> list[str]:
    return [sys.executable, "-m", "minivln_core", "finetune", "--world", str(world), "--out", str(out),
            "--set", f"loop.steps={steps}", *COMMON, *extra]


def _torchrun_finetune(world: Path, out: Path, steps: int, extra=()) -> None:
    """`torchrun --nproc_per_node 2 ... finetune` on the tiny settings; fails with the ranks' stderr."""
    torchrun = str(Path(sys.executable).parent / "torchrun")
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "minivln_core", "finetune", "--world",
           str(world), "--out", str(out), "--set", f"loop.steps={steps}", *COMMON, *extra]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "last" / "model.safetensors"))


def test_global_batches_cover_epochs_and_depend_only_on_the_step():
    a = [global_batch(10, 4, s, seed=3) for s in range(5)]
    assert a == [global_batch(10, 4, s, seed=3) for s in range(5)]
    first_epoch = a[0] + a[1] + a[2][:2]
    assert sorted(first_epoch) == list(range(10))


def test_a_tiny_finetuning_run_writes_best_last_logs_and_curves(world, tmp_path):
    cfg = FinetuneConfig(world=str(world), preset="tiny-student", batch_size=2, eval_limit=3,
                         eval_splits=["val_unseen"], max_steps=5)
    cfg = FinetuneConfig(**{**cfg.__dict__, "loop": type(cfg.loop)(steps=3, eval_every=2, save_every=1)})
    summary = run_finetune(cfg, tmp_path / "run", progress=False)
    assert summary["steps"] == 3
    assert is_complete(tmp_path / "run" / "last")
    assert (tmp_path / "run" / "best" / "model.safetensors").exists()
    assert (tmp_path / "run" / "learning_curves.png").stat().st_size > 1000
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("val_unseen/spl" in r for r in rows) and any("train/loss" in r for r in rows)
    results = sorted((tmp_path / "run" / "eval").rglob("policy_val_unseen_results.json"))
    assert results and json.loads(results[-1].read_text())[0]["trajectory"]
    # The resumable last/ (the whole training task) also loads as a policy: the final weights.
    from minivln_core.models.checkpoint import from_pretrained
    from safetensors.torch import load_file

    final = from_pretrained(tmp_path / "run" / "last").state_dict()
    stored = load_file(str(tmp_path / "run" / "last" / "model.safetensors"))
    assert final.keys() == {k[len("policy."):] for k in stored if k.startswith("policy.")}
    assert all(torch.equal(v, stored[f"policy.{k}"]) for k, v in final.items())


def test_sigkill_then_rerun_resumes_to_the_same_weights(world, tmp_path):
    steps = 6
    straight = tmp_path / "straight"
    subprocess.run(_finetune_cmd(world, straight, steps), env=_env(), check=True, capture_output=True)
    run = tmp_path / "killed"
    cmd = _finetune_cmd(world, run, steps, ["--set", "loop.save_every=1"])
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        trainer = run / "last" / "trainer.json"
        if trainer.exists() and json.loads(trainer.read_text())["step"] >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step_at_kill = json.loads((run / "last" / "trainer.json").read_text())["step"]
    assert 2 <= step_at_kill < steps, "the run finished before it could be killed"
    done = subprocess.run(cmd, env=_env(), check=True, capture_output=True, text=True)
    assert f"from step {step_at_kill}" in done.stderr
    a, b = _weights(straight), _weights(run)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key


def test_a_half_written_checkpoint_is_not_resumed(world, tmp_path):
    run = tmp_path / "run"
    subprocess.run(_finetune_cmd(world, run, 2), env=_env(), check=True, capture_output=True)
    weights = run / "last" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # as if the write died
    assert not is_complete(run / "last")
    done = subprocess.run(_finetune_cmd(world, run, 2), env=_env(), check=True, capture_output=True, text=True)
    assert "not a complete checkpoint" in done.stderr
    assert is_complete(run / "last")


@pytest.mark.skipif(not (Path(sys.executable).parent / "torchrun").exists(), reason="torchrun is not installed")
def test_two_process_gloo_ddp_equals_one_process(world, tmp_path):
    # Imitation (teacher-forced) rollouts: sampled actions would amplify float-level differences
    # between batch shapes into different trajectories, which says nothing about gradient averaging.
    imitation = ["--set", "train_alg=imitation"]
    single = tmp_path / "single"
    subprocess.run(_finetune_cmd(world, single, 3, imitation), env=_env(), check=True, capture_output=True)
    ddp = tmp_path / "ddp"
    _torchrun_finetune(world, ddp, 3, imitation)
    a, b = _weights(single), _weights(ddp)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key


def test_two_process_dagger_reaches_every_parameter_every_step(world, tmp_path):
    """FinetuneTask tells DDP that no parameter goes unused (find_unused_parameters=False): were one
    unused, DDP would fail at the second step. bf16 autocast (`loop.precision`) on the way."""
    _torchrun_finetune(world, tmp_path / "ddp", 3,
                       ["--set", "train_alg=dagger", "--set", "loop.precision=bf16", "--set", "dropout_rng=numpy"])
    assert all(torch.isfinite(v).all() for v in _weights(tmp_path / "ddp").values())


def test_loop_processes_spawns_ranks_that_equal_one_process(world, tmp_path):
    """`loop.processes: 2` (no torchrun): two spawned gloo ranks give the one-process weights."""
    cfg = FinetuneConfig(world=str(world), preset="tiny-student", batch_size=4, eval_limit=4, max_steps=6,
                         eval_splits=["val_unseen"], train_alg="imitation", hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0, feat_dropout=0.0)
    loop = type(cfg.loop)(steps=2, eval_every=0, save_every=2)
    from dataclasses import replace

    one = run_finetune(replace(cfg, loop=loop), tmp_path / "one", progress=False)
    two = run_finetune(replace(cfg, loop=replace(loop, processes=2)), tmp_path / "two", progress=False)
    assert one["steps"] == two["steps"] == 2
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_imitation_learns_to_follow_instructions_it_was_trained_on(world):
    """End-to-end learnability: 8 training episodes are memorised (greedy rollouts reach the goal)."""
    from minivln_core.agent.agent import NavigationAgent
    from minivln_core.agent.rollout import evaluate
    from minivln_core.data.world import WorldPaths, load_episodes
    from minivln_core.eval.evaluate import EvalSpec, build_env
    from minivln_core.train import distributed as D
    from minivln_core.train.finetune import FinetuneTask, build_policy

    cfg = FinetuneConfig(world=str(world), preset="tiny-teacher", train_alg="imitation", batch_size=8, max_steps=8)
    episodes = load_episodes(WorldPaths(world), "r2r", "train")[:8]

    def reached(policy) -> float:
        env = build_env(EvalSpec(world, "r2r", "train", 8, 8), episodes)
        recs = evaluate(NavigationAgent(policy, 8), env, progress=False)
        return sum(r["trajectory"][-1][0] == ep.goal for r, ep in zip(recs, episodes)) / len(episodes)

    torch.manual_seed(0)
    policy = build_policy(cfg, 16)
    task = FinetuneTask(policy, cfg, episodes, build_env(EvalSpec(world, "r2r", "train", 8, 8), episodes),
                        D.DistInfo())
    before = reached(policy)
    optimizer = torch.optim.AdamW(task.parameters(), lr=2e-3)
    for step in range(60):
        task.train()
        loss, _ = task(step)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(task.parameters(), 40.0)
        optimizer.step()
    assert before < 0.5
    assert reached(policy) >= 7 / 8


def test_evaluate_applies_the_ablation_a_policy_was_trained_with(world, tmp_path, monkeypatch):
    # `minivln evaluate --ablation blind|no_language` (scripts/modality_ablation.sh) evaluates on the
    # ablated split: zero view features / empty instructions, as in training with that ablation.
    from minivln_core.cli import main
    from minivln_core.commands import evaluate as evaluate_command
    from minivln_core.eval.evaluate import build_env
    from minivln_core.models import DuetPolicy, preset
    from minivln_core.models.checkpoint import save_pretrained

    torch.manual_seed(0)
    ckpt = tmp_path / "ckpt"
    save_pretrained(DuetPolicy(preset("tiny-teacher", image_feat_size=16)).eval(), ckpt)
    envs = {}

    def capture(model, spec, out_dir, name, progress=True):
        envs[spec.ablation] = build_env(spec)
        return {"sr": 0.0}

    monkeypatch.setattr(evaluate_command, "evaluate_policy", capture)
    for ablation in ("none", "blind", "no_language"):
        assert main(["evaluate", "--checkpoint", str(ckpt), "--world", str(world), "--split", "val_seen",
                     "--ablation", ablation, "--out", str(tmp_path / ablation)]) == 0
    ep = envs["none"].episodes[0]
    plain = envs["none"].features.get(ep.scan, ep.start)
    assert np.abs(plain).sum() > 0 and not np.any(envs["blind"].features.get(ep.scan, ep.start))
    assert envs["blind"].episodes[0].instr_encoding == ep.instr_encoding
    assert len(envs["no_language"].episodes[0].instr_encoding) < len(ep.instr_encoding)


def test_a_policy_on_the_frozen_text_backbone_trains_in_two_ranks_under_bf16(world, tmp_path):
    """The `-minilm` presets: the frozen all-MiniLM-L6-v2 runs in every rank under bf16 autocast, DDP
    sees only the policy's parameters (the projection included), and the checkpoint leaves the
    backbone out and names it."""
    _torchrun_finetune(world, tmp_path / "ddp", 2, ["--set", "preset=minivln-small-minilm", "--set", "train_alg=dagger",
                                                     "--set", "loop.precision=bf16"])
    from minivln_core.models.checkpoint import from_pretrained

    weights = _weights(tmp_path / "ddp")
    assert {k for k in weights if "backbone" in k} == {"policy.embeddings.backbone_linear.weight",
                                                       "policy.embeddings.backbone_linear.bias"}
    policy = from_pretrained(tmp_path / "ddp" / "last")  # strict: exactly the policy's own weights
    assert policy.config.text_backbone == "all-MiniLM-L6-v2"
    assert all(torch.isfinite(v).all() for v in weights.values())
