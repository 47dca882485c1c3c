"""Small hand-built data fixtures for the reader and metric tests (no real data, no network).

Toy scan TOY_SCAN (positions in metres, camera height 1.5 m, all on one floor):

    a(0,0) --2m-- b(2,0) --2m-- c(4,0) --2m-- d(6,0)
                                  |
                                 2m
                                  |
                                x(4,2)            z(10,10)  (included, but no edges)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from minivln_core.data.connectivity import ScanGraph, parse_connectivity

TOY_SCAN = "toyScan0001"
TOY_POSITIONS: dict[str, tuple[float, float, float]] = {
    "a": (0.0, 0.0, 1.5),
    "b": (2.0, 0.0, 1.5),
    "c": (4.0, 0.0, 1.5),
    "d": (6.0, 0.0, 1.5),
    "x": (4.0, 2.0, 1.5),
    "z": (10.0, 10.0, 1.5),
}
TOY_EDGES: list[tuple[str, str]] = [("a", "b"), ("b", "c"), ("c", "d"), ("c", "x")]
GT_PATH = ["a", "b", "c", "d"]  # 6 m


def connectivity_entries(positions: Mapping[str, tuple[float, float, float]],
                         edges: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """Matterport-format connectivity entries (pose = identity rotation + translation)."""
    ids = list(positions)
    linked = {frozenset(e) for e in edges}
    entries = []
    for vp in ids:
        x, y, z = positions[vp]
        pose = [1.0, 0.0, 0.0, x, 0.0, 1.0, 0.0, y, 0.0, 0.0, 1.0, z, 0.0, 0.0, 0.0, 1.0]
        unobstructed = [frozenset((vp, other)) in linked for other in ids]
        entries.append({"image_id": vp, "pose": pose, "included": True, "visible": list(unobstructed),
                        "unobstructed": unobstructed, "height": 1.5})
    return entries


def toy_graph() -> ScanGraph:
    """The toy scan as a ScanGraph."""
    return parse_connectivity(TOY_SCAN, connectivity_entries(TOY_POSITIONS, TOY_EDGES))


def write_json(path: Path, data: Any) -> Path:
    """Write JSON (NaN allowed, to build malformed fixtures) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


def write_jsonl(path: Path, rows: Iterable[Any]) -> Path:
    """Write one JSON value per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_toy_connectivity(folder: Path) -> Path:
    """A connectivity folder holding only the toy scan (plus scans.txt)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / f"{TOY_SCAN}_connectivity.json", connectivity_entries(TOY_POSITIONS, TOY_EDGES))
    (folder / "scans.txt").write_text(TOY_SCAN + "\n")
    return folder


def r2r_record(path_id: int = 7, path: list[str] | None = None, n_instr: int = 2, **extra: Any) -> dict[str, Any]:
    """One original-format R2R record over the toy scan."""
    record = {"distance": 6.0, "scan": TOY_SCAN, "path_id": path_id, "path": list(path or GT_PATH),
              "heading": 1.25, "instructions": [f"Walk past the sofa and stop at door {j}." for j in range(n_instr)]}
    record.update(extra)
    return record


def reverie_record(path_id: int = 7, obj_id: int = 42, path: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """One v1-format REVERIE record over the toy scan."""
    record = {"distance": 6.0, "ix": 3, "scan": TOY_SCAN, "heading": 0.5, "path_id": path_id, "objId": obj_id,
              "id": f"{path_id}_{obj_id}", "path": list(path or GT_PATH),
              "instructions": ["Go to the lounge and clean the lamp", "Bring me the lamp"],
              "instructions_l": ["Walk forward and stop."]}
    record.update(extra)
    return record


def bbox_entries() -> dict[str, Any]:
    """Merged BBoxes.json content: object 42 visible from c and d, object 9 only listed (empty) at b."""
    lamp = {"name": "lamp", "visible_pos": [3, 15], "bbox2d": [[10, 20, 30, 40], [100, 120, 30, 35]]}
    return {
        f"{TOY_SCAN}_c": {"42": lamp, "9": {"name": "door", "visible_pos": [0], "bbox2d": [[0, 0, 5, 5]]}},
        f"{TOY_SCAN}_d": {"42": {"name": "lamp", "visible_pos": [27], "bbox2d": [[1.5, 2.5, 3.0, 4.0]]}},
        f"{TOY_SCAN}_b": {"9": {"name": "door", "visible_pos": [], "bbox2d": []}},
    }


def write_real_format_data(root: Path, houses: int = 6, official_val_unseen: bool = False) -> Path:
    """A data folder like ../shared/data: a generated world's graphs, R2R / REVERIE and BBoxes.json in
    the real formats under `root/synth`, found by name at any depth, without val_unseen annotations
    (unless `official_val_unseen`: then its val_unseen files stand for the official ones)."""
    from minivln_core.data.synth import SynthConfig, generate_world

    generate_world(root / "synth", SynthConfig(houses=houses, paths_per_house=4, reverie_per_house=3, feature_dim=16))
    for path in (root / "synth" / "annotations").glob("*_val_unseen.json"):
        if not official_val_unseen:
            path.unlink()
    return root
