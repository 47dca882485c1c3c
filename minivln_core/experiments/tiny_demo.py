"""A tiny demo: a 2-house world with rendered features from a random tiny ViT and a random
tiny-student checkpoint (with extractor.json). `minivln ros-demo` plays it without arguments; the
online, ROS and replay tests build theirs with the same function."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from minivln_core.data.synth.config import SynthConfig
from minivln_core.data.synth.world import generate_world
from minivln_core.models import DuetPolicy, preset
from minivln_core.models.checkpoint import save_pretrained
from minivln_core.perception.config import ExtractorConfig, save_extractor_config
from minivln_core.perception.vit import FeatureExtractor
from minivln_core.perception.world_features import build_world_features

TINY_WORLD = SynthConfig(houses=2, seed=3, floors=(1, 1), rooms_per_floor=(3, 4), paths_per_house=4,
                         reverie_per_house=2, feature_dim=32, path_hops=(2, 4))
TINY_EXTRACTOR = ExtractorConfig(image_size=32, patch_size=8, hidden_size=32, num_layers=1, num_heads=2,
                                 intermediate_size=64)


def build_tiny_demo(root: Path, world_config: SynthConfig = TINY_WORLD, extractor: ExtractorConfig = TINY_EXTRACTOR,
                    checkpoint_name: str = "checkpoint", meta: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """`root/world` (+ features/views_vit.h5 from rendered panoramas) and `root/<checkpoint_name>` (a
    seeded random tiny-student taking the extractor's features, + extractor.json)."""
    world, ckpt = root / "world", root / checkpoint_name
    generate_world(world, world_config)
    build_world_features(world, FeatureExtractor(extractor), progress=False)
    torch.manual_seed(0)
    save_pretrained(DuetPolicy(preset("tiny-student", image_feat_size=extractor.hidden_size)).eval(), ckpt, meta=meta)
    save_extractor_config(ckpt, extractor)
    return world, ckpt
