"""Training images for distilling the view extractor: rendered views and the features a policy learnt on.

A policy trained on a world's rendered ViT features (`<world>/features/views_vit.h5`, written by
`minivln features --world`) expects, on the robot, exactly those features. A smaller extractor
that replaces the large one must therefore reproduce *that file*: the targets here are read from
it, not recomputed, so whatever runtime and precision built it is what the student learns to match.

Images are the robot's own views: each viewpoint's panorama is rendered facing heading 0 and
sliced into the 36 world-aligned views (`perception.panorama.panorama_views`, the path
`build_world_features` and the node take), then resized and centre-cropped by the extractor's
preprocessing and stored as uint8 crops. `views_per_viewpoint` of the 36 are kept per viewpoint
(a seeded draw) to bound memory: a 224 px crop is 150 KB.

Splits follow the world's: viewpoints of houses with R2R val_unseen episodes are `val` (where the
policy is scored, never trained on), every other house is `train`.

    <file>.h5   train/crops (N, S, S, 3) uint8, train/targets (N, D) float32, train/keys (N,) "<scan>_<vp>/<ix>"
                val/...     the same for the held-out houses; attrs: source file, its extractor_config
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from minivln_core.data.features import ViewFeatureStore, feature_key
from minivln_core.data.r2r import load_r2r
from minivln_core.data.synth.render import Renderer
from minivln_core.data.synth.world import load_houses
from minivln_core.errors import DataError
from minivln_core.frames import NUM_VIEWS
from minivln_core.io_utils import atomic_write
from minivln_core.perception.panorama import DEFAULT_PANO_WIDTH, panorama_views
from minivln_core.perception.vit import Preprocessing, _resized_crop

log = logging.getLogger("minivln.perception")

SPLITS = ("train", "val")


@dataclass
class ViewSplit:
    """Crops and the features to reproduce for one split."""

    crops: np.ndarray       # (N, S, S, 3) uint8, preprocessed up to normalisation
    targets: np.ndarray     # (N, D) float32
    keys: list[str]         # N "<scan>_<vp>/<view index>"

    def __len__(self) -> int:
        return len(self.keys)


def held_out_scans(world: Path) -> set[str]:
    """Scans of the world's R2R val_unseen episodes (empty if the split is absent)."""
    path = world / "annotations" / "R2R_val_unseen.json"
    return {ep.scan for ep in load_r2r(path, tokenize=False)} if path.is_file() else set()


def build_view_dataset(world: str | Path, features: str | Path, prep: Preprocessing, out: str | Path,
                       views_per_viewpoint: int = 6, seed: int = 0, pano_width: int = DEFAULT_PANO_WIDTH,
                       progress: bool = True) -> dict[str, int]:
    """Render, crop and pair every kept view with its row of `features`; writes `out` atomically."""
    world, features = Path(world), Path(features)
    if not 1 <= views_per_viewpoint <= NUM_VIEWS:
        raise ValueError(f"views_per_viewpoint must be in 1..{NUM_VIEWS}, got {views_per_viewpoint}")
    if not features.is_file():
        raise DataError(features, "feature file does not exist (build it with `minivln features --world`)")
    houses = load_houses(world)
    held = held_out_scans(world)
    rng = np.random.default_rng(seed)
    parts: dict[str, tuple[list[np.ndarray], list[np.ndarray], list[str]]] = {s: ([], [], []) for s in SPLITS}
    with ViewFeatureStore(features) as store, tqdm(total=sum(len(h.viewpoints) for h in houses.values()),
                                                    desc="render views", unit="vp", disable=not progress) as bar:
        dim = store.dim
        for scan, house in sorted(houses.items()):
            renderer = Renderer(house)
            split = "val" if scan in held else "train"
            crops, targets, keys = parts[split]
            for vp in house.viewpoints:
                if (scan, vp.vp_id) not in store:
                    raise DataError(features, "no features for this viewpoint", record=feature_key(scan, vp.vp_id))
                pano = renderer.render_equirect(renderer.camera_position(vp.vp_id), heading=0.0,
                                                width=pano_width, height=pano_width // 2)       # (H, W, 3)
                views = panorama_views(pano, 0.0, prep.crop_size)                               # 36 x (h, w, 3)
                feats = store.get(scan, vp.vp_id)[:, :dim]                                      # (36, D)
                for ix in sorted(rng.choice(NUM_VIEWS, views_per_viewpoint, replace=False).tolist()):
                    crops.append(_resized_crop(views[ix], prep, ix))                            # (S, S, 3)
                    targets.append(feats[ix])
                    keys.append(f"{feature_key(scan, vp.vp_id)}/{ix}")
                bar.update(1)
        attrs = {"source": str(features.resolve()), "extractor_config": json.dumps(extractor_settings(features)),
                 "crop_size": prep.crop_size, "views_per_viewpoint": views_per_viewpoint, "seed": seed,
                 "feature_dim": dim}
    if not parts["train"][0]:
        raise DataError(world, "no training views (every house is held out)")

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            for key, value in attrs.items():
                f.attrs[key] = value
            for split, (crops, targets, keys) in parts.items():
                g = f.create_group(split)
                size, width = prep.crop_size, dim
                g.create_dataset("crops", data=np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8))
                g.create_dataset("targets", data=np.stack(targets).astype(np.float32) if targets
                                 else np.zeros((0, width), np.float32))
                g.create_dataset("keys", data=np.array(keys, dtype=h5py.string_dtype()))

    atomic_write(out, write)
    counts = {split: len(parts[split][2]) for split in SPLITS}
    log.info("view dataset %s: %s views (%d per viewpoint)", out, counts, views_per_viewpoint)
    return counts


def load_view_dataset(path: str | Path) -> tuple[dict[str, ViewSplit], dict[str, object]]:
    """({split: ViewSplit}, attrs) read fully into memory."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
            splits = {s: ViewSplit(f[s]["crops"][()], f[s]["targets"][()].astype(np.float32),
                                   [k.decode() if isinstance(k, bytes) else str(k) for k in f[s]["keys"][()]])
                      for s in SPLITS}
    except (OSError, KeyError) as exc:
        raise DataError(path, f"not a view dataset: {exc}") from None
    return splits, attrs


def dataset_matches(path: str | Path, features: str | Path, prep: Preprocessing, views_per_viewpoint: int,
                    seed: int) -> bool:
    """Whether an existing dataset file was built from the same feature file with the same settings."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            a = dict(f.attrs)
    except OSError:
        return False
    return (a.get("source") == str(Path(features).resolve()) and int(a.get("crop_size", -1)) == prep.crop_size
            and int(a.get("views_per_viewpoint", -1)) == views_per_viewpoint and int(a.get("seed", -1)) == seed)


def extractor_settings(path: str | Path) -> dict:
    """The extractor_config recorded in a view dataset or feature file ({} if absent)."""
    with h5py.File(path, "r") as f:
        text = f.attrs.get("extractor_config", "")
    return json.loads(text) if text else {}
