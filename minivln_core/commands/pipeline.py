"""`minivln pipeline`: the main job on the embedded default world.

generate the synthetic world -> score the shortest-path expert (upper bound) -> evaluate the
teacher and student policies on the validation splits -> write report.json / report.md.
Later stages (training, distillation) plug in before the evaluation.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from minivln_core.config import build_config, save_yaml, to_dict
from minivln_core.data.synth.config import SynthConfig
from minivln_core.data.world import WorldPaths
from minivln_core.eval.evaluate import EvalSpec, evaluate_expert, evaluate_policy
from minivln_core.io_utils import atomic_write_json, atomic_write_text
from minivln_core.models import DuetPolicy, preset

log = logging.getLogger("minivln.pipeline")


@dataclass(frozen=True)
class PipelineConfig:
    """The main job's settings (YAML overrides via --config, single keys via --set)."""

    world: SynthConfig = field(default_factory=SynthConfig)   # the generated world
    task: Literal["r2r", "reverie"] = "r2r"
    splits: list[str] = field(default_factory=lambda: ["val_seen", "val_unseen"])
    teacher_preset: str = "duet-small"                        # CPU-sized teacher (9/2/4 layers)
    student_preset: str = "minivln-small"                     # CPU-sized student (3/1/2 layers)
    batch_size: int = 8
    max_steps: int = 15                                       # decisions per episode
    eval_limit: int = 0                                       # instructions per split (0 = all)
    seed: int = 0
    threads: int = 0                                          # torch CPU threads (0 = default)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pipeline", help="the main job: synthetic world -> expert, teacher, student evaluation",
                       description="Run the main job on the embedded default world and write report.json and "
                                   "report.md in --out.")
    p.add_argument("--out", default="runs/main", help="run folder")
    p.add_argument("--config", help="YAML file with overrides of the pipeline config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config key")
    p.set_defaults(func=run)


def _world(out: Path, config: SynthConfig) -> WorldPaths:
    """Generate the world unless the folder already holds one made from the same config."""
    from minivln_core.data.synth.world import generate_world

    root = out / "world"
    stamp = root / "world.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("config") == to_dict(config):
        log.info("world %s is up to date", root)
    else:
        started = time.perf_counter()
        summary = generate_world(root, config)
        log.info("generated world in %.1f s: %s", time.perf_counter() - started, summary)
    return WorldPaths(root).check()


def run(args: argparse.Namespace) -> int:
    config = build_config(PipelineConfig, yaml_path=args.config, overrides=args.set)
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(config, out / "config.yaml")
    paths = _world(out, config.world)
    rows: list[dict[str, Any]] = []
    for split in config.splits:
        spec = EvalSpec(paths.root, config.task, split, config.batch_size, config.max_steps, config.eval_limit)
        rows.append({"policy": "shortest-path expert", "split": split, "params": 0,
                     **evaluate_expert(spec, out / "eval")})
        for role, name in (("teacher", config.teacher_preset), ("student", config.student_preset)):
            torch.manual_seed(config.seed)
            model = DuetPolicy(preset(name, config.task, image_feat_size=config.world.feature_dim)).eval()
            metrics = evaluate_policy(model, spec, out / "eval", f"{role}-untrained")
            rows.append({"policy": f"{role} {name} (untrained)", "split": split,
                         "params": model.num_parameters(), **metrics})
    report = {"config": to_dict(config), "world": str(paths.root), "results": rows}
    atomic_write_json(out / "report.json", report)
    table = render_table(rows)
    atomic_write_text(out / "report.md", "# MiniVLN main job\n\n" + table + "\n")
    print(table)
    print(f"\nreport: {out / 'report.json'} and {out / 'report.md'}")
    return 0


def render_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of SR / SPL / nDTW / NE per policy and split."""
    lines = ["| policy | split | params | episodes | SR | SPL | nDTW | NE (m) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['policy']} | {r['split']} | {r['params']:,} | {int(r['num_episodes'])} | "
                     f"{r['sr']:.1f} | {r['spl']:.1f} | {r['ndtw']:.1f} | {r['ne']:.2f} |")
    return "\n".join(lines)
