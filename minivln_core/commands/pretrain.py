"""`minivln pretrain`: DUET pretraining with MLM, MRC, SAP (+ OG) (resumable; runs under torchrun)."""

from __future__ import annotations

import argparse
import json

from minivln_core.commands.training_args import add_training_args, resolve
from minivln_core.train.pretrain import PretrainConfig, run_pretrain


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `pretrain` subcommand."""
    p = sub.add_parser("pretrain", help="DUET pretraining on expert trajectories (MLM, MRC, SAP, OG; resumable)",
                       description="Pretrain a navigation policy with DUET's proxy tasks on teacher-forced "
                                   "ground-truth trajectories. Writes OUT/policy (for `minivln finetune --init`), "
                                   "OUT/best (the whole pretraining model) and OUT/last; rerunning the same "
                                   "command resumes from OUT/last. Multi-process: "
                                   "torchrun --nproc_per_node N -m minivln_core pretrain ...")
    add_training_args(p, "runs/pretrain")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the config, save it as OUT/config.yaml, pretrain and print a JSON summary."""
    cfg, out = resolve(args, PretrainConfig)
    summary = run_pretrain(cfg, out, progress=not args.quiet)
    print(json.dumps({**summary, "policy": str(out / "policy"), "best_model": str(out / "best")}, indent=2))
    return 0
