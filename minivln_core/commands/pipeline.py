"""`minivln pipeline`: the main job on the embedded default world (minivln_core.experiments.pipeline)."""

from __future__ import annotations

import argparse

from minivln_core.config import build_config
from minivln_core.experiments.pipeline import PipelineConfig, run_pipeline


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pipeline", help="the main job: world -> features -> teacher -> evaluation report",
                       description="Run the main job on the embedded default world and write report.json, "
                                   "report.md and report.png in --out. Rerun to resume.")
    p.add_argument("--out", default="runs/main", help="run folder")
    p.add_argument("--config", help="YAML file with overrides of the pipeline config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config key")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    run_pipeline(build_config(PipelineConfig, yaml_path=args.config, overrides=args.set), args.out,
                 progress=not args.quiet)
    return 0
