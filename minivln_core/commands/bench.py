"""`minivln bench`: teacher vs student CPU decision time, side by side in one run (JSON + chart)."""

from __future__ import annotations

import argparse
import json

import torch

from minivln_core.config import build_config
from minivln_core.eval.bench import BenchConfig
from minivln_core.eval.bench_report import bench_lines, run_bench
from minivln_core.models import PRESETS, DuetPolicy, preset
from minivln_core.models.loading import load_policy


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="teacher vs student per-step CPU time, measured side by side",
                       description="Time NavigationAgent.step (the code the ROS node runs) for a teacher and a "
                                   "student on the same decisions, interleaved, plus language encoding and "
                                   "optionally 36-view ViT extraction. Writes JSON and a bar chart.")
    t = p.add_mutually_exclusive_group()
    t.add_argument("--teacher", help="teacher checkpoint")
    t.add_argument("--teacher-preset", default="duet-base", choices=sorted(PRESETS))
    s = p.add_mutually_exclusive_group()
    s.add_argument("--student", help="student checkpoint")
    s.add_argument("--student-preset", default="minivln", choices=sorted(PRESETS))
    p.add_argument("--place", action="store_true",
                   help="instead: time new place -> goal (36-view extraction + decision, OnlineNavigator) per "
                        "extractor variant, with decision agreement against the trained features; --set then "
                        "overrides PlaceBenchConfig: world, checkpoint, features, variants, split, places, rounds, "
                        "threads, max_steps, agreement_limit, score_sr")
    p.add_argument("--out", default=None, help="JSON output (the chart goes beside it; default "
                                               "runs/bench/bench.json, with --place runs/bench/place.json)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="BenchConfig override: steps, warmup, min_nodes, threads, houses, seed, vit_repeats, int8, "
                        "runtime (torch|onnx), compare_torch, alone, "
                        "agreement_world, agreement_split, agreement_features, agreement_limit")
    p.set_defaults(func=run)


def _policy(checkpoint: str | None, name: str) -> DuetPolicy:
    if checkpoint:
        return load_policy(checkpoint)
    torch.manual_seed(0)
    return DuetPolicy(preset(name)).eval()


def run(args: argparse.Namespace) -> int:
    if args.place:
        from minivln_core.experiments.place_bench import PlaceBenchConfig, place_lines, run_place_bench

        report = run_place_bench(build_config(PlaceBenchConfig, overrides=args.set), args.out or "runs/bench/place.json")
        print("\n".join(place_lines(report)))
        return 0
    args.out = args.out or "runs/bench/bench.json"
    cfg = build_config(BenchConfig, overrides=args.set)
    teacher, student = _policy(args.teacher, args.teacher_preset), _policy(args.student, args.student_preset)
    result = run_bench(teacher, student, cfg, (args.teacher or args.teacher_preset, args.student or args.student_preset),
                       args.out)
    print(json.dumps(result, indent=2))
    print("\n".join(bench_lines(result, cfg)))
    return 0
