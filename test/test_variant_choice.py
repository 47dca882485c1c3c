"""`extractor_variant: auto`: the fastest extractor variant measured to keep a checkpoint's decisions on this CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minivln_core.errors import DataError
from minivln_core.perception.config import ExtractorConfig
from minivln_core.perception.variant_choice import (RECORD_FILE, append_record, apply_variant, cache_file,
                                                     checkpoint_digest, choose_variant, remember)
from minivln_core.provenance import CPU_FLAGS, cpu_info

ZEN4 = {"model": "AMD EPYC 9R14", "cores": 2, "flags": {f: f != "amx_bf16" and f != "amx_int8" for f in CPU_FLAGS}}
XEON = {"model": "Intel Xeon Platinum 8488C", "cores": 2, "flags": {f: True for f in CPU_FLAGS}}
OTHER_ZEN4 = dict(ZEN4, model="AMD EPYC 9654")


@pytest.fixture
def ckpt(tmp_path) -> Path:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights v1")
    (folder / "extractor.json").write_text('{"backend": "vit"}')
    return folder


def record(ckpt: Path, cpu: dict, measured: str, **variants: tuple[float, float | None]) -> dict:
    return {"checkpoint_digest": checkpoint_digest(ckpt), "cpu": cpu, "threads": 2, "measured": measured,
            "fastest_meeting_bar": None,
            "variants": {spec.replace("_", "-", 1): {"median_ms": ms, "agreement": agree}
                         for spec, (ms, agree) in variants.items()}}


def test_no_measurement_runs_as_recorded(ckpt, tmp_path):
    choice = choose_variant(ckpt, ZEN4, cache_dir=tmp_path / "cache")
    assert choice.spec == "" and "no place measurement" in choice.reason and ZEN4["model"] in choice.reason


def test_the_fastest_variant_that_keeps_the_decisions_on_this_cpu(ckpt, tmp_path):
    cache = tmp_path / "cache"
    digest = checkpoint_digest(ckpt)
    append_record(cache_file(digest, cache), record(ckpt, ZEN4, "2026-12-01T10:00:00",
                                                   torch_fp32=(8000.0, 1.0), torch_bf16=(2500.0, 0.995),
                                                   onnx_int8=(2000.0, 0.97), torch_int8=(2600.0, None)))
    choice = choose_variant(ckpt, ZEN4, cache_dir=cache)
    assert choice.spec == "torch-bf16"          # onnx-int8 is faster but changes 3% of the decisions
    assert "this CPU model" in choice.reason and "2500 ms" in choice.reason
    # a Zen 4 of another model: the same flags, so the same choice; a CPU with other flags: no measurement
    assert choose_variant(ckpt, OTHER_ZEN4, cache_dir=cache).spec == "torch-bf16"
    assert "same bf16/int8 flags" in choose_variant(ckpt, OTHER_ZEN4, cache_dir=cache).reason
    assert choose_variant(ckpt, XEON, cache_dir=cache).spec == ""
    # the newest measurement on this model wins over older ones
    append_record(cache_file(digest, cache), record(ckpt, ZEN4, "2026-12-02T10:00:00",
                                                   torch_fp32=(8000.0, 1.0), onnx_int8=(2100.0, 1.0)))
    assert choose_variant(ckpt, ZEN4, cache_dir=cache).spec == "onnx-int8"


def test_records_shipped_in_the_checkpoint_and_stale_ones(ckpt, tmp_path):
    cache = tmp_path / "cache"
    student = tmp_path / "vit4"
    append_record(ckpt / RECORD_FILE, record(ckpt, XEON, "2026-12-01T10:00:00", torch_fp32=(6000.0, 1.0),
                                             **{"onnx_int8:" + str(student): (500.0, 0.999)},
                                             torch_bf16=(1500.0, 0.999)))
    # a distilled extractor's folder that is not on this machine is skipped
    assert choose_variant(ckpt, XEON, cache_dir=cache).spec == "torch-bf16"
    student.mkdir()
    assert choose_variant(ckpt, XEON, cache_dir=cache).spec == f"onnx-int8:{student}"
    # new weights: the measurement no longer applies
    (ckpt / "model.safetensors").write_bytes(b"weights v2")
    assert choose_variant(ckpt, XEON, cache_dir=cache).spec == ""


def test_bad_record_file_is_named(ckpt, tmp_path):
    (ckpt / RECORD_FILE).write_text('{"not": "a list"}')
    with pytest.raises(DataError, match=RECORD_FILE):
        choose_variant(ckpt, ZEN4, cache_dir=tmp_path / "cache")


def test_remember_keeps_the_newest_records(ckpt, tmp_path):
    report = {"cpu": ZEN4, "threads": 2, "fastest_meeting_bar": "torch-int8",
              "variants": {"torch-int8": {"place": {"median_ms": 100.0}, "agreement": {"agreement": 1.0}},
                           "torch-fp32": {"place": {"median_ms": 300.0}}}}
    for _ in range(25):
        paths = remember(ckpt, report, cache_dir=tmp_path / "cache", in_checkpoint=True)
    assert paths[1] == ckpt / RECORD_FILE
    for path in paths:
        records = json.loads(path.read_text())
        assert len(records) == 20 and records[-1]["variants"]["torch-fp32"]["agreement"] is None
    assert choose_variant(ckpt, ZEN4, cache_dir=tmp_path / "cache").spec == "torch-int8"


def test_apply_variant_is_what_the_node_and_replay_run(ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIVLN_CACHE", str(tmp_path / "cache"))
    base = ExtractorConfig(image_size=32, patch_size=8, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32)
    assert apply_variant(ckpt, base, "") == (base, "as recorded with the checkpoint (extractor_variant is empty)")
    ran, reason = apply_variant(ckpt, base, "onnx-int8")
    assert (ran.runtime, ran.precision, reason) == ("onnx", "int8", "onnx-int8")
    ran, reason = apply_variant(ckpt, base, "auto")                  # nothing measured: as recorded, and why
    assert ran == base and "no place measurement" in reason
    remember(ckpt, {"cpu": cpu_info(), "threads": 2, "fastest_meeting_bar": "torch-bf16",
                    "variants": {"torch-bf16": {"place": {"median_ms": 10.0}, "agreement": {"agreement": 1.0}}}})
    ran, reason = apply_variant(ckpt, base, "auto")
    assert ran.precision == "bf16" and reason.startswith("torch-bf16: the fastest variant")
