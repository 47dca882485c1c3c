"""`minivln ablation`: the paper's two-stage distillation ablation (Table III, optionally Table V)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from minivln_core.config import build_config, save_yaml
from minivln_core.experiments.distill_ablation import BUDGETS, AblationConfig, render_ablation_table, run_ablation


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `ablation` subcommand."""
    p = sub.add_parser("ablation", help="two-stage distillation ablation: teacher and four students, same budget",
                       description="Train, with identical seeds and budgets, a teacher and four students: both "
                                   "distillation stages, pretraining KD only, fine-tuning KD only and no KD "
                                   "(optionally the two-stage student at other KDWeights). Score SR, SPL, nDTW "
                                   "(RGS, RGSPL on REVERIE), count parameters and time a decision step on the "
                                   "CPU. Writes OUT/ablation.json, ablation.md and ablation.png; rerun to resume.")
    p.add_argument("--world", help="world folder (config key 'world')")
    p.add_argument("--features", help="view-feature file <world>/features/<NAME>.h5 (config key 'features'; "
                                      "views_vit for the pipeline's rendered features)")
    p.add_argument("--budget", choices=sorted(BUDGETS), help="named budget: " + "; ".join(
        f"{name}: {b.pretrain_steps}+{b.finetune_steps} steps at batch {b.batch_size}" for name, b in BUDGETS.items())
        + " (default: the config's, 200+200 at batch 8; change single keys with --set budget.KEY=VALUE)")
    p.add_argument("--teacher", help="reuse this fine-tuned teacher (stage-2 teacher) instead of training one")
    p.add_argument("--teacher-pretrain", help="reuse this pretrained teacher (stage-1 teacher)")
    p.add_argument("--kd-sweep", action="store_true", help="also train the two-stage student at KDWeight 0.01 and 1 "
                                                           "(Table V; 0.1 is student #1)")
    p.add_argument("--jobs", type=int, help="runs at once, each in a process of its own (config key 'jobs'; "
                                            "e.g. the number of cores: a small model's run keeps about one busy)")
    p.add_argument("--out", default="runs/ablation", help="output folder")
    p.add_argument("--config", help="YAML file with overrides of the ablation config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set budget.finetune_steps=500 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def resolve(args: argparse.Namespace) -> AblationConfig:
    """Defaults <- --budget <- --config <- --set <- the other flags."""
    base = AblationConfig(budget=BUDGETS[args.budget]) if args.budget else None
    flags = {"world": args.world, "features": args.features, "teacher": args.teacher,
             "teacher_pretrain": args.teacher_pretrain, "jobs": args.jobs, "kd_weight_sweep": [0.01, 0.1, 1.0] if args.kd_sweep else None}
    cfg = build_config(AblationConfig, base=base, yaml_path=args.config, overrides=args.set)
    cfg = replace(cfg, **{k: v for k, v in flags.items() if v is not None})
    return cfg


def run(args: argparse.Namespace) -> int:
    cfg = resolve(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, out / "config.yaml")
    report = run_ablation(cfg, out, progress=not args.quiet)
    print(render_ablation_table(report["results"]))
    print(f"\nreport: {out / 'ablation.md'} (+ ablation.json, ablation.png)")
    return 0
