"""Static (calibrated) int8 against today's dynamic int8 for the view extractor (issue 21's lever).

Dynamic int8 (`onnx_vit.cached_export(..., "int8")`) quantises every MatMul's weights offline and
each activation per call: a DynamicQuantizeLinear (min/max of the tensor) before every MatMul.
Static int8 fixes the activation ranges once, from calibration images, so those per-call
reductions go away; it also quantises the activation x activation MatMuls of attention, which
dynamic int8 leaves in fp32. Whether that is faster or less faithful on a given CPU is a
measurement, made here on the views of a `minivln distill-vit` view dataset (the robot's own
rendered views): calibration on the first `calibration_views` training crops, error and timing on
`test_views` held-out crops (36 = one panorama), the three graphs timed interleaved over `rounds`.

    python -m minivln_core.experiments.static_int8 --views runs/perception/vit4/views.h5 \
        --out docs/results/static_int8.json [--set calibration_views=64] [--set method=minmax]

The fp32 and dynamic int8 graphs are the extractor's own cached exports; the static graph is
cached beside them (`<kind>-<digest>-int8static-<method>-<n>.onnx`).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from minivln_core import onnx_cache
from minivln_core.config import Validated, build_config, from_dict
from minivln_core.distill.vit import feature_errors, to_pixels
from minivln_core.errors import ConfigError
from minivln_core.io_utils import atomic_write, atomic_write_json
from minivln_core.perception.config import ExtractorConfig
from minivln_core.perception.onnx_vit import INPUT, cached_export
from minivln_core.perception.view_dataset import extractor_settings, load_view_dataset
from minivln_core.perception.vit import FeatureExtractor, forward_features
from minivln_core.provenance import cpu_info

log = logging.getLogger("minivln.bench")

METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class StaticInt8Config(Validated):
    views: str = ""                 # a view dataset (`minivln distill-vit` OUT/views.h5): crops + extractor settings
    calibration_views: int = 64     # training crops the activation ranges are calibrated on
    test_views: int = 36            # held-out crops timed and compared (36 = one panorama)
    rounds: int = 5
    threads: int = 2
    method: str = "minmax"          # onnxruntime CalibrationMethod: minmax | entropy | percentile
    onnx_dir: str | None = None     # None: the extractor's default cache

    def validate(self) -> None:
        if not self.views:
            raise ConfigError("config key 'views' is required (a distill-vit views.h5)")
        if self.calibration_views < 1 or self.test_views < 1 or self.rounds < 1 or self.threads < 0:
            raise ConfigError("config keys 'calibration_views', 'test_views', 'rounds' (>= 1) and 'threads' (>= 0) "
                              "are out of range")
        if self.method not in METHODS:
            raise ConfigError(f"config key 'method' must be one of {', '.join(METHODS)}, got {self.method!r}")


def quantize_static_int8(src: Path, path: Path, calibration: np.ndarray, method: str, batch: int = 8) -> None:
    """Static int8 (QDQ: u8 activations with calibrated ranges, s8 per-tensor weights) of every MatMul, atomically.

    Runs in a fresh (spawned) process: the calibrator opens its own onnxruntime session with its own
    threads, which onnxruntime refuses once this process has the shared pool (`onnx_cache.session`)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(_quantize_static, src, path, calibration, method, batch).result()


def _quantize_static(src: Path, path: Path, calibration: np.ndarray, method: str, batch: int) -> None:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{INPUT: calibration[i:i + batch]} for i in range(0, len(calibration), batch)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    with onnx_cache.quiet():
        atomic_write(path, lambda tmp: quantize_static(
            src, tmp, Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], per_channel=False,
            calibrate_method=methods[method]))


