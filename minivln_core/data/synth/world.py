"""`generate_world`: write a complete synthetic dataset in the real R2R / REVERIE / Matterport formats.

Layout of `out_dir` (every file written atomically; same config -> byte-identical files):

    connectivity/<scan>_connectivity.json, connectivity/scans.txt
    annotations/R2R_{train,val_seen,val_unseen}.json
    annotations/REVERIE_{train,val_seen,val_unseen}.json
    annotations/BBoxes.json
    features/views.h5      (36, D + C) per "<scan>_<vp>"; root attrs feature_dim = D, class_names
    features/objects.h5    (n_obj, D + C) per "<scan>_<vp>" with obj_ids/directions/sizes/bboxes
    world.json             config, split scans, class names and counts

val_unseen houses are disjoint from train houses; val_seen holds other paths of the train houses.
JSON is written with sorted keys and floats rounded to fixed decimals; nothing depends on time.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from minivln_core.config import from_dict, to_dict
from minivln_core.data.connectivity import SUFFIX, ScanGraph, parse_connectivity
from minivln_core.data.features import write_object_features, write_view_features
from minivln_core.data.synth.config import SynthConfig
from minivln_core.data.synth.features import NUM_CLASSES, class_embeddings, house_object_features, house_view_features
from minivln_core.data.synth.instructions import InstructionWriter, path_candidates, reverie_goals
from minivln_core.data.synth.layout import CLASS_NAMES, House, build_house
from minivln_core.data.synth.visibility import bboxes_entries, house_sightings
from minivln_core.errors import DataError
from minivln_core.io_utils import atomic_write_text, read_json

SPLITS = ("train", "val_seen", "val_unseen")
log = logging.getLogger(__name__)
FORMAT = "minivln-synth-world"
VERSION = 1


def _dump(data: Any, indent: int | None = None) -> str:
    return json.dumps(data, sort_keys=True, indent=indent, allow_nan=False) + "\n"


@dataclass
class _Annotations:
    """Records of every split, filled house by house."""

    r2r: dict[str, list[dict]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    reverie: dict[str, list[dict]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    next_r2r: int = 1
    next_reverie: int = 1


def _split_items(items: list, unseen: bool, cfg: SynthConfig) -> dict[str, list]:
    """A house's items -> {split: items}: all val_unseen, or val_seen first then train."""
    if unseen:
        return {"val_unseen": items}
    n_val = int(round(len(items) * cfg.val_seen_fraction))
    return {"val_seen": items[:n_val], "train": items[n_val:]}


def _instructions(draw, count: int) -> list[str]:
    """`count` instructions from `draw()`, redrawing a few times to avoid exact duplicates."""
    out: list[str] = []
    for _ in range(count):
        text = draw()
        for _ in range(4):
            if text not in out:
                break
            text = draw()
        out.append(text)
    return out


def _r2r_records(house: House, graph: ScanGraph, candidates: list, cfg: SynthConfig, unseen: bool,
                 ann: _Annotations) -> None:
    """Draw the house's R2R paths, write their instructions and append the records to `ann`."""
    ids = graph.viewpoints
    writer = InstructionWriter(house)
    rng = np.random.default_rng([cfg.seed, house.index, 1])
    chosen = [candidates[k] for k in rng.permutation(len(candidates))[: cfg.paths_per_house]]
    for split, items in _split_items(chosen, unseen, cfg).items():
        for _, _, path in items:
            heading = float(rng.uniform(0.0, 2 * math.pi))
            texts = _instructions(lambda: writer.r2r(path, heading, rng), cfg.instructions_per_path)
            ann.r2r[split].append({"distance": round(graph.path_length([ids[i] for i in path]), 2),
                                   "scan": house.scan, "path_id": ann.next_r2r, "path": [ids[i] for i in path],
                                   "heading": round(heading, 4), "instructions": texts})
            ann.next_r2r += 1


def _reverie_picks(house: House, sightings: list, candidates: list, cfg: SynthConfig,
                   rng: np.random.Generator) -> list[tuple[int, list[int]]]:
    """(object index, path) pairs: objects round-robin in random order, each time from a new start."""
    goals = reverie_goals(house, sightings)
    starts: dict[int, list[list[int]]] = {}
    for _, goal, path in candidates:
        starts.setdefault(goal, []).append(path)
    objects = [obj for obj in goals if goals[obj] in starts]
    objects = [objects[k] for k in rng.permutation(len(objects))]
    picks: list[tuple[int, list[int]]] = []
    used: set[tuple[int, int]] = set()
    while len(picks) < cfg.reverie_per_house:
        before = len(picks)
        for obj in objects:
            options = [p for p in starts[goals[obj]] if (obj, p[0]) not in used]
            if options and len(picks) < cfg.reverie_per_house:
                path = options[int(rng.integers(len(options)))]
                used.add((obj, path[0]))
                picks.append((obj, path))
        if len(picks) == before:   # every (object, start) pair is used
            break
    return picks


