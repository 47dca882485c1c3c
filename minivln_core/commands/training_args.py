"""Command-line arguments shared by the training commands (pretrain, finetune)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from minivln_core.config import build_config

T = TypeVar("T")


def add_training_args(p: argparse.ArgumentParser, default_out: str) -> None:
    """--config, --set, --world, --out, --quiet."""
    p.add_argument("--config", help="YAML file with overrides of the config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set loop.steps=500 (repeatable)")
    p.add_argument("--world", help="world folder (overrides the config's 'world')")
    p.add_argument("--out", default=default_out, help="run folder (checkpoints, logs, curves)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def resolve(args: argparse.Namespace, cls: type[T], **changes) -> tuple[T, Path]:
    """The config (defaults <- --config <- --set <- --world / changes) and the run folder (the
    training run saves the resolved config there as config.yaml)."""
    cfg = build_config(cls, yaml_path=args.config, overrides=args.set)
    changes = {k: v for k, v in changes.items() if v is not None}
    if args.world:
        changes["world"] = args.world
    cfg = replace(cfg, **changes) if changes else cfg
    return cfg, Path(args.out)
