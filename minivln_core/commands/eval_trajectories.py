"""`minivln eval-trajectories`: score a results file in the standard R2R / REVERIE format."""

from __future__ import annotations

import argparse
import json

from minivln_core.eval.trajectories import score_results, summary_text
from minivln_core.io_utils import atomic_write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-trajectories", help="score a results file (NE, TL, SR, OSR, SPL, nDTW, SDTW, CLS, RGS, RGSPL)",
        description="Score [{instr_id, trajectory: [[viewpoint, heading, elevation], ...]}] (REVERIE adds "
                    "predObjId) against annotations, with distances on the full house graphs. Writes JSON with "
                    "lower-case metric keys (percentages; ne/tl in metres) and num_episodes.")
    p.add_argument("--annotations", required=True, help="R2R_<split>.json or REVERIE_<split>.json")
    p.add_argument("--connectivity", required=True, help="folder of <scan>_connectivity.json files")
    p.add_argument("--results", required=True, help="results file to score")
    p.add_argument("--task", choices=["auto", "r2r", "reverie"], default="auto")
    p.add_argument("--bboxes", help="BBoxes.json for REVERIE goal sets (default: beside the annotations)")
    p.add_argument("--out", help="write the metrics JSON here (default: print only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    metrics = score_results(args.annotations, args.connectivity, args.results, task=args.task, bboxes=args.bboxes)
    if args.out:
        atomic_write_json(args.out, metrics)
    print(json.dumps(metrics, indent=2))
    print(summary_text(metrics))
    return 0
