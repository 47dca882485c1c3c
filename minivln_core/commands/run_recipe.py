"""`minivln run-recipe`: run a training recipe, a YAML list of minivln commands (minivln_core.experiments.recipes)."""

from __future__ import annotations

import argparse
import sys

from minivln_core.experiments.recipes import StepFailed, load_recipe, run_recipe


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `run-recipe` subcommand."""
    p = sub.add_parser("run-recipe", help="run a training recipe (config/recipes/*.yaml), step by step",
                       description="Run the minivln commands of a recipe file in order, in this process, "
                                   "skipping the stages that are done; stop at the first one that fails. "
                                   "Rerun to resume. Shipped recipes: teacher, distill, modality_ablation.")
    p.add_argument("recipe", help="recipe YAML file, or the name of a shipped one (e.g. teacher)")
    p.add_argument("--out", help="output folder (the recipe's 'out' parameter)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override one recipe parameter (repeatable), e.g. --set seeds='0 1 2'")
    p.add_argument("--dry-run", action="store_true",
                   help="print the commands, shell-quoted, one per line (skip conditions as [ ... ] || tests), "
                        "without running them")
    p.set_defaults(func=run)  # args.run_command: minivln_core.cli.main, set by the top-level parser


def run(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe, args.set, args.out)
    try:
        return run_recipe(recipe, args.run_command, dry_run=args.dry_run)
    except StepFailed as exc:
        print(f"minivln run-recipe: error: {exc}", file=sys.stderr)
        return exc.code
