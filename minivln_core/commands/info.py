"""`minivln info`: describe a model preset or a checkpoint (parameter counts per module)."""

from __future__ import annotations

import argparse
import json

import torch

from minivln_core.models import PRESETS, DuetPolicy, preset
from minivln_core.models.checkpoint import load_config, load_meta


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="parameter counts of a preset or checkpoint (JSON)",
                       description="Print a JSON object describing a model; key 'params' is the count.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", choices=sorted(PRESETS), help="a named model size")
    src.add_argument("--checkpoint", help="a checkpoint directory")
    p.add_argument("--task", choices=["r2r", "reverie"], default="r2r",
                   help="reverie adds the object-grounding head (presets only)")
    p.set_defaults(func=run)


def describe(model: DuetPolicy) -> dict:
    """Total and per-module parameter counts."""
    modules = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    return {"params": model.num_parameters(), "modules": {k: v for k, v in modules.items() if v}}


def run(args: argparse.Namespace) -> int:
    if args.preset:
        config, meta = preset(args.preset, args.task), {"preset": args.preset, "task": args.task}
    else:
        config, meta = load_config(args.checkpoint), load_meta(args.checkpoint)
    with torch.device("meta"):  # counts need shapes only, not 700 MB of weights
        model = DuetPolicy(config)
    info = {**meta, **describe(model), "config": {k: getattr(config, k) for k in config.__dataclass_fields__}}
    if config.text_backbone != "none":  # frozen, shared, not stored: counted apart from the policy's own
        from minivln_core.models.text_backbone import load_backbone

        backbone = load_backbone(config.text_backbone)
        info["frozen_text_backbone"] = {"name": config.text_backbone,
                                        "params": sum(p.numel() for p in backbone.parameters())}
    print(json.dumps(info, indent=2))
    return 0
