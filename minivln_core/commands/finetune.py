"""`minivln finetune`: DAgger fine-tuning (resumable; runs under torchrun for several processes)."""

from __future__ import annotations

import argparse
import json

from minivln_core.commands.training_args import add_training_args, resolve
from minivln_core.train.finetune import FinetuneConfig, run_finetune


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="DAgger fine-tuning of a navigation policy (resumable)",
                       description="Fine-tune with teacher forcing + sampled rollouts supervised by the "
                                   "shortest-path expert. Rerunning the same command resumes from OUT/last. "
                                   "Multi-process: torchrun --nproc_per_node N -m minivln_core finetune ...")
    add_training_args(p, "runs/finetune")
    p.add_argument("--init", help="policy checkpoint to start from (default: a fresh preset)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg, out = resolve(args, FinetuneConfig, init=args.init)
    summary = run_finetune(cfg, out, progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0
