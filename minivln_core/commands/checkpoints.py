"""`minivln checkpoints`: the shipped checkpoints and their model cards' figures."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `checkpoints` subcommand."""
    p = sub.add_parser("checkpoints", help="list the shipped checkpoints with their card metrics",
                       description="Trained policies that come with the package (checkpoints/<name>/, installed "
                                   "as share/minivln_ros/checkpoints/). Any --checkpoint option, finetune's init "
                                   "and teacher, and the navigator's checkpoint parameter take these names.")
    p.add_argument("--json", action="store_true", help="print every card as JSON instead of the table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the table (or the cards)."""
    from minivln_core.experiments.export_checkpoint import checkpoints_table
    from minivln_core.models.shipped import list_shipped

    if args.json:
        print(json.dumps({s.name: {"path": str(s.path), "card": s.card} for s in list_shipped()}, indent=2))
    else:
        print(checkpoints_table())
    return 0
