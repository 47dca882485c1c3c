"""REVERIE object features of the Matterport houses from BBoxes.json: one row per annotated object.

The view features of the real houses (`perception.semantic`) say which object *names* each of the
36 views sees. REVERIE also asks the agent to point at the target object (the object-grounding
head, scored as RGS / RGSPL), so it needs the objects themselves, as DUET's object features give
them (there: ViT features of the box crops). Without images, an object here is:

* features (384,): the all-MiniLM-L6-v2 embedding of its normalised name (the same embedder and
  name normalisation as the view features, so a name has one vector everywhere; deterministic);
* the view it is seen from best: the entry of `visible_pos` with the largest box (ties: the lower
  view index), and that box (x, y, w, h) in pixels of the 640x480 view;
* direction (absolute heading in [0, 2pi), elevation), rad: the ray through the box centre of that
  view (`perception.equirect.pixel_directions`, VFOV 60 deg pinhole); the policy's object tokens
  take it relative to the agent's heading and the box height / width / area normalised by the
  image size (`agent.inputs`).

Objects with an empty `visible_pos` (a known defect of the v1 boxes) cannot be pointed at from the
viewpoint and are left out; so are objects without a name. Every included viewpoint with at least
one object gets an entry; `ObjectFeatureStore.get` returns zero objects for the others.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from minivln_core.data.bboxes import ObjectAnnotation, ObjectIndex
from minivln_core.data.connectivity import load_scan
from minivln_core.data.features import ObjectFeatures, feature_key, write_object_features
from minivln_core.errors import DataError
from minivln_core.frames import view_elevation, view_heading
from minivln_core.perception.equirect import pixel_directions
from minivln_core.perception.semantic import ENCODER, NameEmbedder, normalise_name

log = logging.getLogger("minivln.perception")


def best_view(ann: ObjectAnnotation) -> tuple[int, tuple[float, float, float, float]] | None:
    """(view index, (x, y, w, h)) of the object's largest box (ties: lower view), None if it is never seen."""
    if not ann.visible_pos:
        return None
    k = min(range(len(ann.visible_pos)),
            key=lambda j: (-ann.bbox2d[j][2] * ann.bbox2d[j][3], ann.visible_pos[j]))
    return ann.visible_pos[k], tuple(float(v) for v in ann.bbox2d[k])  # type: ignore[return-value]


def viewpoint_objects(objects: Mapping[str, ObjectAnnotation], embedder: NameEmbedder) -> ObjectFeatures | None:
    """Object rows of one viewpoint, ordered by object id (numeric ids numerically), or None if none is seen."""
    rows: list[tuple[str, str, int, tuple[float, float, float, float]]] = []
    for obj_id, ann in objects.items():
        name, seen = normalise_name(ann.name), best_view(ann)
        if name and seen is not None:
            rows.append((obj_id, name, *seen))
    if not rows:
        return None
    rows.sort(key=lambda r: (0, int(r[0]), "") if r[0].isdigit() else (1, 0, r[0]))
    boxes = np.array([r[3] for r in rows], dtype=np.float64)                        # (n, 4) x, y, w, h
    cx, cy = boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2           # (n,) box centres
    heading = np.array([view_heading(r[2]) for r in rows])                          # (n,) view centres
    elevation = np.array([view_elevation(r[2]) for r in rows])
    head = np.empty(len(rows))
    elev = np.empty(len(rows))
    for j in range(len(rows)):
        head[j], elev[j] = pixel_directions(cx[j], cy[j], float(heading[j]), float(elevation[j]))
    return ObjectFeatures(features=embedder.embed([r[1] for r in rows]),           # (n, 384)
                          obj_ids=[r[0] for r in rows],
                          directions=np.stack([head, elev], 1).astype(np.float32),  # (n, 2)
                          sizes=boxes[:, 2:4].astype(np.float32),                   # (n, 2) w, h px
                          bboxes=boxes.astype(np.float32))                          # (n, 4)


def build_semantic_objects(bboxes: str | Path | ObjectIndex, connectivity_dir: str | Path, out_path: str | Path,
                           scans: Sequence[str] | None = None, embedder: NameEmbedder | None = None,
                           compression: str | None = None) -> dict[str, int]:
    """Write the object features of every included viewpoint of `scans` (default: every annotated scan)."""
    index = bboxes if isinstance(bboxes, ObjectIndex) else ObjectIndex.load(bboxes)
    source = index.source
    scan_list = sorted(set(scans)) if scans is not None else index.scans()
    if not scan_list:
        raise DataError(source, "no scans to build (the annotation file lists none)")
    embedder = embedder or NameEmbedder()
    mapping: dict[str, ObjectFeatures] = {}
    stats: Counter[str] = Counter(scans=len(scan_list))
    for scan in scan_list:
        for vp in load_scan(connectivity_dir, scan).viewpoints:
            objects = index.objects_at(scan, vp)
            feats = viewpoint_objects(objects, embedder)
            stats["objects_never_seen"] += sum(1 for a in objects.values() if not a.visible_pos)
            if feats is not None:
                mapping[feature_key(scan, vp)] = feats
                stats["viewpoints_with_objects"] += 1
                stats["objects"] += len(feats)
    attrs = {"feature_dim": embedder.dim, "encoder": ENCODER, "kind": "semantic-objects",
             "object_vector": "MiniLM embedding of the normalised object name",
             "direction": "ray through the centre of the largest box"}
    write_object_features(out_path, mapping, attrs=attrs, compression=compression)
    log.info("object store %s: %d scans, %d objects at %d viewpoints (%d never seen, left out)", out_path,
             stats["scans"], stats["objects"], stats["viewpoints_with_objects"], stats["objects_never_seen"])
    return dict(stats)