def _reverie_records(house: House, graph: ScanGraph, candidates: list, sightings: list, cfg: SynthConfig,
                     unseen: bool, ann: _Annotations) -> None:
    """Draw the house's REVERIE goals and paths and append the records (v1 schema) to `ann`."""
    ids = graph.viewpoints
    writer = InstructionWriter(house)
    rng = np.random.default_rng([cfg.seed, house.index, 2])
    picks = _reverie_picks(house, sightings, candidates, cfg, rng)
    for split, items in _split_items(picks, unseen, cfg).items():
        for obj, path in items:
            heading = float(rng.uniform(0.0, 2 * math.pi))
            obj_id = house.objects[obj].obj_id
            texts = _instructions(lambda: writer.reverie(obj, rng), cfg.instructions_per_path)
            r2r_texts = [writer.r2r(path, heading, rng) for _ in range(cfg.instructions_per_path)]
            ann.reverie[split].append({
                "distance": round(graph.path_length([ids[i] for i in path]), 2), "ix": len(ann.reverie[split]),
                "scan": house.scan, "heading": round(heading, 4), "path_id": ann.next_reverie, "objId": int(obj_id),
                "id": f"{ann.next_reverie}_{obj_id}", "path": [ids[i] for i in path], "instructions": texts,
                "instructions_l": r2r_texts})
            ann.next_reverie += 1


def split_houses(cfg: SynthConfig) -> list[int]:
    """Indices of the val_unseen houses (sorted); every other house is a train house."""
    n_unseen = min(cfg.houses - 1, max(1, int(round(cfg.houses * cfg.val_unseen_fraction))))
    order = np.random.default_rng([cfg.seed, 1_000_003]).permutation(cfg.houses)
    return sorted(int(i) for i in order[:n_unseen])


def generate_world(out_dir: str | Path, config: SynthConfig | None = None) -> dict[str, Any]:
    """Generate and write the world described by `config` (default SynthConfig()); return its counts."""
    cfg = config if config is not None else SynthConfig()
    out = Path(out_dir)
    houses = [build_house(cfg, i) for i in range(cfg.houses)]
    scans = [h.scan for h in houses]
    if len(set(scans)) != len(scans):
        raise RuntimeError(f"seed {cfg.seed} produced a repeated scan id; choose another seed")
    unseen = set(split_houses(cfg))
    embeddings = class_embeddings(cfg)
    ann = _Annotations()
    bboxes: dict[str, dict] = {}
    views: dict[str, np.ndarray] = {}
    objects: dict = {}
    for house in houses:
        sightings = house_sightings(house, cfg)
        bboxes.update(bboxes_entries(house, sightings))
        views.update(house_view_features(house, cfg, embeddings))
        objects.update(house_object_features(house, sightings, cfg, embeddings))
        graph = parse_connectivity(house.scan, house.connectivity_entries())
        candidates = path_candidates(graph, cfg)   # [(start, goal, path)] as viewpoint indices
        _r2r_records(house, graph, candidates, cfg, house.index in unseen, ann)
        _reverie_records(house, graph, candidates, sightings, cfg, house.index in unseen, ann)
        atomic_write_text(out / "connectivity" / f"{house.scan}{SUFFIX}", _dump(house.connectivity_entries()))
    atomic_write_text(out / "connectivity" / "scans.txt", "".join(f"{s}\n" for s in sorted(scans)))
    for split in SPLITS:
        atomic_write_text(out / "annotations" / f"R2R_{split}.json", _dump(ann.r2r[split], indent=2))
        atomic_write_text(out / "annotations" / f"REVERIE_{split}.json", _dump(ann.reverie[split], indent=2))
    atomic_write_text(out / "annotations" / "BBoxes.json", _dump(bboxes))
    attrs = {"feature_dim": cfg.feature_dim, "num_classes": NUM_CLASSES,
             "class_names": np.array(CLASS_NAMES, dtype=h5py.string_dtype()), "source": FORMAT}
    write_view_features(out / "features" / "views.h5", dict(sorted(views.items())), attrs=attrs)
    write_object_features(out / "features" / "objects.h5", dict(sorted(objects.items())), attrs=attrs)

    split_scans = {"train": sorted(h.scan for h in houses if h.index not in unseen),
                   "val_unseen": sorted(h.scan for h in houses if h.index in unseen)}
    counts = {
        "houses": {k: len(v) for k, v in split_scans.items()},
        "viewpoints": {k: sum(len(h.viewpoints) for h in houses if h.scan in v) for k, v in split_scans.items()},
        "objects": sum(len(h.objects) for h in houses),
        "r2r": {s: {"paths": len(ann.r2r[s]), "instructions": sum(len(r["instructions"]) for r in ann.r2r[s])}
                for s in SPLITS},
        "reverie": {s: {"paths": len(ann.reverie[s]),
                        "instructions": sum(len(r["instructions"]) for r in ann.reverie[s])} for s in SPLITS},
        "feature_dim": cfg.feature_dim, "num_classes": NUM_CLASSES,
    }
    for task in ("r2r", "reverie"):
        empty = [s for s in SPLITS if counts[task][s]["paths"] == 0]
        if empty:
            log.warning("synthetic world has no %s records in %s (houses too small for path_hops=%s?)",
                        task.upper(), ", ".join(empty), list(cfg.path_hops))
    world = {"format": FORMAT, "version": VERSION, "config": to_dict(cfg), "splits": split_scans,
             "class_names": list(CLASS_NAMES), "counts": counts}
    atomic_write_text(out / "world.json", _dump(world, indent=2))
    return {"out_dir": str(out), "seed": cfg.seed, **counts}


def load_houses(world_root: str | Path) -> dict[str, House]:
    """Rebuild the houses of a generated world from its world.json (scan id -> House)."""
    path = Path(world_root) / "world.json"
    world = read_json(path, "not a generated world (no world.json); make one with `minivln synth`")
    if world.get("format") != FORMAT:
        raise DataError(path, f"format is {world.get('format')!r}, expected {FORMAT!r}", field="format")
    cfg = from_dict(SynthConfig, world["config"])
    houses = [build_house(cfg, i) for i in range(cfg.houses)]
    return {h.scan: h for h in houses}