def run_static_int8(cfg: StaticInt8Config, out: str | Path | None = None) -> dict[str, Any]:
    """Features and interleaved timings of fp32, dynamic int8 and static int8 onnxruntime graphs."""
    splits, _ = load_view_dataset(cfg.views)
    settings = extractor_settings(cfg.views)
    if not settings:
        raise ConfigError(f"{cfg.views}: has no extractor settings (build it with `minivln distill-vit`)")
    extractor_cfg = replace(from_dict(ExtractorConfig, settings), runtime="torch", precision="fp32", int8=False,
                            threads=cfg.threads, onnx_dir=cfg.onnx_dir)
    extractor = FeatureExtractor(extractor_cfg)
    prep = extractor.prep
    if splits["train"].crops.shape[1] != prep.crop_size:
        raise ConfigError(f"{cfg.views}: crops are {splits['train'].crops.shape[1]} px, the extractor takes "
                          f"{prep.crop_size} px")

    def forward(pixels):
        return forward_features(extractor.model, extractor.kind, pixels)

    with_logits = extractor.num_logits > 0
    paths = {p: cached_export(extractor.model, forward, extractor.kind, prep.crop_size, with_logits, p, cfg.onnx_dir)
             for p in ("fp32", "int8")}
    n_cal = min(cfg.calibration_views, len(splits["train"]))
    stem = paths["fp32"].name.removesuffix("-fp32.onnx")                     # "<kind>-<digest>": same model
    static = paths["fp32"].with_name(f"{stem}-int8static-{cfg.method}-{n_cal}.onnx")
    quantise_s = 0.0
    if not static.is_file():
        started = time.perf_counter()
        quantize_static_int8(paths["fp32"], static, to_pixels(splits["train"].crops[:n_cal], prep).numpy(), cfg.method)
        quantise_s = time.perf_counter() - started
    paths["int8-static"] = static

    test = to_pixels(splits["val"].crops[:cfg.test_views], prep).numpy()              # (T, 3, S, S)
    sessions = {name: onnx_cache.session(path, cfg.threads) for name, path in paths.items()}
    features = {name: s.run(None, {INPUT: test})[0] for name, s in sessions.items()}   # also the warm-up
    seconds: dict[str, list[float]] = {name: [] for name in sessions}
    names = list(sessions)
    for r in range(cfg.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:          # rotated order
            started = time.perf_counter()
            sessions[name].run(None, {INPUT: test})
            seconds[name].append(time.perf_counter() - started)
    fp32_ms = float(np.median(seconds["fp32"])) * 1000
    rows = {}
    for name in names:
        ms = np.asarray(seconds[name]) * 1000
        rows[name] = {"median_ms": float(np.median(ms)), "min_ms": float(ms.min()),
                      "vs_fp32": float(np.median(ms)) / fp32_ms, **feature_errors(features[name], features["fp32"])}
    report = {"cpu": cpu_info(), "threads": cfg.threads, "views": str(cfg.views), "test_views": int(len(test)),
              "calibration_views": n_cal, "method": cfg.method, "rounds": cfg.rounds,
              "extractor": {"hidden_size": extractor_cfg.hidden_size, "num_layers": extractor_cfg.num_layers,
                            "image_size": prep.crop_size, "weights_dir": extractor_cfg.weights_dir},
              "quantise_seconds": round(quantise_s, 1), "variants": rows}
    if out:
        atomic_write_json(Path(out), report)
    return report


def lines(report: dict[str, Any]) -> list[str]:
    """A Markdown table of the report."""
    cpu = report["cpu"]
    head = [f"{cpu['model']}, {report['threads']} threads; {report['test_views']} held-out views, "
            f"{report['rounds']} interleaved rounds; static int8 calibrated ({report['method']}) on "
            f"{report['calibration_views']} training views", "",
            "| onnxruntime graph | median ms | min ms | vs fp32 | rel. error vs fp32 | min cosine |",
            "|---|---:|---:|---:|---:|---:|"]
    return head + [f"| {name} | {r['median_ms']:.0f} | {r['min_ms']:.0f} | {r['vs_fp32']:.2f} | {r['rel_error']:.3f} "
                   f"| {r['min_cos']:.4f} |" for name, r in report["variants"].items()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--views", required=True, help="a distill-vit views.h5")
    p.add_argument("--out", default=None, help="JSON report")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="StaticInt8Config override")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = build_config(StaticInt8Config, base=StaticInt8Config(views=args.views), overrides=args.set)
    report = run_static_int8(cfg, args.out)
    print(json.dumps(report["variants"], indent=2))
    print("\n".join(lines(report)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
