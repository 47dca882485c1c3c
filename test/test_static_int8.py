"""Static (calibrated) int8 vs dynamic int8 of the view extractor (experiments/static_int8.py)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from minivln_core.config import to_dict
from minivln_core.errors import ConfigError
from minivln_core.experiments.static_int8 import StaticInt8Config, lines, run_static_int8
from minivln_core.perception.config import ExtractorConfig

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TINY = ExtractorConfig(image_size=32, patch_size=16, hidden_size=32, num_layers=2, num_heads=2,
                       intermediate_size=64, seed=0)


def _tiny_onnx(tmp_path):
    """Any small ONNX graph, to open a session with."""
    import torch

    path = tmp_path / "linear.onnx"
    with torch.no_grad():
        torch.onnx.export(torch.nn.Linear(4, 2).eval(), (torch.zeros(1, 4),), str(path), dynamo=True, verbose=False)
    return path


def _views(path, crop=32, n_train=16, n_val=6):
    """A view dataset as distill-vit writes it: smooth random crops (real views are smooth, not noise)."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for split, n in (("train", n_train), ("val", n_val)):
            low = rng.integers(0, 256, (n, 4, 4, 3)).astype(np.float32)
            crops = np.repeat(np.repeat(low, crop // 4, 1), crop // 4, 2).astype(np.uint8)   # (n, S, S, 3)
            g = f.create_group(split)
            g["crops"] = crops
            g["targets"] = rng.normal(size=(n, TINY.hidden_size)).astype(np.float32)
            g["keys"] = np.array([f"scan_vp{i}/{i % 36}".encode() for i in range(n)])
        f.attrs["extractor_config"] = json.dumps(to_dict(TINY))
    return path


def test_static_int8_is_compared_with_dynamic_and_fp32(tmp_path):
    from minivln_core import onnx_cache

    onnx_cache.session(_tiny_onnx(tmp_path), 1)   # the process-wide pool exists first, as in a long-lived process
    cfg = StaticInt8Config(views=str(_views(tmp_path / "views.h5")), calibration_views=8, test_views=6, rounds=2,
                           threads=1, onnx_dir=str(tmp_path / "onnx"))
    report = run_static_int8(cfg, tmp_path / "static.json")
    rows = report["variants"]
    assert list(rows) == ["fp32", "int8", "int8-static"]
    assert rows["fp32"]["rel_error"] == pytest.approx(0.0, abs=1e-6)
    for name in ("int8", "int8-static"):
        # quantised, so not bit-equal to fp32, yet the same features in substance
        assert 0 < rows[name]["rel_error"] < 0.3, (name, rows[name])
        assert rows[name]["min_cos"] > 0.9
        assert rows[name]["median_ms"] > 0
    assert report["calibration_views"] == 8 and report["cpu"]["model"]
    static = list((tmp_path / "onnx").glob("vit-*-int8static-minmax-8.onnx"))
    assert len(static) == 1
    stamp = static[0].stat().st_mtime_ns
    again = run_static_int8(cfg)                                     # cached: not quantised twice
    assert static[0].stat().st_mtime_ns == stamp and again["quantise_seconds"] == 0
    assert json.loads((tmp_path / "static.json").read_text())["variants"]["int8-static"]["rel_error"] > 0
    table = lines(report)
    assert table[-1].startswith("| int8-static |") and len(table) == 7


def test_bad_settings_are_named(tmp_path):
    with pytest.raises(ConfigError, match="views"):
        StaticInt8Config().validate()
    with pytest.raises(ConfigError, match="method"):
        StaticInt8Config(views="x.h5", method="kl").validate()


def test_the_command_line_names_a_missing_file(tmp_path):
    from minivln_core.errors import DataError
    from minivln_core.experiments.static_int8 import main

    with pytest.raises(DataError, match="missing.h5"):
        main(["--views", str(tmp_path / "missing.h5"), "--set", "rounds=1"])
