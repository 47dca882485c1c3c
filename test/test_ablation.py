"""`minivln ablation`: a tiny end-to-end run writes the report and resumes without retraining; the
variants, goals and table follow the paper's Tables III and V."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from minivln_core.cli import main
from minivln_core.data.synth import SynthConfig, generate_world
from minivln_core.experiments.distill_ablation import AblationBudget, AblationConfig, goals, render_ablation_table, variants
from minivln_core.errors import ConfigError
from minivln_core.models import DuetPolicy, preset
from minivln_core.models.checkpoint import save_pretrained
from minivln_core.perception.variant_choice import checkpoint_digest

DIM = 16
TINY = ["--budget", "smoke", "--set", "student_preset=tiny-student", "--set", "max_steps=5",
        "--set", "splits=[val_unseen]", "--set", "pretrain.eval_splits=[]", "--set", "finetune.eval_splits=[]",
        "--set", "bench.steps=4", "--set", "bench.warmup=1", "--set", "bench.min_nodes=2",
        "--set", "bench.threads=1", "--set", "threads=1", "--quiet"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ablation_world")
    generate_world(root, SynthConfig(houses=3, seed=6, paths_per_house=6, reverie_per_house=4, feature_dim=DIM))
    return root


def test_a_tiny_ablation_writes_its_report_and_resumes(world, tmp_path, capsys):
    teacher = DuetPolicy(preset("tiny-teacher", image_feat_size=DIM))
    save_pretrained(teacher, tmp_path / "teacher")                    # reused teacher, as the pipeline does
    out = tmp_path / "ablation"
    args = ["ablation", "--world", str(world), "--out", str(out), "--teacher", str(tmp_path / "teacher"), *TINY]
    assert main(args) == 0
    report = json.loads((out / "ablation.json").read_text())
    rows = report["results"]
    assert [r["id"] for r in rows] == ["teacher", "#1", "#2", "#3", "#4"]
    assert [(r["pretrain_kd"], r["finetune_kd"]) for r in rows[1:]] == [(True, True), (True, False),
                                                                       (False, True), (False, False)]
    assert all(r["split"] == "val_unseen" and r["num_episodes"] == 4 for r in rows)
    assert rows[0]["params"] == teacher.num_parameters() > rows[1]["params"]
    assert all(r["step_ms"] > 0 for r in rows) and report["speedup"] > 0
    assert set(report["goals"]["val_unseen"]) >= {"reaches_97pct_of_teacher", "beats_no_kd_by_3",
                                                  "both_ge_single_ge_none"}
    assert report["student"]["shape"] == "24 wide, 4 heads, 1 / 1 / 1 layers" and not report["teacher"]["trained_here"]
    # With only a fine-tuned teacher given, it is stage 1's teacher too.
    assert report["teacher"]["checkpoint"] == report["teacher"]["pretrain_checkpoint"] == str(tmp_path / "teacher")
    assert report["teacher"]["digest"] == report["teacher"]["pretrain_digest"] == checkpoint_digest(tmp_path / "teacher")
    md = (out / "ablation.md").read_text()
    assert "| #1 | #1 student, both stages | ✓ | ✓ | 0.1 | val_unseen |" in md and "## Goals" in md
    assert "scored on 4 instructions per split, spread over its houses." in md      # the smoke budget's eval_limit
    fraction = report["results"][1]["params"] / report["results"][0]["params"]
    assert f"{fraction:.0%} of the teacher's parameters (the paper's: 12%)" in md
    assert (out / "ablation.png").stat().st_size > 1000
    for name in ("two-stage", "pretrain-kd", "finetune-kd", "no-kd"):
        assert (out / "student" / name / "best" / "model.safetensors").exists()
    # The stage-1 student distilled the given teacher; the plain one did not.
    assert "kd_hidden" in (out / "student" / "distill-pretrain" / "metrics.jsonl").read_text()
    assert "kd_hidden" not in (out / "student" / "pretrain" / "metrics.jsonl").read_text()
    assert "teacher_kd_fuse" in (out / "student" / "finetune-kd" / "metrics.jsonl").read_text()
    assert "teacher_kd_fuse" not in (out / "student" / "pretrain-kd" / "metrics.jsonl").read_text()
    assert "| teacher | teacher |" in capsys.readouterr().out
    # A rerun trains and scores nothing again.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")}
    stamps.update({p: p.stat().st_mtime_ns for p in (out / "eval").rglob("*_scores.json")})
    assert main(args) == 0
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}
    assert json.loads((out / "ablation.json").read_text())["results"] == rows


def test_variants_follow_tables_three_and_five():
    cfg = AblationConfig(kd_weight_sweep=[0.01, 0.1, 1.0])
    rows = variants(cfg)
    assert [(v.id, v.pretrain_kd, v.finetune_kd, v.kd_weight) for v in rows] == [
        ("#1", True, True, 0.1), ("#2", True, False, None), ("#3", False, True, 0.1), ("#4", False, False, None),
        ("#1@0.01", True, True, 0.01), ("#1@1", True, True, 1.0)]
    with pytest.raises(ConfigError, match="kd_weight"):
        AblationConfig(kd_weight_sweep=[0.0]).validate()


def test_table_four_switches_each_stage_two_term_off(tmp_path, monkeypatch):
    from minivln_core.experiments import distill_ablation

    cfg = AblationConfig(term_ablation=True)
    extra = variants(cfg)[4:]
    assert [(v.id, v.off, v.kd_weight) for v in extra] == [("#1-txt", ("txt",), 0.1), ("#1-pano", ("pano",), 0.1),
                                                          ("#1-fuse", ("fuse",), 0.1)]
    ablation = distill_ablation.Ablation(cfg, tmp_path)
    jobs = {job.name: job for job in ablation.jobs()[0]}
    assert jobs["student/two-stage-no-pano"].kwargs["off"] == ("pano",)
    assert jobs["student/two-stage-no-pano"].needs == {"init": "student/distill-pretrain", "teacher": "teacher/finetune"}
    # a shipped teacher is given by name
    named = distill_ablation.Ablation(AblationConfig(teacher="synth60-teacher"), tmp_path).jobs()[1]
    assert named["teacher/finetune"] == named["teacher/pretrain"] and (named["teacher/finetune"] / "card.json").is_file()
    seen = {}
    monkeypatch.setattr(distill_ablation, "run_distill_finetune", lambda c, out, **kw: seen.setdefault(out.name, c))
    ablation.finetune("two-stage-no-fuse", "tiny-student", tmp_path / "init", teacher="t", off=("fuse",))
    ablation.finetune("two-stage", "tiny-student", tmp_path / "init", teacher="t")
    assert (seen["two-stage-no-fuse"].kd_fuse, seen["two-stage-no-fuse"].kd_txt, seen["two-stage-no-fuse"].kd_pano) == (
        False, True, True)
    assert seen["two-stage"].kd_fuse and seen["two-stage"].kd_txt and seen["two-stage"].kd_pano


def _row(name: str, sr: float, split: str = "val_unseen", **extra) -> dict:
    return {"name": name, "id": name, "policy": name, "split": split, "sr": sr, "spl": sr, "ndtw": sr,
            "pretrain_kd": None, "finetune_kd": None, "kd_weight": None, "params": 1, "step_ms": 1.0, **extra}


def test_goals_compare_the_students_as_the_issue_asks():
    met = [_row("teacher", 50.0), _row("two-stage", 49.0), _row("pretrain-kd", 47.0), _row("finetune-kd", 48.0),
           _row("no-kd", 45.0)]
    g = goals(met, ["val_unseen"])["val_unseen"]
    assert g["teacher_sr_ratio"] == pytest.approx(0.98) and g["gain_over_no_kd"] == pytest.approx(4.0)
    assert g["reaches_97pct_of_teacher"] and g["beats_no_kd_by_3"] and g["both_ge_single_ge_none"]
    missed = [_row("teacher", 50.0), _row("two-stage", 46.0), _row("pretrain-kd", 47.0), _row("finetune-kd", 44.0),
              _row("no-kd", 45.0)]
    g = goals(missed, ["val_unseen"])["val_unseen"]
    assert not (g["reaches_97pct_of_teacher"] or g["beats_no_kd_by_3"] or g["both_ge_single_ge_none"])


def test_the_table_adds_grounding_columns_for_reverie():
    plain = render_ablation_table([_row("teacher", 50.0)])
    assert "RGS" not in plain
    grounding = render_ablation_table([_row("teacher", 50.0, rgs=30.0, rgspl=20.0)])
    assert "| RGS | RGSPL |" in grounding and "| 30.0 | 20.0 |" in grounding


def test_runs_side_by_side_give_the_same_students_and_scores(world, tmp_path):
    from safetensors.torch import load_file

    teacher = DuetPolicy(preset("tiny-teacher", image_feat_size=DIM))
    save_pretrained(teacher, tmp_path / "teacher")
    reports = {}
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        assert main(["ablation", "--world", str(world), "--out", str(out), "--teacher", str(tmp_path / "teacher"),
                     "--jobs", str(jobs), *TINY]) == 0
        reports[jobs] = json.loads((out / "ablation.json").read_text())
    assert reports[2]["config"]["jobs"] == 2
    timing = {"step_ms"}
    assert ([{k: v for k, v in r.items() if k not in timing} for r in reports[1]["results"]]
            == [{k: v for k, v in r.items() if k not in timing} for r in reports[2]["results"]])
    for folder in ("pretrain/policy", "distill-pretrain/policy", "two-stage/best", "no-kd/best"):
        one = load_file(tmp_path / "jobs1" / "student" / folder / "model.safetensors")
        two = load_file(tmp_path / "jobs2" / "student" / folder / "model.safetensors")
        assert one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one), folder


def test_jobs_must_be_positive():
    with pytest.raises(ConfigError, match="'jobs'"):
        AblationConfig(jobs=0).validate()


def test_a_teacher_trained_here_gets_its_own_fine_tuning_steps(world, tmp_path):
    out = tmp_path / "ablation"
    assert main(["ablation", "--world", str(world), "--out", str(out), "--set", "teacher_preset=tiny-teacher",
                 "--set", "budget.teacher_finetune_steps=3", *TINY]) == 0
    report = json.loads((out / "ablation.json").read_text())
    assert report["teacher"]["trained_here"] and report["budget"]["teacher_finetune_steps"] == 3
    assert report["teacher"]["checkpoint"] == str(out / "teacher" / "finetune" / "best")
    assert report["teacher"]["pretrain_checkpoint"] == str(out / "teacher" / "pretrain" / "policy")

    def steps(run: str) -> int:
        return json.loads((out / run / "last" / "trainer.json").read_text())["step"]

    # The teacher pretrains like the students (the smoke budget's 2 steps) and fine-tunes for 3.
    assert steps("teacher/pretrain") == steps("student/pretrain") == 2
    assert steps("teacher/finetune") == 3
    assert {steps(f"student/{v}") for v in ("two-stage", "pretrain-kd", "finetune-kd", "no-kd")} == {2}
    assert "the teacher fine-tunes for 3 steps" in (out / "ablation.md").read_text()
    with pytest.raises(ConfigError, match="teacher_finetune_steps"):
        AblationBudget(teacher_finetune_steps=-1).validate()
