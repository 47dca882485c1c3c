"""`minivln export-checkpoint`: turn a scored training checkpoint into a shipped one with a model card."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `export-checkpoint` subcommand."""
    p = sub.add_parser("export-checkpoint", help="write a shipped checkpoint (fp16 weights + model card) from a run",
                       description="Writes checkpoints/<name>/ from RUN/best or RUN/last of `minivln finetune`: "
                                   "fp16 weights, extractor.json for ViT features, card.json and card.md filled "
                                   "from the run's records. The checkpoint must have been scored on the full "
                                   "val_seen and val_unseen splits (RUN/final/<checkpoint>_<split>_metrics.json, "
                                   "what the recipes' score steps write); random walk, the expert and an fp16 "
                                   "decision check are computed here.")
    p.add_argument("source", help="the run's checkpoint folder, e.g. runs/embedded_student/dagger/last")
    p.add_argument("--name", required=True, help="shipped name, e.g. embedded-student")
    p.add_argument("--root", help="folder of shipped checkpoints (default: the checkout's checkpoints/)")
    p.add_argument("--description", default="", help="one paragraph for the card")
    p.add_argument("--recipe", default="", help="the recipe that trained it (name or file), recorded on the card")
    p.add_argument("--recipe-set", dest="recipe_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a --set the recipe ran with (repeatable)")
    p.add_argument("--fp16-check-episodes", type=int, default=48, help="val_unseen episodes of the fp16 check")
    p.add_argument("--replace", action="store_true",
                   help="replace an existing shipped checkpoint (only if >= 2 SR better on val_unseen)")
    p.add_argument("--format-change", action="store_true", help="with --replace: replace whatever the scores")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export and print where the card is."""
    from minivln_core.experiments.export_checkpoint import ExportRequest, export_checkpoint

    target = export_checkpoint(ExportRequest(
        Path(args.source), args.name, Path(args.root) if args.root else None, args.description, args.recipe,
        args.recipe_overrides, args.fp16_check_episodes, args.replace, args.format_change))
    print(f"shipped checkpoint written to {target} (card: {target / 'card.md'})")
    print((target / "card.md").read_text())
    return 0
