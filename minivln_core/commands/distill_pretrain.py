"""`minivln distill-pretrain`: stage 1 of MiniVLN, pretraining a student while it distils a frozen
pretrained teacher (resumable; runs under torchrun for several processes)."""

from __future__ import annotations

import argparse
import json

from minivln_core.commands.training_args import add_training_args, resolve
from minivln_core.distill.stage1 import DistillPretrainConfig, run_distill_pretrain
from minivln_core.models import PRESETS


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `distill-pretrain` subcommand."""
    p = sub.add_parser("distill-pretrain",
                       help="stage-1 distillation: the student pretrains (MLM, MRC, SAP, OG) while it distils "
                            "a frozen teacher (resumable)",
                       description="Pretrain a student with DUET's proxy tasks plus embedding, attention "
                                   "(pre-softmax, per head) and hidden-state distillation of a frozen "
                                   "pretrained teacher. Student layer m learns from teacher layer 3m in the "
                                   "language encoder and 2m in the panorama and cross-modal encoders. Writes "
                                   "OUT/policy (the student, for `minivln finetune --init`), OUT/best and "
                                   "OUT/last; rerunning the same command resumes from OUT/last.")
    add_training_args(p, "runs/distill-pretrain")
    p.add_argument("--teacher", help="pretrained teacher checkpoint: a pretraining run's policy/ or best/ "
                                     "(config key 'teacher')")
    p.add_argument("--student-preset", choices=sorted(PRESETS),
                   help="student size (config key 'preset'; default minivln-small, the paper's is minivln)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the config, save it as OUT/config.yaml, distil and print a JSON summary."""
    cfg, out = resolve(args, DistillPretrainConfig, teacher=args.teacher, preset=args.student_preset)
    summary = run_distill_pretrain(cfg, out, progress=not args.quiet)
    print(json.dumps({**summary, "policy": str(out / "policy"), "best_model": str(out / "best")}, indent=2))
    return 0
