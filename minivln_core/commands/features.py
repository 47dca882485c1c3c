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
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from minivln_core.config import build_config
from minivln_core.errors import DataError

log = logging.getLogger("minivln.features")

IMAGE_NAME = re.compile(r"^(?P<scan>[^_]+)_(?P<vp>.+)_(?P<ix>\d+)\.(?:png|jpe?g)$", re.IGNORECASE)
NUM_VIEWS = 36
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


def encode_viewpoints(extractor: Any, items: Iterable[tuple[str, Callable[[], Sequence[np.ndarray]]]],
                      out: str | Path, with_logits: bool = True, compression: str | None = None) -> int:
    """Encode `(key, load_36_views)` pairs and write the view feature file; returns the viewpoint count."""
    from minivln_core.data.features import write_view_features

    mapping: dict[str, np.ndarray] = {}
    logits_on = with_logits and extractor.num_logits > 0
    start = time.perf_counter()
    for n, (key, load) in enumerate(items, 1):
        feats, logits = extractor.encode_with_logits(load())                 # (36, D), (36, C) | None
        mapping[key] = np.concatenate([feats, logits], axis=1) if logits_on else feats
        if n % 50 == 0:
            log.info("%d viewpoints encoded (%.2f s each)", n, (time.perf_counter() - start) / n)
    if not mapping:
        raise DataError(out, "no viewpoints to encode")
    attrs = {**extractor.describe(), "feature_dim": extractor.dim}
    write_view_features(out, mapping, attrs=attrs, compression=compression)
    log.info("wrote %d viewpoints x 36 views (%d feature%s columns) to %s", len(mapping), extractor.dim,
             " + logit" if logits_on else "", out)
    return len(mapping)


# -- --images ----------------------------------------------------------------------------------
def scan_image_folder(folder: str | Path) -> dict[str, list[Path]]:
    """{"<scan>_<vp>": 36 image paths in view order}; a viewpoint with missing views is a DataError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "image folder does not exist")
    found: dict[str, dict[int, Path]] = {}
    ignored = 0
    for path in sorted(folder.iterdir()):
        match = IMAGE_NAME.match(path.name)
        if match is None or not path.is_file():
            ignored += 1
            continue
        key, ix = f"{match['scan']}_{match['vp']}", int(match["ix"])
        if ix >= NUM_VIEWS:
            raise DataError(path, f"view index {ix} is outside 0..{NUM_VIEWS - 1}")
        views = found.setdefault(key, {})
        if ix in views:
            raise DataError(path, f"view {ix} of {key} is also {views[ix].name}")
        views[ix] = path
    if ignored:
        log.warning("%s: ignored %d entries not named <scan>_<viewpoint>_<ix>.png|jpg", folder, ignored)
    if not found:
        raise DataError(folder, "no images named <scan>_<viewpoint>_<ix>.png|jpg")
    for key, views in found.items():
        missing = [ix for ix in range(NUM_VIEWS) if ix not in views]
        if missing:
            names = ", ".join(f"{key}_{ix}.png|jpg" for ix in missing[:6]) + (" ..." if len(missing) > 6 else "")
            raise DataError(folder, f"viewpoint {key} is missing {len(missing)} of its 36 views: {names}", record=key)
    return {key: [views[ix] for ix in range(NUM_VIEWS)] for key, views in sorted(found.items())}


def read_rgb(path: Path) -> np.ndarray:
    """An image file as an HxWx3 uint8 RGB array."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(path, "not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@mode("--images", metavar="DIR", help="folder of <scan>_<viewpoint>_<ix>.png|jpg view images")
def run_images(args: argparse.Namespace) -> int:
    """Encode a folder of view images."""
    groups = scan_image_folder(args.images)
    extractor = extractor_from_args(args)
    items = ((key, lambda paths=paths: [read_rgb(p) for p in paths]) for key, paths in groups.items())
    encode_viewpoints(extractor, items, args.out, with_logits=not args.no_logits,
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
                                 compression="gzip" if args.gzip else None)
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
