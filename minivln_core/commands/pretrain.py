"""`minivln pretrain`: DUET pretraining with MLM, MRC, SAP (+ OG) (resumable; runs under torchrun)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from minivln_core.config import build_config, save_yaml
from minivln_core.train.pretrain import PretrainConfig, run_pretrain


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `pretrain` subcommand."""
    p = sub.add_parser("pretrain", help="DUET pretraining on expert trajectories (MLM, MRC, SAP, OG; resumable)",
                       description="Pretrain a navigation policy with DUET's proxy tasks on teacher-forced "
                                   "ground-truth trajectories. Writes OUT/policy (for `minivln finetune --init`), "
                                   "OUT/best (the whole pretraining model) and OUT/last; rerunning the same "
                                   "command resumes from OUT/last. Multi-process: "
                                   "torchrun --nproc_per_node N -m minivln_core pretrain ...")
    p.add_argument("--config", help="YAML overrides of the pretraining config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set mix_ratio.mrc=0 --set loop.steps=500")
    p.add_argument("--world", help="world folder (overrides the config's 'world')")
    p.add_argument("--out", default="runs/pretrain", help="run folder (checkpoints, logs, curves)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the config, save it as OUT/config.yaml, pretrain and print a JSON summary."""
    cfg = build_config(PretrainConfig, yaml_path=args.config, overrides=args.set)
    if args.world:
        cfg = replace(cfg, world=args.world)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, out / "config.yaml")
    summary = run_pretrain(cfg, out, progress=not args.quiet)
    print(json.dumps({**summary, "policy": str(out / "policy"), "best_model": str(out / "best")}, indent=2))
    return 0
