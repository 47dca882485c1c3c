"""`minivln distill-vit`: a shallower ViT that reproduces the view features a policy learnt on (resumable)."""

from __future__ import annotations

import argparse
import json

from minivln_core.commands.training_args import add_training_args, resolve


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `distill-vit` subcommand."""
    p = sub.add_parser("distill-vit", help="distil the view extractor into fewer layers (perception distillation)",
                       description="Render the world's views, pair them with the feature file the policy was "
                                   "trained on (--set features=views_vit) and train a copy of its ViT with "
                                   "--set layers=N of the teacher's layers to reproduce them. Writes OUT/student, "
                                   "a Hugging Face folder: build features with `minivln features --world W "
                                   "--set weights_dir=OUT/student` or give it to the robot's extractor. Rerunning "
                                   "the same command resumes from OUT/last.")
    add_training_args(p, "runs/distill_vit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Distil and print the summary."""
    from minivln_core.distill.vit import DistillVitConfig, run_distill_vit

    cfg, out = resolve(args, DistillVitConfig)
    print(json.dumps(run_distill_vit(cfg, out, progress=not args.quiet), indent=2))
    return 0
