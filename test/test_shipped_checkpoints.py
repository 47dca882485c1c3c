"""Shipped checkpoints: names resolve everywhere, the shipped ones load and match their cards, export
writes fp16 weights and a card from a scored run (and refuses an unscored one), and the shipped
policy's card metrics are reproduced by evaluating it again."""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from minivln_core.data.synth import SynthConfig, generate_world
from minivln_core.errors import DataError
from minivln_core.eval.evaluate import EvalSpec, evaluate_policy
from minivln_core.eval.agreement import action_agreement
from minivln_core.experiments.export_checkpoint import ExportRequest, export_checkpoint, fp16_round_trip
from minivln_core.models.checkpoint import load_config
from minivln_core.models import preset
from minivln_core.models.loading import load_policy
from minivln_core.models.shipped import ENV, list_shipped, resolve_checkpoint
from minivln_core.paths import CHECKOUT
from minivln_core.train.finetune import FinetuneConfig, run_finetune
from minivln_core.train.optim import OptimConfig
from minivln_core.train.trainer import LoopConfig

REQUIRED = ["embedded-student", "synth60-teacher"]   # what the package must ship (issue 18)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", **extra)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    return env


# -- the shipped ones -----------------------------------------------------------------------------
def test_the_package_ships_its_default_policies():
    names = {s.name for s in list_shipped()}
    assert set(REQUIRED) <= names, names


@pytest.mark.parametrize("shipped", list_shipped(), ids=lambda s: s.name)
def test_a_shipped_checkpoint_loads_and_matches_its_card(shipped):
    card = shipped.card
    assert card and card["name"] == shipped.name and (shipped.path / "card.md").is_file()
    policy = load_policy(shipped.name)                              # by name
    assert sum(p.numel() for p in policy.parameters()) == card["num_parameters"]
    config = load_config(shipped.path)
    arch = card["architecture"]
    assert (config.hidden_size, config.num_l_layers, config.num_pano_layers, config.num_x_layers,
            config.image_feat_size) == (arch["hidden_size"], arch["layers"]["language"], arch["layers"]["panorama"],
                                        arch["layers"]["cross_modal"], arch["image_feat_size"])
    built = preset(card["preset"], card["task"], image_feat_size=config.image_feat_size)   # the card's preset
    assert (built.hidden_size, built.num_l_layers, built.num_x_layers) == (config.hidden_size, config.num_l_layers,
                                                                           config.num_x_layers)
    with safe_open(str(shipped.path / "model.safetensors"), "pt") as f:   # stored fp16 ...
        assert {f.get_slice(k).get_dtype() for k in f.keys()} <= {"F16", "I64", "BOOL"}
    assert all(p.dtype == torch.float32 for p in policy.parameters())      # ... loaded fp32
    assert (shipped.path / "model.safetensors").stat().st_size <= 40 * 2 ** 20
    for split in ("val_seen", "val_unseen"):
        m = card["metrics"][split]
        assert {"policy", "random_walk", "expert"} <= m.keys() and m["expert"]["sr"] == 100.0
    fp16 = card["fp16_check"]
    assert fp16["agreeing_steps"] == fp16["steps"] > 0 and fp16["episodes_fully_agreeing"] == 1.0
    if card["world"]["features"] == "views_vit":
        assert (shipped.path / "extractor.json").is_file()


def test_names_resolve_and_unknown_names_are_clear_errors(tmp_path, monkeypatch):
    folder = tmp_path / "embedded-student"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_checkpoint("embedded-student") == Path("embedded-student")   # a folder wins
    monkeypatch.chdir(CHECKOUT or tmp_path.parent)
    assert resolve_checkpoint("embedded-student").parent.name == "checkpoints"
    assert resolve_checkpoint("runs/x/best") == Path("runs/x/best")             # paths are not names
    with pytest.raises(DataError, match="no shipped checkpoint of that name.*embedded-student"):
        resolve_checkpoint("no-such-policy")


def test_the_navigator_parameter_defaults_to_a_shipped_name_that_resolves():
    pytest.importorskip("rclpy")
    from minivln_ros.params import NavigatorParams, ParamError, validate_navigator

    p = NavigatorParams()
    assert p.checkpoint == "embedded-student"
    validate_navigator(p)                                             # resolves, finds config.json
    with pytest.raises(ParamError, match="no-such-policy"):
        validate_navigator(NavigatorParams(checkpoint="no-such-policy"))


# -- export ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scored_run(tmp_path_factory) -> Path:
    """A tiny fine-tuning run (3 steps) whose last/ is not scored yet."""
    root = tmp_path_factory.mktemp("export")
    world = root / "world"
    generate_world(world, SynthConfig(houses=3, paths_per_house=6, reverie_per_house=0, feature_dim=16))
    cfg = FinetuneConfig(world=str(world), preset="tiny-student", batch_size=4, eval_limit=4, max_steps=6,
                         eval_splits=["val_unseen"], optim=OptimConfig(lr=1e-3, warmup_steps=0),
                         loop=LoopConfig(steps=3, eval_every=0, save_every=3))
    run_finetune(cfg, root / "run", progress=False)
    return root / "run"


def _score(run: Path) -> None:
    for split in ("val_seen", "val_unseen"):
        spec = EvalSpec(run.parent / "world", "r2r", split, 8, 6, 0, "views")   # full splits
        evaluate_policy(load_policy(run / "last"), spec, run / "final", "last", progress=False)


