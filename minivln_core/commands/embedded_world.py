"""`minivln embedded-world`: build the embedded world (sim_robot's default) into a folder."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `embedded-world` subcommand."""
    p = sub.add_parser("embedded-world", help="build the embedded world with its rendered ViT features",
                       description="The default generated world and its rendered ViT view features "
                                   "(features/views_vit.h5), exactly as sim_robot and the main job build "
                                   "them, written to <cache>/world; skipped when the cache already holds it.")
    p.add_argument("--cache", help="cache folder (default: $MINIVLN_CACHE, else ~/.cache/minivln)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build (or find) the world and print its folder."""
    from minivln_core.experiments.embedded_world import ensure_embedded_world

    print(ensure_embedded_world(args.cache, progress=True))
    return 0
