"""`minivln finetune`: DAgger fine-tuning, optionally distilling a teacher (stage 2 of MiniVLN; resumable;
runs under torchrun for several processes)."""

from __future__ import annotations

import argparse
import json

from minivln_core.commands.training_args import add_training_args, resolve
from minivln_core.distill.stage2 import DistillFinetuneConfig, run_distill_finetune


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="DAgger fine-tuning of a navigation policy (resumable)",
                       description="Fine-tune with teacher forcing + sampled rollouts supervised by the "
                                   "shortest-path expert. Rerunning the same command resumes from OUT/last. "
                                   "Multi-process: torchrun --nproc_per_node N -m minivln_core finetune ...")
    add_training_args(p, "runs/finetune")
    p.add_argument("--init", help="policy checkpoint to start from (default: a fresh preset)")
    kd = p.add_argument_group("stage-2 distillation (MiniVLN)",
                              "a frozen fine-tuned teacher runs on the student's own rollout; "
                              "(L_txt + L_pano + L_fuse) * KDWeight joins the navigation loss")
    kd.add_argument("--teacher", help="teacher checkpoint (enables distillation; config key 'teacher')")
    kd.add_argument("--kd-weight", type=float, help="KDWeight (default 0.1; 0 = no distillation)")
    kd.add_argument("--kd-temperature", type=float, help="temperature of L_fuse (default 1)")
    for term, what in (("txt", "text-encoder outputs"), ("pano", "panorama summaries"),
                       ("fuse", "fused navigation distributions")):
        kd.add_argument(f"--no-kd-{term}", dest=f"kd_{term}", action="store_const", const=False,
                        help=f"switch off L_{term} ({what})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg, out = resolve(args, DistillFinetuneConfig, init=args.init, teacher=args.teacher, kd_weight=args.kd_weight,
                       kd_temperature=args.kd_temperature, kd_txt=args.kd_txt, kd_pano=args.kd_pano,
                       kd_fuse=args.kd_fuse)
    summary = run_distill_finetune(cfg, out, progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0
