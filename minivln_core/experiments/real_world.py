"""The real-house semantic benchmark as a world folder: Matterport graphs, R2R / REVERIE
annotations and object-name view features, with some training houses held out.

The public data here has R2R train and val_seen but no val_unseen, so unseen-house success is
measured on training houses set aside (issue 4): `holdout` houses are drawn (seeded) from the
scans of R2R train; every instruction in them, from train or val_seen, goes to `val_unseen`,
and train / val_seen keep the other houses. Graphs and boxes are linked, not copied (the data is
licensed for research and stays where it is); annotations are rewritten atomically; the view
features are the object-name store of `perception.semantic` (docs/data.md). REVERIE annotations
are split the same way when a folder holds both REVERIE_train.json and REVERIE_val_seen.json (in
../shared/data only `reverie/v2` does: REVERIE train exists only in v2, and v1's val_seen is not
mixed with v2's train); its object features come from `perception.semantic_objects`.

Every house with a graph and boxes gets view (and object) features, annotated or not, so a policy
trained here runs on the official val_unseen / test houses of whoever holds those annotations; an
official `R2R_val_unseen.json` (beside R2R_train.json) or `REVERIE_val_unseen.json` (in the REVERIE
version folder) in the data folder becomes the split `official_val_unseen`, beside the held-out one.

Every annotated path is checked against the graphs: each viewpoint included and each hop an edge
(`data.r2r.validate_against`); a path that is not walkable is an error naming the file and record.

    <out>/connectivity/<scan>_connectivity.json -> the source files (+ scans.txt)
    <out>/annotations/R2R_{train,val_seen,val_unseen[,official_val_unseen]}.json, REVERIE_... (when present),
                     BBoxes.json
    <out>/features/views.h5 (+ views.h5.classes.json), objects.h5 (with REVERIE)
    <out>/world.json   format "minivln-real-world": sources, held-out scans, house and instruction counts
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from minivln_core.data.connectivity import SUFFIX, load_connectivity
from minivln_core.data.r2r import load_r2r, validate_against
from minivln_core.data.reverie import load_reverie
from minivln_core.errors import DataError
from minivln_core.io_utils import atomic_write_json, atomic_write_text, read_json

SPLITS = ("train", "val_seen")
OFFICIAL = "official_val_unseen"   # the split name of an official val_unseen file, when the data folder has one
REQUIRED = {"R2R_train.json", "R2R_val_seen.json", "BBoxes.json"}


def find_sources(data: Path) -> dict[str, Path]:
    """{file name: path} of the annotation files and `connectivity` (the folder of the graphs) under
    `data`, searched recursively (the first hit in sorted order); missing required parts name `data`."""
    data = Path(data)
    if not data.is_dir():
        raise DataError(data, "data folder does not exist")
    found: dict[str, Path] = {}
    for name in sorted(REQUIRED):
        hits = sorted(data.rglob(name))
        if hits:
            found[name] = hits[0]
    # REVERIE: the first folder (sorted) that holds every split, so versions are never mixed.
    for folder in sorted({p.parent for p in data.rglob("REVERIE_train.json")}):
        if all((folder / f"REVERIE_{s}.json").is_file() for s in SPLITS):
            found.update({f"REVERIE_{s}.json": folder / f"REVERIE_{s}.json" for s in SPLITS + ("val_unseen",)
                          if (folder / f"REVERIE_{s}.json").is_file()})
            break
    # An official R2R val_unseen (other houses than train's) is kept beside the held-out split; from the
    # folder of R2R_train.json, so releases are not mixed.
    if "R2R_train.json" in found and (found["R2R_train.json"].parent / "R2R_val_unseen.json").is_file():
        found["R2R_val_unseen.json"] = found["R2R_train.json"].parent / "R2R_val_unseen.json"
    graphs = sorted(data.rglob(f"*{SUFFIX}"))
    if graphs:
        found["connectivity"] = graphs[0].parent
    missing = sorted((REQUIRED | {"connectivity"}) - set(found))
    if missing:
        raise DataError(data, f"no {', '.join(missing)} found under this folder")
    return found


def held_out_scans(items: list[dict], holdout: int, seed: int, source: Path | str = "R2R_train.json") -> list[str]:
    """`holdout` scans drawn without replacement (seeded) from the scans of `items`, sorted."""
    scans = sorted({str(item["scan"]) for item in items})
    if not 1 <= holdout < len(scans):
        raise DataError(source, f"holdout must be between 1 and {len(scans) - 1} (the file has "
                                f"{len(scans)} houses), got {holdout}")
    chosen = np.random.default_rng(seed).choice(len(scans), size=holdout, replace=False)
    return sorted(scans[i] for i in chosen)


def _link(target: Path, link: Path) -> None:
    """A symlink `link` -> `target` (absolute), replacing an old one atomically."""
    tmp = link.with_name(f".{link.name}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target.resolve(), tmp)
    os.replace(tmp, link)


def _items(path: Path) -> list[dict]:
    items = read_json(path)
    if not isinstance(items, list) or any(not isinstance(i, dict) or "scan" not in i for i in items):
        raise DataError(path, "expected a JSON list of records with a 'scan' field")
    return items


def build_real_world(data: str | Path, out: str | Path, holdout: int = 8, seed: int = 0,
                     features: bool = True, far_field: float = 0.0) -> dict[str, Any]:
    """Arrange `data` as the world folder `out` (see the module docstring); returns world.json's content."""
    src = find_sources(Path(data))
    out = Path(out)
    (out / "connectivity").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    r2r = {split: _items(src[f"R2R_{split}.json"]) for split in SPLITS}
    held = set(held_out_scans(r2r["train"], holdout, seed, src["R2R_train.json"]))
    graphs = load_connectivity(src["connectivity"])
    counts: dict[str, dict[str, int]] = {}
    used: set[str] = set()                     # scans any annotation refers to
    for prefix in ("R2R", "REVERIE"):
        if not all(f"{prefix}_{s}.json" in src for s in SPLITS):
            continue  # REVERIE is optional
        parts = r2r if prefix == "R2R" else {s: _items(src[f"REVERIE_{s}.json"]) for s in SPLITS}
        official = src.get(f"{prefix}_val_unseen.json")
        reader = load_r2r if prefix == "R2R" else load_reverie
        for path in [src[f"{prefix}_{s}.json"] for s in SPLITS] + ([official] if official else []):
            # every path a walk in its house's graph (the readers' check, on the raw files)
            validate_against(reader(path, tokenize=False), graphs, path)
        split = {"train": [i for i in parts["train"] if i["scan"] not in held],
                 "val_seen": [i for i in parts["val_seen"] if i["scan"] not in held],
                 "val_unseen": [i for s in SPLITS for i in parts[s] if i["scan"] in held]}
        if official is not None:  # scored as its own split; its houses are not the held-out ones
            split[OFFICIAL] = _items(official)
        for name, items in split.items():
            atomic_write_json(out / "annotations" / f"{prefix}_{name}.json", items, indent=None)
            used.update(str(i["scan"]) for i in items)
        counts[prefix.lower()] = {name: len(items) for name, items in split.items()}
    _link(src["BBoxes.json"], out / "annotations" / "BBoxes.json")
    scans = sorted(graphs)
    for scan in scans:
        _link(src["connectivity"] / f"{scan}{SUFFIX}", out / "connectivity" / f"{scan}{SUFFIX}")
    atomic_write_text(out / "connectivity" / "scans.txt", "\n".join(scans) + "\n")
    stats: dict[str, int] = {}
    if features:
        from minivln_core.perception.semantic import build_semantic_store

        from minivln_core.data.bboxes import ObjectIndex
        from minivln_core.perception.semantic import NameEmbedder
        from minivln_core.perception.semantic_objects import build_semantic_objects

        index, embedder = ObjectIndex.load(src["BBoxes.json"]), NameEmbedder()
        # Annotated houses and every other house with a graph and boxes: a checkpoint trained here is then
        # scored on the official val_unseen / test houses by whoever holds those annotations.
        featured = sorted(used | (set(scans) & set(index.scans())))
        stats = build_semantic_store(index, out / "connectivity", out / "features" / "views.h5",
                                     scans=featured, embedder=embedder, far_field=far_field)
        stats["far_field_m"] = far_field
        if "reverie" in counts:
            stats["objects"] = build_semantic_objects(index, out / "connectivity", out / "features" / "objects.h5",
                                                      scans=featured, embedder=embedder)
    houses = {"train": len({i["scan"] for i in r2r["train"]} - held), "val_unseen": len(held),
              "graphs": len(scans)}
    if "R2R_val_unseen.json" in src:
        houses[OFFICIAL] = len({i["scan"] for i in _items(src["R2R_val_unseen.json"])})
    sources = {name: str(path.resolve()) for name, path in sorted(src.items())}
    info = {"format": "minivln-real-world", "version": 2, "source": str(Path(data).resolve()), "sources": sources,
            "holdout": {"count": holdout, "seed": seed, "scans": sorted(held)}, "houses": houses,
            "counts": counts, "features": stats}
    atomic_write_json(out / "world.json", info)
    return info