def test_export_refuses_a_run_with_no_scores_then_writes_fp16_and_a_card(scored_run, tmp_path):
    root = tmp_path / "shipped"
    with pytest.raises(DataError, match="no scores for val_seen, val_unseen"):
        export_checkpoint(ExportRequest(scored_run / "last", "tiny-test", root))
    assert not (root / "tiny-test").exists()
    _score(scored_run)
    target = export_checkpoint(ExportRequest(scored_run / "last", "tiny-test", root, "a test",
                                             fp16_check_episodes=8))
    card = json.loads((target / "card.json").read_text())
    scores = json.loads((scored_run / "final" / "last_val_unseen_metrics.json").read_text())
    assert card["metrics"]["val_unseen"]["policy"]["sr"] == round(scores["sr"], 2)
    assert card["metrics"]["val_unseen"]["expert"]["sr"] == 100.0
    assert card["training"]["stages"][-1]["step"] == 3 and card["training"]["wall_seconds"] > 0
    assert card["preset"] == "tiny-student"
    assert card["training"]["provenance"]["cpu"] and card["training"]["provenance"]["commit"]
    fp16 = card["fp16_check"]
    assert fp16["episodes"] == 8 and fp16["agreeing_steps"] == fp16["steps"] > 0
    assert stat.S_IMODE((target / "card.json").stat().st_mode) & 0o044      # readable by others, like open()
    assert "| val_unseen |" in (target / "card.md").read_text()
    # found by name through $MINIVLN_CHECKPOINTS, from the command line
    out = subprocess.run([sys.executable, "-m", "minivln_core", "evaluate", "--checkpoint", "tiny-test",
                          "--world", str(scored_run.parent / "world"), "--split", "val_unseen", "--max-steps", "6",
                          "--out", str(tmp_path / "eval")], env=_env(**{ENV: str(root)}),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    again = json.loads((tmp_path / "eval" / "tiny-test_val_unseen_metrics.json").read_text())
    assert again["num_episodes"] == scores["num_episodes"]
    # replacing needs --replace and a clear gain (or a format change)
    with pytest.raises(DataError, match="exists"):
        export_checkpoint(ExportRequest(scored_run / "last", "tiny-test", root))
    with pytest.raises(DataError, match="not clearly better"):
        export_checkpoint(ExportRequest(scored_run / "last", "tiny-test", root, replace=True))
    export_checkpoint(ExportRequest(scored_run / "last", "tiny-test", root, replace=True, format_change=True))


def test_fp16_round_trip_changes_no_greedy_decision(scored_run):
    policy = load_policy(scored_run / "last")
    spec = EvalSpec(scored_run.parent / "world", "r2r", "val_unseen", 8, 6, 12, "views")
    check = action_agreement(policy, fp16_round_trip(policy), spec)
    assert check["episodes"] == 12 and check["agreeing_steps"] == check["steps"] > 0


# -- the card's metrics, recomputed ---------------------------------------------------------------
def _reproduce_card(name: str, world: Path, features: str, out_dir: Path, n: int = 90) -> None:
    """`minivln evaluate` of a shipped checkpoint on n spread val_unseen episodes of a freshly built world
    lands within 3 standard errors of its card's SR and far above a random walk."""
    card = {s.name: s for s in list_shipped()}[name].card["metrics"]["val_unseen"]
    out = subprocess.run([sys.executable, "-m", "minivln_core", "evaluate", "--checkpoint", name,
                          "--world", str(world), "--features", features, "--split", "val_unseen",
                          "--limit", str(n), "--batch-size", "16", "--out", str(out_dir)], env=_env(),
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    sr = json.loads((out_dir / f"{name}_val_unseen_metrics.json").read_text())["sr"]
    p = card["policy"]["sr"] / 100
    noise = 3 * 100 * math.sqrt(p * (1 - p) / n)          # 3 standard errors of a subset of n episodes
    assert abs(sr - card["policy"]["sr"]) <= noise, (sr, card["policy"]["sr"], noise)
    assert sr > card["random_walk"]["sr"] + 15            # and it navigates: far above a random walk


def test_embedded_student_reproduces_its_card_on_a_spread_subset(embedded_world, tmp_path):
    _reproduce_card("embedded-student", embedded_world, "views_vit", tmp_path)


def test_synth60_teacher_reproduces_its_card_on_a_spread_subset(tmp_path):
    """The card's rebuild command (`minivln synth --houses 60`, ~20 s) gives the world it was trained on."""
    card = {s.name: s for s in list_shipped()}["synth60-teacher"].card
    assert card["world"]["rebuild"] == ["minivln synth --out DIR --houses 60 --seed 0"]
    built = subprocess.run([sys.executable, "-m", "minivln_core", "synth", "--out", str(tmp_path / "world"),
                            "--houses", "60", "--seed", "0"], env=_env(), capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    _reproduce_card("synth60-teacher", tmp_path / "world", "views", tmp_path / "eval")


def test_the_main_job_shows_the_shipped_student_of_its_world_only():
    from dataclasses import replace

    from minivln_core.experiments.pipeline import PipelineConfig, shipped_for

    assert shipped_for(PipelineConfig()) == "embedded-student"        # the embedded world
    assert shipped_for(replace(PipelineConfig(), features="semantic")) is None
