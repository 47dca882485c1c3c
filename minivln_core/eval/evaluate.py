"""Evaluate a policy (or the shortest-path expert) on a world split.

Rollouts are written as a standard results file and scored by the same code as
`minivln eval-trajectories`, so every number the project reports comes from one scorer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from minivln_core.agent.agent import NavigationAgent
from minivln_core.agent.rollout import evaluate as rollout_all
from minivln_core.data.features import ObjectFeatureStore, ViewFeatureStore
from minivln_core.data.r2r import validate_against
from minivln_core.data.world import WorldPaths, load_episodes, load_graphs_for
from minivln_core.env.expert import run_expert
from minivln_core.env.nav_env import NavEnv
from minivln_core.errors import DataError
from minivln_core.eval.baselines import run_random_walk
from minivln_core.eval.modality import Ablation, ablate_episodes, ablate_features
from minivln_core.eval.trajectories import score_results_detailed, write_results
from minivln_core.io_utils import atomic_write_json
from minivln_core.models.policy import DuetPolicy


@dataclass(frozen=True)
class EvalSpec:
    """What to evaluate on."""

    world: Path
    task: str = "r2r"
    split: str = "val_unseen"
    batch_size: int = 8
    max_steps: int = 15
    limit: int = 0           # evaluate `limit` instructions spread evenly over the split (0 = all)
    features: str = "views"  # view-feature file features/<features>.h5 of the world
    ablation: Ablation = "none"  # "blind" (zero view features) or "no_language" (empty instructions)


def build_env(spec: EvalSpec, episodes=None) -> NavEnv:
    """NavEnv over the split's episodes, graphs and feature stores."""
    paths = WorldPaths(Path(spec.world), spec.features).check()
    if episodes is None:
        episodes = load_episodes(paths, spec.task, spec.split)
        episodes = spread_subset(episodes, spec.limit)
    if not episodes:
        raise DataError(paths.annotations(spec.task, spec.split), "no episodes to evaluate")
    objects = None
    if spec.task == "reverie":
        if not paths.object_features.exists():
            raise DataError(paths.object_features, "REVERIE evaluation needs object features")
        objects = ObjectFeatureStore(paths.object_features)
    episodes = ablate_episodes(list(episodes), spec.ablation)
    features = ablate_features(ViewFeatureStore(paths.view_features), spec.ablation)
    graphs = load_graphs_for(paths, episodes)
    # unknown scans / viewpoints: an error naming the annotation file, the episode and the field
    validate_against(episodes, graphs, paths.annotations(spec.task, spec.split), require_walk=False)
    return NavEnv(graphs, features, episodes, batch_size=spec.batch_size, max_steps=spec.max_steps, objects=objects)


def spread_subset(items: list, limit: int) -> list:
    """`limit` items at evenly spaced positions (first and last included), all when limit is 0 or >= len.

    Splits are ordered by house, so the first N instructions would come from one or two houses;
    spreading the subset keeps every house in a quick evaluation (model selection uses it)."""
    if not limit or limit >= len(items):
        return list(items)
    picks = np.linspace(0, len(items) - 1, limit).round().astype(int)  # strictly increasing when limit < len
    return [items[i] for i in picks]


def score(spec: EvalSpec, records: list[dict[str, Any]], out_dir: Path, name: str) -> dict[str, Any]:
    """Write `<name>_<split>_results.json` and its metrics JSON; return the metrics."""
    paths = WorldPaths(Path(spec.world))
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / f"{name}_{spec.split}_results.json"
    write_results(results_path, records)
    metrics, _ = score_results_detailed(paths.annotations(spec.task, spec.split), paths.connectivity, results_path,
                                        task=spec.task, bboxes=paths.bboxes if paths.bboxes.exists() else None,
                                        allow_missing=spec.limit > 0)
    atomic_write_json(out_dir / f"{name}_{spec.split}_metrics.json", metrics)
    return metrics


def evaluate_policy(model: DuetPolicy, spec: EvalSpec, out_dir: Path, name: str,
                    progress: bool = True) -> dict[str, Any]:
    """Greedy rollouts of `model` on the split, scored; returns the metrics."""
    model_objects = model.config.has_objects
    if (spec.task == "reverie") != model_objects:
        raise DataError(spec.world, f"model {'has' if model_objects else 'lacks'} the object head but the task "
                                    f"is {spec.task}")
    env = build_env(spec)
    feat_dim = env.features.get(env.episodes[0].scan, env.episodes[0].start).shape[1]
    if feat_dim != model.config.image_feat_size:
        raise DataError(WorldPaths(Path(spec.world), spec.features).view_features,
                        f"view features have {feat_dim} columns but the model expects image_feat_size="
                        f"{model.config.image_feat_size}")
    agent = NavigationAgent(model, max_steps=spec.max_steps)
    records = rollout_all(agent, env, desc=f"{name} {spec.split}", progress=progress)
    return score(spec, records, out_dir, name)


def evaluate_random_walk(spec: EvalSpec, out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """A random walk of 4-7 hops (the floor a trained policy must clearly beat)."""
    return score(spec, run_random_walk(build_env(spec), seed), out_dir, "random")


def evaluate_expert(spec: EvalSpec, out_dir: Path) -> dict[str, Any]:
    """The shortest-path expert on the split (an upper bound; SR and SPL should be 100)."""
    env = build_env(spec)
    return score(spec, run_expert(env), out_dir, "expert")

