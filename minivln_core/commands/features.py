"""`minivln features`: build a 36-view feature file (HDF5, DUET layout) from one source of views.

Modes (exactly one per call):

* ``--images DIR``: a folder of view images ``<scan>_<viewpoint>_<ix>.png|jpg`` (ix 0..35, the
  Matterport view order) encoded with a ViT / CLIP (`perception.vit`). With a classifier ViT the
  logits follow the features (DUET's 768 + 1000 columns) unless ``--no-logits``.
* ``--world DIR``: a generated world's viewpoints, rendered as panoramas, sliced and encoded
  (`perception.world_features`), the same path the robot's panoramas take.
* ``--semantic``: object-name features of the Matterport houses from REVERIE's BBoxes.json
  (`perception.semantic`), needs ``--bboxes`` and ``--connectivity``.

A new mode is one function decorated with ``@mode("--flag", ...)``: the decorator adds the flag
to the mutually exclusive mode group and `run` dispatches to the function.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable

from minivln_core.config import build_config
from minivln_core.errors import DataError

log = logging.getLogger("minivln.features")

ModeFn = Callable[[argparse.Namespace], int]  # a mode: parsed arguments -> exit code


@dataclass(frozen=True)
class Mode:
    """One way of producing features: its command-line flag and the function that runs it."""

    flag: str
    options: dict[str, Any]
    run: ModeFn

    @property
    def dest(self) -> str:
        """The argparse attribute of the flag."""
        return self.flag.lstrip("-").replace("-", "_")


MODES: list[Mode] = []


def mode(flag: str, **options: Any) -> Callable[[ModeFn], ModeFn]:
    """Decorator registering `fn(args) -> exit code` as the mode selected by `flag` (argparse options)."""

    def register_mode(fn: ModeFn) -> ModeFn:
        MODES.append(Mode(flag, options, fn))
        return fn

    return register_mode


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `features` subcommand."""
    p = sub.add_parser("features", help="build a 36-view feature file (HDF5) from images or annotations",
                       description="Build a 36-view feature file (HDF5, DUET layout: one (36, D) dataset per "
                                   "<scan>_<viewpoint>) from view images or from REVERIE object annotations.")
    group = p.add_mutually_exclusive_group(required=True)
    for m in MODES:
        group.add_argument(m.flag, **m.options)
    p.add_argument("--out", help="output .h5 file, written atomically (--world default: "
                                 "<world>/features/views_vit.h5)")
    enc = p.add_argument_group("image encoder (--images)")
    enc.add_argument("--weights", help="local Hugging Face model folder (ViT or CLIP); none = RANDOM weights")
    enc.add_argument("--backend", choices=["vit", "clip"], help="model family (default vit)")
    enc.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="ExtractorConfig override, e.g. --set int8=true --set threads=2 (repeatable)")
    enc.add_argument("--no-logits", action="store_true", help="do not append classifier logits")
    sem = p.add_argument_group("semantic features (--semantic)")
    sem.add_argument("--bboxes", help="REVERIE BBoxes.json (or a BBox/ folder)")
    sem.add_argument("--connectivity", help="folder of <scan>_connectivity.json")
    sem.add_argument("--scans", help="comma-separated scan ids (default: every scan in --bboxes)")
    sem.add_argument("--far-field", type=float, default=0.0, metavar="METRES",
                     help="also the objects at viewpoints in line of sight up to METRES away (default 0: off)")
    p.add_argument("--objects", action="store_true",
                   help="--world: also encode each annotated object's best-view crop (REVERIE)")
    p.add_argument("--gzip", action="store_true", help="gzip-compress the datasets")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Dispatch to the selected mode."""
    for m in MODES:
        if getattr(args, m.dest, None) not in (None, False):
            if args.out is None and m.flag != "--world":
                raise DataError("<command line>", f"{m.flag} needs --out FILE.h5")
            return m.run(args)
    raise DataError("<command line>", f"choose one of {', '.join(m.flag for m in MODES)}")


# -- shared helpers ----------------------------------------------------------------------------
def extractor_from_args(args: argparse.Namespace):
    """A FeatureExtractor from --weights / --backend / --set (imports torch lazily)."""
    from minivln_core.perception.config import ExtractorConfig
    from minivln_core.perception.vit import FeatureExtractor

    base = ExtractorConfig()
    if getattr(args, "weights", None):
        base = dataclasses.replace(base, weights_dir=str(args.weights))
    if getattr(args, "backend", None):
        base = dataclasses.replace(base, backend=args.backend)
    config = build_config(ExtractorConfig, base=base, overrides=getattr(args, "set", None) or [])
    return FeatureExtractor(config)


# -- --images ----------------------------------------------------------------------------------
@mode("--images", metavar="DIR", help="folder of <scan>_<viewpoint>_<ix>.png|jpg view images")
def run_images(args: argparse.Namespace) -> int:
    """Encode a folder of view images."""
    from minivln_core.perception.image_folder import build_image_folder_features, scan_image_folder

    groups = scan_image_folder(args.images)  # a bad folder is reported before the model loads
    build_image_folder_features(groups, extractor_from_args(args), args.out, with_logits=not args.no_logits,
                                compression="gzip" if args.gzip else None)
    return 0


# -- --semantic --------------------------------------------------------------------------------
@mode("--semantic", action="store_true", help="object-name features from REVERIE BBoxes.json (+ --bboxes, "
                                               "--connectivity)")
def run_semantic(args: argparse.Namespace) -> int:
    """Build the object-semantic view features of the Matterport houses."""
    from minivln_core.perception.semantic import build_semantic_store

    for flag in ("bboxes", "connectivity"):
        if not getattr(args, flag):
            raise DataError("<command line>", f"--semantic needs --{flag}")
    scans = [s.strip() for s in args.scans.split(",") if s.strip()] if args.scans else None
    stats = build_semantic_store(args.bboxes, args.connectivity, args.out, scans=scans,
                                 compression="gzip" if args.gzip else None, far_field=args.far_field)
    print(", ".join(f"{k}: {v}" for k, v in stats.items()))
    return 0


# -- --world -----------------------------------------------------------------------------------
@mode("--world", metavar="DIR", help="a generated world: render each viewpoint's panorama, slice it into the "
                                     "36 views and encode them (the robot's perception path)")
def run_world(args: argparse.Namespace) -> int:
    """Render, slice and encode every viewpoint of a synthetic world."""
    from minivln_core.perception.world_features import build_world_features

    extractor = extractor_from_args(args)
    stats = build_world_features(args.world, extractor, args.out)
    print(", ".join(f"{k}: {v}" for k, v in stats.items()))
    if args.objects:
        from minivln_core.perception.world_features import build_world_object_features

        stats = build_world_object_features(args.world, extractor)
        print(", ".join(f"{k}: {v}" for k, v in stats.items()))
    return 0
