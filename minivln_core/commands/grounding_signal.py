"""`minivln grounding-signal`: does the goal show what the instruction names, more than its neighbours?"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from minivln_core.eval.grounding_signal import grounding_signal
from minivln_core.io_utils import atomic_write_json


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `grounding-signal` subcommand."""
    p = sub.add_parser("grounding-signal", help="how well object names match the instruction at the goal",
                       description="For a world with MiniLM object-name view features (`minivln real-world`): "
                                   "score each episode's goal and its non-goal graph neighbours by their best "
                                   "view's name-to-word similarity with the instruction (whole, and per third) "
                                   "and print the goal-vs-neighbour AUC (0.5 = the names do not tell where to "
                                   "stop). No policy is involved: an upper bound on what grounding can give.")
    p.add_argument("--world", type=Path, required=True, help="world folder")
    p.add_argument("--task", choices=["r2r", "reverie"], default="r2r")
    p.add_argument("--split", default="val_unseen")
    p.add_argument("--features", default="views", help="view-feature file features/<name>.h5")
    p.add_argument("--every", type=int, default=1, help="score every N-th episode of the split")
    p.add_argument("--threshold", type=float, default=0.6, help="similarity counted as a close match")
    p.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = grounding_signal(args.world, args.task, args.split, args.features, args.every, args.threshold,
                              progress=not args.quiet)
    if args.out:
        atomic_write_json(args.out, result)
    print(json.dumps(result, indent=2))
    return 0
