"""`minivln bench --place`: new place -> goal per extractor variant, with agreement against the trained features."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minivln_core.cli import main
from minivln_core.data.synth.config import SynthConfig
from minivln_core.errors import ConfigError
from minivln_core.experiments.place_bench import PlaceBenchConfig, fastest_meeting_bar
from minivln_core.perception.config import parse_variant
from minivln_core.experiments.tiny_demo import build_tiny_demo
from minivln_core.perception.config import ExtractorConfig
from minivln_core.perception.variant_choice import choose_variant

DIM = 16
WORLD = SynthConfig(houses=3, seed=5, floors=(1, 1), rooms_per_floor=(3, 4), paths_per_house=3, reverie_per_house=1,
                    feature_dim=DIM, path_hops=(2, 4), path_length=(2.0, 20.0))
EXTRACTOR = ExtractorConfig(image_size=32, patch_size=8, hidden_size=DIM, num_layers=2, num_heads=2,
                            intermediate_size=32, seed=2)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, Path]:
    return build_tiny_demo(tmp_path_factory.mktemp("place"), WORLD, EXTRACTOR, "ckpt")


def test_variant_names():
    assert parse_variant("onnx-int8") == ("onnx", "int8", None)
    assert parse_variant("torch-fp32:runs/vit4/student") == ("torch", "fp32", "runs/vit4/student")
    for bad in ("onnx-bf16", "tf-fp32", "torch", "torch-fp16", "torch-fp32:"):
        with pytest.raises(ConfigError, match="variants"):
            PlaceBenchConfig(world="w", variants=[bad])


def test_the_fastest_variant_that_keeps_the_decisions():
    rows = {"a": {"place": {"median_ms": 900.0}, "agreement": {"agreement": 0.995}},
            "b": {"place": {"median_ms": 400.0}, "agreement": {"agreement": 0.97}},
            "c": {"place": {"median_ms": 600.0}, "agreement": {"agreement": 1.0}},
            "d": {"place": {"median_ms": 100.0}}}
    assert fastest_meeting_bar(rows) == "c"
    assert fastest_meeting_bar({"d": rows["d"]}) is None


def test_place_bench_times_every_variant_and_scores_agreement(demo, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MINIVLN_CACHE", str(tmp_path / "cache"))
    world, ckpt = demo
    out = tmp_path / "place.json"
    args = ["bench", "--place", "--out", str(out), "--set", f"world={world}", "--set", f"checkpoint={ckpt}",
            "--set", "variants=[torch-fp32,torch-int8,torch-bf16]", "--set", "places=3", "--set", "rounds=2",
            "--set", "threads=1", "--set", "max_steps=6", "--set", "score_sr=true"]
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 0
    table = out.with_suffix(".md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "median ms" not in line]
    assert report["cpu"]["model"] in table and "decision agreement" in table and len(rows) == 3
    assert [row.split(" | ")[0].strip("|* ") for row in rows] == ["torch-fp32", "torch-int8", "torch-bf16"]
    assert report["cpu"]["model"] and "avx512_bf16" in report["cpu"]["flags"] and report["places"] == 3
    for spec, row in report["variants"].items():
        assert row["place"]["n"] == 6 and row["policy"]["n"] == 6, spec
        assert row["place"]["median_ms"] > row["policy"]["median_ms"] > 0, spec     # a new place costs perception
        assert 0.0 <= row["agreement"]["agreement"] <= 1.0 and row["agreement"]["steps"] > 0
        assert 0.0 <= row["sr"] <= 100.0
        flipped = row["agreement"]["steps"] - row["agreement"]["agreeing_steps"]
        assert len(row["agreement"]["disagreement_margins"]) == flipped, spec
        assert f"| {flipped} flips" in table, spec
    fp32 = report["variants"]["torch-fp32"]
    # the fp32 extractor recomputes the training features from the robot's panoramas: same decisions
    assert fp32["feature_rel_error_median"] < 1e-4 and fp32["agreement"]["agreement"] == 1.0
    assert report["variants"]["torch-int8"]["feature_rel_error_median"] > fp32["feature_rel_error_median"]
    text = capsys.readouterr().out
    assert "new place -> goal" in text and "torch-int8" in text and "fastest variant" in text
    # the measurement is kept for the navigator's extractor_variant=auto on this machine
    assert report["remembered_in"] and Path(report["remembered_in"][0]).is_relative_to(tmp_path / "cache")
    assert report["fastest_meeting_bar"] and choose_variant(ckpt).spec == report["fastest_meeting_bar"]


def test_a_distilled_extractor_is_a_variant(demo, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIVLN_CACHE", str(tmp_path / "cache"))
    world, ckpt = demo
    student = tmp_path / "vit"
    assert main(["distill-vit", "--world", str(world), "--out", str(student), "--quiet", "--set", "layers=1",
                 "--set", "loop.steps=10", "--set", "batch_size=8", "--set", "views_per_viewpoint=2"]) == 0
    out = tmp_path / "place.json"
    assert main(["bench", "--place", "--out", str(out), "--set", f"world={world}", "--set", f"checkpoint={ckpt}",
                 "--set", f"variants=[torch-fp32,torch-fp32:{student / 'student'}]", "--set", "places=2",
                 "--set", "rounds=1", "--set", "threads=1", "--set", "max_steps=6", "--set", "agreement_limit=4"]) == 0
    rows = json.loads(out.read_text())["variants"]
    small = rows[f"torch-fp32:{student / 'student'}"]
    table = out.with_suffix(".md").read_text()
    assert "torch-fp32:vit" in table and str(student) not in table     # the run's name, not the long path
    assert small["agreement"]["episodes"] == 4 and small["feature_rel_error_median"] > 0
