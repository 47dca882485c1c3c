"""Shared pieces of the distillation tests: feature width, dropout-free overrides, a tiny world."""

from __future__ import annotations

from pathlib import Path

from minivln_core.data.synth import SynthConfig, generate_world

DIM = 16  # view feature width of the tiny worlds
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, feat_dropout=0.0)


def make_kd_world(tmp_path_factory, name: str, seed: int) -> Path:
    """A 3-house world (8 paths, 4 REVERIE records per house) with DIM-wide features."""
    root = tmp_path_factory.mktemp(name)
    generate_world(root, SynthConfig(houses=3, seed=seed, paths_per_house=8, reverie_per_house=4, feature_dim=DIM))
    return root
