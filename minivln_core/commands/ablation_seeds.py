"""`minivln ablation-seeds`: the ablation's runs at several seeds as mean +- std, goals on the means."""

from __future__ import annotations

import argparse
from pathlib import Path

from minivln_core.experiments.distill_ablation_seeds import (
    load_reports,
    render_seed_table,
    summarise,
    write_seed_report,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `ablation-seeds` subcommand."""
    p = sub.add_parser("ablation-seeds", help="summarise `minivln ablation` runs that differ only in their seed",
                       description="Read RUN/ablation.json of two or more ablation runs with the same config "
                                   "except budget.seed (and jobs, threads; and how they came by the teacher when they all used "
                                   "the same teacher checkpoints); write OUT/ablation_seeds.json, "
                                   ".md and .png: mean +- std of every metric per policy and split, the goals "
                                   "judged on the means, and the two-stage - no-KD SR difference paired by seed.")
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="output folder of a `minivln ablation` run")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    summary = summarise(load_reports(args.runs))
    write_seed_report(args.out, summary)
    print(render_seed_table(summary["results"]))
    print(f"\nreport: {args.out / 'ablation_seeds.md'} (+ ablation_seeds.json, ablation_seeds.png)")
    return 0
