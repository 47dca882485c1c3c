"""`minivln real-world`: the real-house semantic benchmark as a world folder (training houses held out)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `real-world` subcommand."""
    p = sub.add_parser("real-world", help="arrange real Matterport/R2R/REVERIE files as a world folder",
                       description="Link the connectivity graphs and BBoxes.json found under --data, split the "
                                   "R2R (and REVERIE) annotations so that --holdout training houses become "
                                   "val_unseen, and build the object-name view features. Every offline command "
                                   "then takes --world OUT. The data stays where it is (it must never be "
                                   "committed).")
    p.add_argument("--data", required=True, help="folder holding the data (searched recursively)")
    p.add_argument("--out", required=True, help="world folder to write")
    p.add_argument("--holdout", type=int, default=8, help="training houses held out as val_unseen (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out draw (default 0)")
    p.add_argument("--far-field", type=float, default=0.0, metavar="METRES",
                   help="add far-field view features: the objects annotated at viewpoints in line of sight up to "
                        "METRES away, in the view facing them (default 0: off; docs/data.md)")
    p.add_argument("--no-features", action="store_true", help="only the graphs and annotations")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the folder and print what went where."""
    from minivln_core.experiments.real_world import build_real_world

    info = build_real_world(args.data, args.out, args.holdout, args.seed, features=not args.no_features,
                            far_field=args.far_field)
    print(f"real-house world written to {args.out}: {info['houses']['train']} training houses, "
          f"{info['houses']['val_unseen']} held out ({', '.join(info['holdout']['scans'])})")
    print(json.dumps(info["counts"]))
    return 0
