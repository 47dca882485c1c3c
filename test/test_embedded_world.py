"""minivln_core.experiments.embedded_world: the robot's default world is the pipeline's, built once into a cache."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from minivln_core.experiments.pipeline import PipelineConfig
from minivln_core.experiments.embedded_world import ensure_embedded_world
from minivln_core.perception.config import embedded_world_extractor

from fixtures_online import EXTRACTOR, WORLD


def test_default_is_the_pipeline_world() -> None:
    config = PipelineConfig()
    assert config.extractor == embedded_world_extractor() and config.features == "vit"


def test_built_on_first_use_then_reused(tmp_path: Path) -> None:
    config = replace(PipelineConfig(), world=WORLD, extractor=EXTRACTOR)
    world = ensure_embedded_world(tmp_path / "cache", config)
    assert world == tmp_path / "cache" / "world"
    features = world / "features" / "views_vit.h5"
    assert (world / "world.json").is_file() and features.is_file()
    stamps = {p: p.stat().st_mtime_ns for p in (world / "world.json", features)}
    assert ensure_embedded_world(tmp_path / "cache", config) == world
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing rebuilt
    with pytest.raises(ValueError):
        ensure_embedded_world(tmp_path / "cache", replace(config, features="semantic"))
