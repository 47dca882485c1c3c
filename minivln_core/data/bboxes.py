"""REVERIE object annotations per viewpoint: which objects are visible in which of the 36 views.

Two layouts are read (both originate from the REVERIE release, github YuankaiQi/REVERIE):

* DUET's merged `BBoxes.json`: `{"<scan>_<vp>": {objId: {name, visible_pos, bbox2d, ...}}}`.
* The original folder `BBox/` with one file `<scan>_<vp>.json` per viewpoint holding
  `{vp: {objId: {name, visible_pos, bbox2d}}}` (the inner key must be the file's viewpoint).

`visible_pos` lists view indices 0..35 (ix = 12*row + col) and `bbox2d` holds one
`[x, y, w, h]` box (pixels of the 640x480 view) per listed view. Objects with an empty
`visible_pos` do occur (a known defect of the v1 boxes) and are kept, but they never make a
viewpoint part of the object's goal set. Extra per-object fields are ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from minivln_core.errors import DataError
from minivln_core.frames import NUM_VIEWS
from minivln_core.io_utils import read_json

BBox = tuple[float, float, float, float]  # x, y, w, h in pixels


@dataclass(frozen=True)
class ObjectAnnotation:
    """One object as seen from one viewpoint."""

    obj_id: str
    name: str
    visible_pos: list[int] = field(default_factory=list)  # view indices 0..35
    bbox2d: list[BBox] = field(default_factory=list)       # one (x, y, w, h) per entry of visible_pos


def _parse_object(path: Path, where: str, obj_id: str, raw: Any) -> ObjectAnnotation:
    record = f"{where}/{obj_id}"
    if not isinstance(raw, dict):
        raise DataError(path, f"object entry is not a JSON object ({type(raw).__name__})", record=record)
    name = raw.get("name", "")
    if not isinstance(name, str):
        raise DataError(path, f"expected a string, got {name!r}", record=record, field="name")
    views = raw.get("visible_pos", [])
    if not isinstance(views, list):
        raise DataError(path, f"expected a list of view indices, got {type(views).__name__}", record=record,
                        field="visible_pos")
    for k, ix in enumerate(views):
        if isinstance(ix, bool) or not isinstance(ix, int) or not 0 <= ix < NUM_VIEWS:
            raise DataError(path, f"item {k} is not a view index in 0..{NUM_VIEWS - 1}: {ix!r}", record=record,
                            field="visible_pos")
    boxes = raw.get("bbox2d", [])
    if not isinstance(boxes, list) or len(boxes) != len(views):
        got = len(boxes) if isinstance(boxes, list) else type(boxes).__name__
        raise DataError(path, f"expected {len(views)} boxes (one per visible_pos entry), got {got}", record=record,
                        field="bbox2d")
    parsed: list[BBox] = []
    for k, box in enumerate(boxes):
        if (not isinstance(box, list) or len(box) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)):
            raise DataError(path, f"box {k} is not [x, y, w, h] with 4 finite numbers: {box!r}", record=record,
                            field="bbox2d")
        if box[2] < 0 or box[3] < 0:
            raise DataError(path, f"box {k} has a negative width or height: {box!r}", record=record, field="bbox2d")
        parsed.append((float(box[0]), float(box[1]), float(box[2]), float(box[3])))
    return ObjectAnnotation(obj_id=obj_id, name=name, visible_pos=list(views), bbox2d=parsed)


def _parse_objects(path: Path, where: str, raw: Any) -> dict[str, ObjectAnnotation]:
    if not isinstance(raw, dict):
        raise DataError(path, f"expected an object mapping objId -> annotation, got {type(raw).__name__}",
                        record=where)
    return {str(obj_id): _parse_object(path, where, str(obj_id), obj) for obj_id, obj in raw.items()}


def split_key(key: str, path: str | Path = "<memory>") -> tuple[str, str]:
    """Split "<scan>_<viewpoint>" (scan ids never contain '_')."""
    scan, sep, vp = key.partition("_")
    if not sep or not scan or not vp:
        raise DataError(path, f"key '{key}' is not of the form <scan>_<viewpoint>", record=key)
    return scan, vp


class ObjectIndex:
    """Objects visible at each (scan, viewpoint) and, per object, the viewpoints that see it."""

    def __init__(self, entries: Mapping[tuple[str, str], Mapping[str, ObjectAnnotation]], source: str = "<memory>"):
        self.source = source
        self._entries: dict[tuple[str, str], dict[str, ObjectAnnotation]] = {k: dict(v) for k, v in entries.items()}
        self._goals: dict[tuple[str, str], list[str]] = {}
        for (scan, vp), objects in self._entries.items():
            for obj_id, ann in objects.items():
                if ann.visible_pos:
                    self._goals.setdefault((scan, obj_id), []).append(vp)

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_merged(cls, path: str | Path) -> "ObjectIndex":
        """Read DUET's merged `BBoxes.json`."""
        path = Path(path)
        data = read_json(path)
        if not isinstance(data, dict):
            raise DataError(path, f"expected a JSON object keyed by <scan>_<viewpoint>, got {type(data).__name__}")
        entries = {split_key(key, path): _parse_objects(path, key, objects) for key, objects in data.items()}
        return cls(entries, source=str(path))

    @classmethod
    def from_folder(cls, folder: str | Path) -> "ObjectIndex":
        """Read the original per-viewpoint `BBox/<scan>_<vp>.json` files."""
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(folder, "bbox folder does not exist")
        entries: dict[tuple[str, str], dict[str, ObjectAnnotation]] = {}
        for file in sorted(folder.glob("*.json")):
            scan, vp = split_key(file.stem, file)
            data = read_json(file)
            if not isinstance(data, dict):
                raise DataError(file, f"expected a JSON object {{viewpoint: objects}}, got {type(data).__name__}")
            objects: dict[str, ObjectAnnotation] = {}
            for key, raw in data.items():
                if key != vp:
                    raise DataError(file, f"viewpoint key '{key}' does not match the file name's viewpoint '{vp}'",
                                    record=key)
                objects.update(_parse_objects(file, f"{scan}_{vp}", raw))
            entries[(scan, vp)] = objects
        return cls(entries, source=str(folder))

    @classmethod
    def load(cls, path: str | Path) -> "ObjectIndex":
        """`from_folder` for a directory, `from_merged` for a file."""
        path = Path(path)
        return cls.from_folder(path) if path.is_dir() else cls.from_merged(path)

    # -- queries -----------------------------------------------------------------------------
    def objects_at(self, scan: str, vp: str) -> dict[str, ObjectAnnotation]:
        """objId -> annotation of every object annotated at the viewpoint ({} if none)."""
        return dict(self._entries.get((scan, vp), {}))

    def goal_viewpoints(self, scan: str, obj_id: str | int) -> list[str]:
        """Viewpoints of `scan` where the object has a non-empty visible_pos (file order)."""
        return list(self._goals.get((scan, str(obj_id)), []))

    def scans(self) -> list[str]:
        """Sorted scan ids that have at least one annotated viewpoint."""
        return sorted({scan for scan, _ in self._entries})

    def viewpoints(self, scan: str) -> list[str]:
        """Annotated viewpoints of one scan."""
        return [vp for s, vp in self._entries if s == scan]

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._entries)


def load_bboxes(path: str | Path) -> ObjectIndex:
    """Read `BBoxes.json` or a `BBox/` folder into an ObjectIndex."""
    return ObjectIndex.load(path)
