"""The main job end to end on a tiny generated world (the README's first command, scaled down)."""

from __future__ import annotations

import json

from minivln_core.cli import main

TINY = ["--set", "world.houses=3", "--set", "world.paths_per_house=6", "--set", "world.reverie_per_house=4",
        "--set", "world.feature_dim=16", "--set", "eval_limit=4", "--set", "teacher_preset=tiny-teacher",
        "--set", "student_preset=tiny-student", "--set", "extractor.image_size=32", "--set", "extractor.hidden_size=16",
        "--set", "extractor.num_layers=1", "--set", "extractor.num_heads=2", "--set", "extractor.intermediate_size=32",
        "--set", "pretrain.loop.steps=2", "--set", "pretrain.batch_size=2", "--set", "pretrain.eval_limit=2",
        "--set", "finetune.loop.steps=2", "--set", "finetune.batch_size=2", "--set", "finetune.eval_limit=2",
        "--set", "max_steps=5", "--set", "ablation.budget.pretrain_steps=2", "--set", "ablation.budget.finetune_steps=2",
        "--set", "ablation.budget.batch_size=2", "--set", "threads=1", "--quiet"]


def test_pipeline_writes_a_report_and_resumes(tmp_path, capsys):
    assert main(["pipeline", "--out", str(tmp_path), *TINY]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    rows = report["results"]
    assert report["features"] == "views_vit"
    # the teacher beside the four students this job distils from it (no untrained stand-in); the
    # tiny world is not the embedded world, so no shipped checkpoint joins the table
    assert [r["split"] for r in rows] == ["val_seen"] * 7 + ["val_unseen"] * 7 and report["shipped"] is None
    policies = [r["policy"] for r in rows[:7]]
    assert policies == ["shortest-path expert", "random walk", "teacher tiny-teacher",
                        *(f"student #{i} {name} (distilled here)" for i, name in
                          enumerate(["two-stage", "pretrain-kd", "finetune-kd", "no-kd"], 1))]
    ablation_rows = json.loads((tmp_path / "ablation" / "ablation.json").read_text())["results"]
    two_stage = next(r for r in ablation_rows if r["id"] == "#1" and r["split"] == "val_unseen")
    assert next(r for r in rows if r["policy"].startswith("student #1") and r["split"] == "val_unseen")["sr"] == \
        two_stage["sr"]
    for r in rows:
        assert r["num_episodes"] == 4
        if r["policy"] == "shortest-path expert":
            assert r["sr"] == 100.0 and r["spl"] == 100.0
    assert (tmp_path / "report.png").stat().st_size > 1000
    assert (tmp_path / "teacher" / "pretrain" / "policy" / "model.safetensors").exists()
    assert (tmp_path / "teacher" / "finetune" / "best" / "model.safetensors").exists()
    assert json.loads((tmp_path / "teacher" / "finetune" / "best" / "extractor.json").read_text())["hidden_size"] == 16
    assert "| shortest-path expert | val_unseen |" in capsys.readouterr().out
    ablation = json.loads((tmp_path / "ablation" / "ablation.json").read_text())
    assert report["ablation"]["goals"] == ablation["goals"] and len(ablation["results"]) == 10
    assert (tmp_path / "ablation" / "student" / "two-stage" / "best" / "extractor.json").exists()
    # A second run reuses the world and the features and resumes (finished) training.
    stamps = [(tmp_path / p).stat().st_mtime_ns for p in ("world/world.json", "world/features/views_vit.h5")]
    assert main(["pipeline", "--out", str(tmp_path), *TINY]) == 0
    assert stamps == [(tmp_path / p).stat().st_mtime_ns for p in ("world/world.json", "world/features/views_vit.h5")]


def test_pipeline_rejects_unknown_keys(tmp_path, capsys):
    assert main(["pipeline", "--out", str(tmp_path), "--set", "world.housez=3"]) == 2
    assert "world.housez" in capsys.readouterr().err
