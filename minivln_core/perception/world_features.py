"""View features of a generated world from its rendered panoramas (`minivln features --world`).

Each viewpoint's panorama is rendered facing heading 0, sliced into the 36 views and encoded by
`perception.panorama.encode_panorama` — the function the robot runs on its camera panoramas.
The class columns of the world's semantic store (the masked-view-classification targets) are
copied after the feature columns, and the extractor's settings are stored as file attributes so
the robot can rebuild the same extractor.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from minivln_core.config import to_dict
from minivln_core.data.features import ViewFeatureStore, feature_key, write_view_features
from minivln_core.data.synth.render import Renderer
from minivln_core.data.synth.world import load_houses
from minivln_core.data.world import WorldPaths
from minivln_core.perception.panorama import DEFAULT_PANO_WIDTH, encode_panorama

log = logging.getLogger("minivln.features")


def build_world_features(world_root: str | Path, extractor, out: str | Path | None = None,
                         pano_width: int = DEFAULT_PANO_WIDTH, progress: bool = True) -> dict[str, Any]:
    """Render, slice and encode every viewpoint of the world; returns counts and timings."""
    paths = WorldPaths(Path(world_root))
    out = Path(out) if out is not None else paths.root / "features" / "views_vit.h5"
    houses = load_houses(paths.root)
    semantic = ViewFeatureStore(paths.root / "features" / "views.h5") if (
        paths.root / "features" / "views.h5").exists() else None
    mapping: dict[str, np.ndarray] = {}
    total = sum(len(h.viewpoints) for h in houses.values())
    started = time.perf_counter()
    render_s = 0.0
    with tqdm(total=total, desc="render + encode", unit="vp", disable=not progress, leave=False) as bar:
        for scan, house in sorted(houses.items()):
            renderer = Renderer(house)
            for vp in house.viewpoints:
                t0 = time.perf_counter()
                pano = renderer.render_equirect(renderer.camera_position(vp.vp_id), heading=0.0,
                                                width=pano_width, height=pano_width // 2)   # (H, W, 3)
                render_s += time.perf_counter() - t0
                feats = encode_panorama(extractor, pano, heading=0.0)                         # (36, D)
                if semantic is not None and semantic.has_logits(scan, vp.vp_id):
                    feats = np.concatenate([feats, semantic.logits(scan, vp.vp_id)], axis=1)     # (36, D + C)
                mapping[feature_key(scan, vp.vp_id)] = feats
                bar.update(1)
    attrs: dict[str, Any] = {**extractor.describe(), "feature_dim": extractor.dim, "pano_width": pano_width,
                             "extractor_config": json.dumps(to_dict(extractor.config)), "source": "rendered"}
    if semantic is not None:
        with h5py.File(paths.root / "features" / "views.h5", "r") as f:
            for key in ("num_classes", "class_names"):
                if key in f.attrs:
                    attrs[key] = f.attrs[key]
    write_view_features(out, dict(sorted(mapping.items())), attrs=attrs)
    seconds = time.perf_counter() - started
    log.info("encoded %d viewpoints in %.1f s (%.1f s rendering) -> %s", len(mapping), seconds, render_s, out)
    return {"viewpoints": len(mapping), "seconds": round(seconds, 2), "render_seconds": round(render_s, 2),
            "feature_dim": extractor.dim, "out": str(out)}


def build_world_object_features(world_root: str | Path, extractor, out: str | Path | None = None,
                                keys: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Object features of a generated world: the extractor on each annotated object's box crop in
    the rendered 640x480 view where it is seen best (only those views are rendered).
    keys: (scan, viewpoint) pairs to encode (default: every annotated viewpoint)."""
    from minivln_core.data.bboxes import ObjectIndex
    from minivln_core.frames import VIEW_ELEVATIONS, VIEW_HEADINGS
    from minivln_core.perception.objects import build_object_features

    paths = WorldPaths(Path(world_root), "views_vit")
    out = Path(out) if out is not None else paths.object_features
    houses = load_houses(paths.root)
    renderers: dict[str, Renderer] = {}

    def load_views(scan: str, vp: str):
        renderer = renderers.setdefault(scan, Renderer(houses[scan]))
        position = renderer.camera_position(vp)
        return lambda ix: renderer.render_view(position, float(VIEW_HEADINGS[ix]), float(VIEW_ELEVATIONS[ix]))

    started = time.perf_counter()
    count = build_object_features(extractor, ObjectIndex.load(paths.bboxes), load_views, out, keys=keys)
    return {"objects": count, "seconds": round(time.perf_counter() - started, 2), "out": str(out)}
