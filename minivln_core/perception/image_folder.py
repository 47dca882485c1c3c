"""View features from a folder of view images `<scan>_<viewpoint>_<ix>.png|jpg` (`minivln features --images`).

`ix` is 0..35 in the Matterport view order (`minivln_core.frames`); every viewpoint needs all 36.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from minivln_core.data.features import write_view_features
from minivln_core.errors import DataError
from minivln_core.frames import NUM_VIEWS

log = logging.getLogger("minivln.features")

IMAGE_NAME = re.compile(r"^(?P<scan>[^_]+)_(?P<vp>.+)_(?P<ix>\d+)\.(?:png|jpe?g)$", re.IGNORECASE)


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


def encode_viewpoints(extractor: Any, items: Iterable[tuple[str, Callable[[], Sequence[np.ndarray]]]],
                      out: str | Path, with_logits: bool = True, compression: str | None = None) -> int:
    """Encode `(key, load_36_views)` pairs and write the view feature file; returns the viewpoint count."""
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


def build_image_folder_features(groups: dict[str, list[Path]], extractor: Any, out: str | Path,
                                with_logits: bool = True, compression: str | None = None) -> int:
    """Encode the viewpoints of `scan_image_folder(folder)` and write the feature file; returns their count."""
    items = ((key, lambda paths=paths: [read_rgb(p) for p in paths]) for key, paths in groups.items())
    return encode_viewpoints(extractor, items, out, with_logits, compression)
