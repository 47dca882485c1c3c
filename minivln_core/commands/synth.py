"""`minivln synth`: write the embedded synthetic world (houses, annotations, boxes, features)."""

from __future__ import annotations

import argparse
import time

from minivln_core.config import build_config
from minivln_core.data.synth import SynthConfig, generate_world


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `synth` subcommand."""
    p = sub.add_parser("synth", help="generate the synthetic world (no downloads needed)",
                       description="Write procedural houses in the Matterport/R2R/REVERIE formats plus semantic "
                                   "view features. Same seed and settings give byte-identical files.")
    p.add_argument("--out", required=True, help="output folder (connectivity/, annotations/, features/, world.json)")
    p.add_argument("--houses", type=int, help="number of houses (default 15)")
    p.add_argument("--seed", type=int, help="world seed (default 0)")
    p.add_argument("--config", help="YAML file with SynthConfig overrides")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one SynthConfig key (repeatable), e.g. --set feature_dim=64")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    """SynthConfig from defaults <- --config <- --set <- --houses/--seed."""
    overrides = list(args.overrides)
    if args.houses is not None:
        overrides.append(f"houses={args.houses}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    return build_config(SynthConfig, yaml_path=args.config, overrides=overrides)


def run(args: argparse.Namespace) -> int:
    """Generate the world and print a short summary."""
    cfg = config_from_args(args)
    started = time.perf_counter()
    summary = generate_world(args.out, cfg)
    elapsed = time.perf_counter() - started
    houses, vps = summary["houses"], summary["viewpoints"]
    print(f"synthetic world written to {summary['out_dir']} (seed {cfg.seed}, {elapsed:.1f} s)")
    print(f"  houses: train {houses['train']}, val_unseen {houses['val_unseen']}; "
          f"viewpoints: train {vps['train']}, val_unseen {vps['val_unseen']}; objects {summary['objects']}")
    for task in ("r2r", "reverie"):
        parts = ", ".join(f"{split} {c['instructions']} ({c['paths']} paths)" for split, c in summary[task].items())
        print(f"  {task.upper()} instructions: {parts}")
    print(f"  features: {summary['feature_dim']} dims + {summary['num_classes']} class columns per view")
    return 0
