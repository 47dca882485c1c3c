"""A tiny world with rendered ViT features and a random tiny-student checkpoint, for the online tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from minivln_core.agent.agent import NavigationAgent
from minivln_core.frames import snap_heading
from minivln_core.agent.rollout import rollout_batch
from minivln_core.data.features import ViewFeatureStore
from minivln_core.data.synth.config import SynthConfig
from minivln_core.data.tokenizer import encode_instruction
from minivln_core.data.world import WorldPaths, load_episodes, load_graphs_for
from minivln_core.experiments.tiny_demo import build_tiny_demo
from minivln_core.env.nav_env import NavEnv
from minivln_core.models.checkpoint import from_pretrained
from minivln_core.perception.config import ExtractorConfig

DIM = 16
WORLD = SynthConfig(houses=2, seed=3, floors=(1, 1), rooms_per_floor=(3, 4), paths_per_house=4, reverie_per_house=2,
                    feature_dim=DIM, path_hops=(2, 4), path_length=(2.0, 20.0))
EXTRACTOR = ExtractorConfig(image_size=32, patch_size=8, hidden_size=DIM, num_layers=1, num_heads=2,
                            intermediate_size=32)
MAX_STEPS = 6
SPLIT = "val_unseen"


def build_online_fixture(root: Path) -> dict[str, Path]:
    """World (+ views_vit.h5 from rendered panoramas) and checkpoint (+ extractor.json) under `root`."""
    world, ckpt = build_tiny_demo(root, WORLD, EXTRACTOR, "ckpt")
    return {"world": world, "checkpoint": ckpt}


def offline_goals(world: Path, checkpoint: Path, index: int, instruction: str | None = None) -> dict[str, Any]:
    """Offline rollout (`rollout_batch`, the code of `minivln eval`) of one episode on views_vit.h5.

    The start heading is snapped to the 30-degree grid like sim_robot's. Returns the viewpoints
    the agent was sent to (decisions that move), the trajectory and the stop flags.
    """
    paths = WorldPaths(world, "views_vit")
    episode = load_episodes(paths, "r2r", SPLIT)[index]
    text = episode.instruction if instruction is None else instruction
    episode = dataclasses.replace(episode, heading=snap_heading(episode.heading), instruction=text,
                                  instr_encoding=encode_instruction(text))
    env = NavEnv(load_graphs_for(paths, [episode]), ViewFeatureStore(paths.view_features), [episode],
                 batch_size=1, max_steps=MAX_STEPS)
    agent = NavigationAgent(from_pretrained(checkpoint), max_steps=MAX_STEPS)
    goals: list[str] = []

    def record(active, observations, result) -> None:
        for decision in result.decisions:
            if decision.path:
                goals.append(decision.target)

    with torch.inference_mode():
        records = rollout_batch(agent, env, env.start([episode]), on_step=record)
    return {"goals": goals, "trajectory": [t[0] for t in records[0]["trajectory"]], "episode": episode}
