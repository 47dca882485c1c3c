"""`minivln bench-train`: fine-tuning throughput of a preset under the baseline and the fast training
settings, interleaved in one run (minivln_core.train.throughput); JSON + chart."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from minivln_core.config import build_config
from minivln_core.io_utils import atomic_write_json
from minivln_core.train.throughput import ThroughputConfig, run_throughput, throughput_chart


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench-train", help="training steps per second: baseline vs fast settings, side by side",
                       description="Time fine-tuning steps (imitation or DAgger) of a preset under the baseline "
                                   "(one process, fp32, torch dropout) and the fast settings (2 DDP processes "
                                   "of 1 thread, numpy dropout masks; --set fast.* to change), interleaved "
                                   "round by round on a generated world. Writes JSON (baseline.step_s, "
                                   "fast.step_s, speedup in samples/s, settings, CPU model and flags) and a chart.")
    p.add_argument("--out", default="runs/bench_train.json", help="JSON report (a .png chart is written beside)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one key, e.g. --set preset=minivln-small --set train_alg=imitation "
                        "--set rounds=5 --set bf16=true --set fast.threads=2 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no per-round lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = build_config(ThroughputConfig, overrides=args.set)
    report = run_throughput(cfg, progress=not args.quiet)
    out = Path(args.out)
    atomic_write_json(out, report)
    throughput_chart(report, out.with_suffix(".png"))
    variants = [k for k, v in report.items() if isinstance(v, dict) and "step_s" in v]
    print(json.dumps({k: v for k, v in report.items() if k not in variants}, indent=2))
    for name in variants:
        r = report[name]
        print(f"{name:14s} {r['step_s']:7.2f} s/step  {r['samples_per_s']:6.2f} samples/s  {r['settings']}")
    print(f"fast / baseline: {report['speedup']:.2f}x samples per second ({report['preset']}, "
          f"{report['train_alg']}, batch {report['batch_size']}, {report['cpu']['model']})")
    return 0
