"""`minivln finetune`: DAgger fine-tuning (resumable; runs under torchrun for several processes)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from minivln_core.config import build_config, save_yaml
from minivln_core.train.finetune import FinetuneConfig, run_finetune


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="DAgger fine-tuning of a navigation policy (resumable)",
                       description="Fine-tune with teacher forcing + sampled rollouts supervised by the "
                                   "shortest-path expert. Rerunning the same command resumes from OUT/last. "
                                   "Multi-process: torchrun --nproc_per_node N -m minivln_core finetune ...")
    p.add_argument("--config", help="YAML overrides of the fine-tuning config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config key")
    p.add_argument("--init", help="policy checkpoint to start from (default: a fresh preset)")
    p.add_argument("--world", help="world folder (overrides the config's 'world')")
    p.add_argument("--out", default="runs/finetune", help="run folder (checkpoints, logs, curves)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = build_config(FinetuneConfig, yaml_path=args.config, overrides=args.set)
    if args.init:
        cfg = replace(cfg, init=args.init)
    if args.world:
        cfg = replace(cfg, world=args.world)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, out / "config.yaml")
    summary = run_finetune(cfg, out, progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0
