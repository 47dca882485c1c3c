"""`minivln bench` runs both policies on the same decisions and reports comparable figures."""

from __future__ import annotations

import json

import pytest

from minivln_core.cli import main


def test_bench_reports_step_times_and_speedup(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--teacher-preset", "tiny-teacher", "--student-preset", "tiny-student", "--out", str(out),
                 "--set", "steps=8", "--set", "warmup=1", "--set", "min_nodes=3", "--set", "houses=2",
                 "--set", "threads=1"]) == 0
    result = json.loads(out.read_text())
    for name in ("teacher", "student"):
        assert result[name]["step"]["n"] == 8 and result[name]["step_ms"] > 0 and result[name]["language_ms"] > 0
    assert result["speedup"] == result["teacher"]["step_ms"] / result["student"]["step_ms"]
    assert result["map_nodes"]["median"] >= 3 and result["machine"]["threads"] == 1
    assert out.with_suffix(".png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "faster" in printed
    assert result["student_int8"]["step"]["n"] == 8 and result["int8_speedup"] > 0
    # Default runtime onnx; the torch eager pair is timed too, in a pass of its own.
    assert result["runtime"] == "onnx"
    assert result["speedup_torch"] == result["teacher_torch"]["step_ms"] / result["student_torch"]["step_ms"]
    assert result["student_torch"]["params"] == result["student"]["params"] == result["student_int8"]["params"]
    # The student once more without the teacher between its steps (a robot runs one policy).
    for name in ("student_alone", "student_int8_alone"):
        assert result[name]["step"]["n"] == 8 and result[name]["params"] == result["student"]["params"]
    assert "without the teacher" in printed
    # The headline is each policy timed alone, as a robot runs one
    assert result["teacher_alone"]["params"] == result["teacher"]["params"]
    assert result["speedup_alone"] == result["teacher_alone"]["step_ms"] / result["student_alone"]["step_ms"]
    assert any("each timed alone" in line for line in printed.splitlines())


def test_int8_student_is_timed_and_agrees_with_fp32_on_a_split(tmp_path, capsys):
    # The int8 copy is a real dynamically quantised model (int8 Linear weights), timed in the same run,
    # and its argmax actions are compared with the fp32 student's on every step of a split.
    import torch

    from minivln_core.data.synth import SynthConfig, generate_world
    from minivln_core.eval.agreement import action_agreement
    from minivln_core.eval.evaluate import EvalSpec
    from minivln_core.models import DuetPolicy, preset
    from minivln_core.models.quantize import quantize_int8

    world = tmp_path / "world"
    generate_world(world, SynthConfig(houses=2, paths_per_house=4, reverie_per_house=0, feature_dim=32))
    torch.manual_seed(0)
    student = DuetPolicy(preset("tiny-student", image_feat_size=32)).eval()
    q = quantize_int8(student)
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in q.modules())
    assert not any(type(m) is torch.nn.Linear for m in q.modules())
    spec = EvalSpec(world, "r2r", "val_unseen", batch_size=4, max_steps=6)
    same = action_agreement(student, student, spec)
    assert same["agreement"] == 1.0 and same["steps"] >= same["episodes"] > 0
    assert same["disagreement_margins"] == [] and 0.0 <= same["reference_margin_median"] <= 1.0
    result = action_agreement(student, q, spec)
    assert result["steps"] == same["steps"] and 0.0 <= result["agreement"] <= 1.0
    # A different policy disagrees somewhere: the measure can fail.
    torch.manual_seed(1)
    other = DuetPolicy(preset("tiny-student", image_feat_size=32)).eval()
    differs = action_agreement(student, other, spec)
    assert differs["agreement"] < 1.0
    # every flipped decision has the reference's margin there, each a probability gap in [0, 1]
    assert len(differs["disagreement_margins"]) == differs["steps"] - differs["agreeing_steps"]
    assert all(0.0 <= m <= 1.0 for m in differs["disagreement_margins"])


def test_decision_margins_are_top_two_probability_gaps():
    import torch

    from minivln_core.eval.agreement import decision_margins

    logits = torch.tensor([[0.0, 0.0, -float("inf")], [2.0, 0.0, -float("inf")], [5.0, -float("inf"), -float("inf")]])
    m = decision_margins(logits)
    assert m[0].item() == 0.0                                   # a tie
    assert m[1].item() == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item() * 2 - 1)   # p1 - p2 of two logits
    assert m[2].item() == 1.0                                   # one action left: nothing to flip to
