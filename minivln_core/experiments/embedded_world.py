"""The embedded world, built on first use into a cache folder (sim_robot's default world).

The world is the one `minivln pipeline` trains on: the default `SynthConfig` and view features
rendered and encoded by `perception.world_features.build_world_features` with
`perception.config.embedded_world_extractor()`. It is built by the pipeline's own stages
(`experiments.pipeline.make_world` / `make_features`), so the two never drift apart; both stages
stamp what they built and are skipped when the cache already holds the same world.

Cache folder: `world_cache` argument, else `$MINIVLN_CACHE`, else `$XDG_CACHE_HOME/minivln`,
else `~/.cache/minivln`; the world is `<cache>/world`. Concurrent builders (two sim_robots
started together) are serialised by a lock file in the cache folder.
"""

from __future__ import annotations

import fcntl
import logging
import time
from pathlib import Path
from typing import Any

from minivln_core.paths import default_cache_dir

log = logging.getLogger("minivln.embedded_world")


def ensure_embedded_world(cache_dir: str | Path | None = None, config: Any = None,
                          progress: bool = False) -> Path:
    """The embedded world's folder (`<cache>/world`, with features/views_vit.h5), built if missing.

    `config` is a `experiments.pipeline.PipelineConfig` (its `world` and `extractor` are used);
    None means the pipeline's defaults, i.e. the embedded world. Returns the world folder.
    """
    from minivln_core.experiments.pipeline import PipelineConfig, make_features, make_world

    config = PipelineConfig() if config is None else config
    if config.features != "vit":
        raise ValueError("the embedded world for the robot needs rendered ViT features (features='vit')")
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        started = time.perf_counter()
        paths = make_world(cache, config.world)
        make_features(paths, config, progress)
        log.info("embedded world ready in %s (%.1f s)", paths.root, time.perf_counter() - started)
    return paths.root
