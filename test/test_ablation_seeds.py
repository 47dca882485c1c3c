"""`minivln ablation-seeds`: mean +- std over seeds, goals on the means, paired differences, and
refusal of runs that are not the same experiment."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from minivln_core.cli import main
from minivln_core.experiments.distill_ablation_seeds import load_reports, summarise
from minivln_core.errors import ConfigError, DataError

NAMES = [("teacher", "teacher", None, None), ("#1", "two-stage", True, True), ("#2", "pretrain-kd", True, False),
         ("#3", "finetune-kd", False, True), ("#4", "no-kd", False, False)]


def _report(seed: int, sr: dict[str, float], **config) -> dict:
    rows = []
    for split in ("val_seen", "val_unseen"):
        for rid, name, pt, ft in NAMES:
            rows.append({"id": rid, "policy": f"{rid} {name}", "name": name, "pretrain_kd": pt, "finetune_kd": ft,
                         "kd_weight": 0.1 if ft else None, "split": split, "params": 100 if rid == "teacher" else 10,
                         "step_ms": 5.0 + seed, "sr": sr[name] + (split == "val_unseen"), "spl": sr[name] / 2,
                         "ndtw": 50.0})
    budget = {"pretrain_steps": 1000, "finetune_steps": 500, "batch_size": 16, "seed": seed}
    return {"title": "t", "teacher": {"checkpoint": "T", "shape": "192 wide", "trained_here": False},
            "student": {"preset": "minivln-small", "shape": "312 wide"}, "budget": budget,
            "config": {"world": "W", "teacher": "T", "jobs": 1 + seed, "threads": 1, "budget": budget, **config},
            "results": rows}


def _write(root: Path, report: dict) -> Path:
    root.mkdir(parents=True)
    (root / "ablation.json").write_text(json.dumps(report))
    return root


SR0 = {"teacher": 70.0, "two-stage": 60.0, "pretrain-kd": 55.0, "finetune-kd": 58.0, "no-kd": 50.0}
SR1 = {"teacher": 72.0, "two-stage": 70.0, "pretrain-kd": 59.0, "finetune-kd": 60.0, "no-kd": 58.0}


def test_means_stds_goals_and_paired_differences(tmp_path, capsys):
    runs = [_write(tmp_path / "s0", _report(0, SR0)), _write(tmp_path / "s1", _report(1, SR1))]
    summary = summarise(load_reports(runs))
    assert summary["seeds"] == [0, 1]
    row = next(r for r in summary["results"] if r["name"] == "two-stage" and r["split"] == "val_seen")
    assert row["sr"] == 65.0 and row["sr_std"] == pytest.approx(statistics.stdev([60.0, 70.0]))
    assert row["sr_seeds"] == [60.0, 70.0] and row["step_ms"] == 5.5
    paired = summary["two_stage_minus_no_kd_sr"]["val_seen"]
    assert paired["per_seed"] == [10.0, 12.0] and paired["mean"] == 11.0
    goals = summary["goals_on_means"]["val_seen"]
    assert goals["gain_over_no_kd"] == 11.0 and goals["beats_no_kd_by_3"]
    assert goals["teacher_sr_ratio"] == pytest.approx(65.0 / 71.0) and not goals["reaches_97pct_of_teacher"]
    assert goals["both_ge_single_ge_none"]       # 65 >= max(57, 59) and min(57, 59) >= 54

    assert main(["ablation-seeds", str(runs[0]), str(runs[1]), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "ablation_seeds.md").read_text()
    assert "| #1 | #1 two-stage | val_seen | 65.0 +- 7.1 |" in md
    assert "- val_seen: +11.0 +- 1.4 SR points (per seed: +10.0, +12.0)" in md and "## Goals, on the means" in md
    assert (tmp_path / "out" / "ablation_seeds.png").stat().st_size > 1000
    assert json.loads((tmp_path / "out" / "ablation_seeds.json").read_text())["seeds"] == [0, 1]
    assert "65.0 +- 7.1" in capsys.readouterr().out


def test_runs_of_different_experiments_are_refused(tmp_path):
    a = _write(tmp_path / "a", _report(0, SR0))
    b = _write(tmp_path / "b", _report(1, SR1, kd_weight_sweep=[0.01]))
    assert main(["ablation-seeds", str(a), str(b), "--out", str(tmp_path / "o")]) == 2
    with pytest.raises(ConfigError, match=r"b/ablation.json: config key 'kd_weight_sweep' differs"):
        load_reports([a, b])
    budget = _report(1, SR1)
    budget["config"]["budget"] = dict(budget["config"]["budget"], finetune_steps=600)
    c = _write(tmp_path / "c", budget)
    with pytest.raises(ConfigError, match="config key 'budget' differs"):
        load_reports([a, c])
    d = _write(tmp_path / "d", _report(0, SR1))
    with pytest.raises(ConfigError, match=r"different seeds, got \[0, 0\]"):
        load_reports([a, d])


def test_a_key_added_since_an_older_report_compares_as_its_default(tmp_path):
    """A report written before a config key existed ran with its default (finetune.grounding here)."""
    old = _write(tmp_path / "old", _report(0, SR0))
    same = _write(tmp_path / "same", _report(1, SR1, finetune={"grounding": False}))
    assert [r["config"]["budget"]["seed"] for r in load_reports([old, same])] == [0, 1]
    other = _write(tmp_path / "other", _report(1, SR1, finetune={"grounding": True}))
    with pytest.raises(ConfigError, match=r"other/ablation.json: config key 'finetune' differs"):
        load_reports([old, other])
    bad = _write(tmp_path / "bad", _report(1, SR1, finetune={"no_such_key": 1}))
    with pytest.raises(DataError, match="no_such_key"):
        load_reports([old, bad])


def test_missing_or_damaged_reports_name_the_file(tmp_path):
    a = _write(tmp_path / "a", _report(0, SR0))
    with pytest.raises(DataError, match=r"nowhere/ablation.json: cannot read"):
        load_reports([a, tmp_path / "nowhere"])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ablation.json").write_text("{")
    with pytest.raises(DataError, match=r"bad/ablation.json: file is not valid JSON"):
        load_reports([a, bad])
    with pytest.raises(ConfigError, match="at least two"):
        load_reports([a])


def test_reports_with_other_rows_are_refused(tmp_path):
    a = _write(tmp_path / "a", _report(0, SR0))
    fewer = _report(1, SR1)
    fewer["results"] = fewer["results"][:5]
    b = _write(tmp_path / "b", fewer)
    with pytest.raises(DataError, match=r"b/ablation.json: its results list other policies or splits"):
        load_reports([a, b])


def _shared(seed: int, sr: dict[str, float], teacher: str, trained_here: bool) -> dict:
    """A run that trained `teacher` itself, or was given its checkpoints."""
    report = _report(seed, sr)
    report["teacher"] = {"checkpoint": f"{teacher}/finetune/best", "pretrain_checkpoint": f"{teacher}/pretrain/policy",
                         "shape": "192 wide", "trained_here": trained_here}
    given = {"teacher": None, "teacher_pretrain": None} if trained_here else {
        "teacher": f"{teacher}/finetune/best", "teacher_pretrain": f"{teacher}/pretrain/policy"}
    report["config"].update(given)
    report["config"]["budget"] = dict(report["config"]["budget"], teacher_finetune_steps=400 if trained_here else 0)
    return report


def test_seeds_may_share_one_teacher_but_not_use_different_ones(tmp_path):
    a = _write(tmp_path / "a", _shared(0, SR0, str(tmp_path / "a" / "teacher"), trained_here=True))
    b = _write(tmp_path / "b", _shared(1, SR1, str(tmp_path / "a" / "teacher"), trained_here=False))
    summary = summarise(load_reports([a, b]))
    assert summary["shared_teacher"] and summary["seeds"] == [0, 1]
    assert main(["ablation-seeds", str(a), str(b), "--out", str(tmp_path / "out")]) == 0
    assert f"(one teacher for every seed: {tmp_path}/a/teacher/finetune/best)" in (
        tmp_path / "out" / "ablation_seeds.md").read_text()
    # A run given another teacher, or one trained with other settings, is another experiment.
    other = _shared(1, SR1, str(tmp_path / "c" / "teacher"), trained_here=False)
    other["config"]["budget"]["teacher_finetune_steps"] = 400           # only the teacher key differs from a's
    c = _write(tmp_path / "c", other)
    with pytest.raises(ConfigError, match=r"c/ablation.json: config key 'teacher' differs"):
        load_reports([a, c])
    d = _write(tmp_path / "d", _shared(1, SR1, str(tmp_path / "d" / "teacher"), trained_here=True))
    d_report = json.loads((d / "ablation.json").read_text())
    d_report["config"]["budget"]["teacher_finetune_steps"] = 300
    (d / "ablation.json").write_text(json.dumps(d_report))
    with pytest.raises(ConfigError, match=r"d/ablation.json: config key 'budget' differs"):
        load_reports([a, d])
    # Own teachers trained with the same settings at other seeds: the usual seed study.
    e = _write(tmp_path / "e", _shared(1, SR1, str(tmp_path / "e" / "teacher"), trained_here=True))
    assert not summarise(load_reports([a, e]))["shared_teacher"]


def test_one_teacher_is_known_by_its_weights_wherever_it_was_read_from(tmp_path):
    """A clone elsewhere (or a worktree) reads the same shipped teacher from another folder."""
    here, there = _shared(0, SR0, "/clone/a/teacher", False), _shared(1, SR1, "/clone/b/teacher", False)
    there["config"].update(teacher=here["config"]["teacher"], teacher_pretrain=here["config"]["teacher_pretrain"])
    for report in (here, there):
        report["teacher"].update(digest="d1", pretrain_digest="d0")
    runs = [_write(tmp_path / "a", here), _write(tmp_path / "b", there)]
    assert summarise(load_reports(runs))["shared_teacher"]
    there["teacher"]["digest"] = "d2"                                   # other weights in the same place
    (runs[1] / "ablation.json").write_text(json.dumps(there))
    assert not summarise(load_reports(runs))["shared_teacher"]
