"""`minivln evaluate`: greedy rollouts of a checkpoint (or a randomly initialised preset) on a split."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from minivln_core.eval.evaluate import EvalSpec, evaluate_expert, evaluate_policy, evaluate_random_walk
from minivln_core.eval.trajectories import summary_text
from minivln_core.models import DuetPolicy, PRESETS, preset
from minivln_core.models.loading import load_policy

log = logging.getLogger("minivln.evaluate")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="roll out a policy on a world split and score it",
                       description="Greedy rollouts on a world folder (see `minivln synth`); writes "
                                   "<name>_<split>_results.json (standard format) and <name>_<split>_metrics.json.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint directory or a shipped checkpoint's name (`minivln checkpoints`)")
    src.add_argument("--preset", choices=sorted(PRESETS), help="randomly initialised preset (a baseline)")
    src.add_argument("--expert", action="store_true", help="the shortest-path expert (upper bound)")
    src.add_argument("--random-walk", action="store_true", help="a random walk of 4-7 hops (the floor)")
    p.add_argument("--world", required=True, help="world folder (connectivity/, annotations/, features/)")
    p.add_argument("--task", choices=["r2r", "reverie"], default="r2r")
    p.add_argument("--split", default="val_unseen")
    p.add_argument("--features", default="views", help="view-feature file <world>/features/<NAME>.h5")
    p.add_argument("--out", default="runs/evaluate", help="output folder")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-steps", type=int, default=15, help="decisions per episode (the last one stops)")
    p.add_argument("--limit", type=int, default=0, help="N instructions spread evenly over the split (0 = all)")
    p.add_argument("--ablation", choices=["none", "blind", "no_language"], default="none",
                   help="evaluate without vision (view features zeroed) or language (empty instructions), "
                        "as the policy was trained with `finetune --set ablation=...`")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--seed", type=int, default=0, help="seed of a preset's random initialisation or of the random walk")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = EvalSpec(Path(args.world), args.task, args.split, args.batch_size, args.max_steps, args.limit,
                    args.features, args.ablation)
    out = Path(args.out)
    if args.expert:
        name, metrics = "expert", evaluate_expert(spec, out)
    elif args.random_walk:
        name, metrics = "random", evaluate_random_walk(spec, out, args.seed)
    else:
        if args.checkpoint:
            model, name = load_policy(args.checkpoint), Path(args.checkpoint).name
        else:
            log.warning("preset %s is RANDOMLY INITIALISED (seed %d): a baseline, not a trained policy",
                        args.preset, args.seed)
            torch.manual_seed(args.seed)
            model, name = DuetPolicy(preset(args.preset, args.task)).eval(), args.preset
        metrics = evaluate_policy(model, spec, out, name)
    print(json.dumps(metrics, indent=2))
    print(summary_text(metrics))
    return 0
