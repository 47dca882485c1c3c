"""`minivln <command>`: the project's single command-line entry point.

Each command lives in a module of `minivln_core.commands` that exposes `register(subparsers)`;
the registered function receives the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from minivln_core.errors import ConfigError, DataError

# Command modules, in the order `minivln --help` lists them.
COMMAND_MODULES = [
    "minivln_core.commands.pipeline",
    "minivln_core.commands.synth",
    "minivln_core.commands.embedded_world",
    "minivln_core.commands.real_world",
    "minivln_core.commands.features",
    "minivln_core.commands.distill_vit",
    "minivln_core.commands.info",
    "minivln_core.commands.eval_trajectories",
    "minivln_core.commands.evaluate",
    "minivln_core.commands.grounding_signal",
    "minivln_core.commands.checkpoints",
    "minivln_core.commands.export_checkpoint",
    "minivln_core.commands.pretrain",
    "minivln_core.commands.finetune",
    "minivln_core.commands.distill_pretrain",
    "minivln_core.commands.ablation",
    "minivln_core.commands.ablation_seeds",
    "minivln_core.commands.run_recipe",
    "minivln_core.commands.bench",
    "minivln_core.commands.bench_train",
    "minivln_core.commands.ros_demo",
    "minivln_core.commands.replay",
]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="minivln", description="MiniVLN: distilled vision-and-language navigation on a CPU.")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    # A command that runs other commands (run-recipe) gets this dispatcher as `args.run_command`:
    # importing the CLI back from a command module would be an import cycle.
    parser.set_defaults(run_command=main)
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the command; input errors print one clear line and exit 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (DataError, ConfigError) as exc:
        print(f"minivln {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
