"""The main job end to end on a tiny generated world (the README's first command, scaled down)."""

from __future__ import annotations

import json


from minivln_core.cli import main

TINY = ["--set", "world.houses=3", "--set", "world.paths_per_house=6", "--set", "world.reverie_per_house=4",
        "--set", "world.feature_dim=32", "--set", "eval_limit=6", "--set", "teacher_preset=tiny-teacher",
        "--set", "student_preset=tiny-student"]


def test_pipeline_writes_a_report_with_expert_and_policies(tmp_path, capsys):
    assert main(["pipeline", "--out", str(tmp_path), *TINY]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    rows = report["results"]
    assert [r["split"] for r in rows] == ["val_seen"] * 3 + ["val_unseen"] * 3
    for r in rows:
        assert r["num_episodes"] == 6
        if r["policy"] == "shortest-path expert":
            assert r["sr"] == 100.0 and r["spl"] == 100.0
    assert (tmp_path / "report.md").read_text().startswith("# MiniVLN main job")
    assert (tmp_path / "eval" / "student-untrained_val_unseen_results.json").exists()
    assert "| shortest-path expert | val_unseen |" in capsys.readouterr().out
    # A second run reuses the world generated from the same config.
    stamp = (tmp_path / "world" / "world.json").stat().st_mtime_ns
    assert main(["pipeline", "--out", str(tmp_path), *TINY]) == 0
    assert (tmp_path / "world" / "world.json").stat().st_mtime_ns == stamp


def test_pipeline_rejects_unknown_keys(tmp_path, capsys):
    assert main(["pipeline", "--out", str(tmp_path), "--set", "world.housez=3"]) == 2
    assert "world.housez" in capsys.readouterr().err
