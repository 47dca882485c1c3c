"""How much an instruction's words tell, through object names alone, where an episode ends.

A policy can only learn to stop at "the sink" if the goal shows something the instruction names
better than the places next to it do. This measures that upper bound without training anything:
for every episode, each viewpoint is scored by its best view's grounding column
(`agent.grounding`: the best MiniLM similarity between the view's names and the instruction's
words, over the whole instruction or one third of it), and the goal is compared with each of its
graph neighbours that is not itself a goal (REVERIE: any viewpoint the target is seen from):

* AUC = P(goal scores higher than a neighbour) + 0.5 P(tie), pooled over all (episode, neighbour)
  pairs: 0.5 means the names say nothing about where to stop, 1.0 that they always single it out;
* the share of goals and of neighbours whose score passes `threshold` (a name closely matching a
  word: "door frame" ~ "door" is 0.73, unrelated words 0.1-0.35 with MiniLM).

Only the first 384-wide chunk (the names near the viewpoint) is scored; a far field is the
neighbours' names again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from minivln_core.agent.grounding import CHUNK, COLUMN_NAMES, InstructionGrounding
from minivln_core.data.features import ViewFeatureStore
from minivln_core.data.world import WorldPaths, load_episodes, load_graphs_for
from minivln_core.errors import DataError

COLUMNS = {name: i for i, name in enumerate(COLUMN_NAMES)}  # name -> column within a chunk


def _pair_scores(goal: float, neighbours: list[float]) -> list[float]:
    """1 per neighbour the goal beats, 0.5 per tie, 0 otherwise."""
    return [float(goal > x) + 0.5 * float(goal == x) for x in neighbours]


def grounding_signal(world: Path, task: str = "r2r", split: str = "val_unseen", features: str = "views",
                     every: int = 1, threshold: float = 0.6, grounding: InstructionGrounding | None = None,
                     progress: bool = True) -> dict[str, Any]:
    """The goal-vs-neighbour AUC of every grounding column over every `every`-th episode of the split."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    paths = WorldPaths(Path(world), features).check()
    episodes = load_episodes(paths, task, split)[::every]
    if not episodes:
        raise DataError(paths.annotations(task, split), "no episodes")
    graphs = load_graphs_for(paths, episodes)
    store = ViewFeatureStore(paths.view_features)
    if grounding is None:
        grounding = InstructionGrounding(store.dim)

    def best(ep, vp: str) -> np.ndarray:
        """(4,) each column's best view at `vp` (near chunk)."""
        return grounding.columns(ep.instruction, store.get(ep.scan, vp)[:, :CHUNK])[:, :4].max(0)

    pairs = {name: [] for name in COLUMNS}
    goal_hits = {name: [] for name in COLUMNS}
    neighbour_hits = {name: [] for name in COLUMNS}
    used = 0
    for ep in tqdm(episodes, desc=f"grounding signal {task} {split}", disable=not progress):
        goals = set(ep.goal_viewpoints) | {ep.goal}
        others = [v for v in graphs[ep.scan].neighbors(ep.goal) if v not in goals]
        if not others:
            continue
        used += 1
        goal = np.max([best(ep, v) for v in sorted(goals)], 0)                    # (4,)
        near = np.stack([best(ep, v) for v in others])                            # (K, 4)
        for name, col in COLUMNS.items():
            pairs[name] += _pair_scores(float(goal[col]), near[:, col].tolist())
            goal_hits[name].append(goal[col] > threshold)
            neighbour_hits[name] += (near[:, col] > threshold).tolist()
    if not used:
        raise DataError(paths.annotations(task, split), "no episode has a goal with a non-goal neighbour")
    return {"world": str(world), "task": task, "split": split, "features": features, "every": every,
            "episodes": used, "threshold": threshold,
            "columns": {name: {"auc_goal_vs_neighbour": round(float(np.mean(pairs[name])), 3),
                               "goal_above_threshold": round(float(np.mean(goal_hits[name])), 3),
                               "neighbour_above_threshold": round(float(np.mean(neighbour_hits[name])), 3),
                               "pairs": len(pairs[name])}
                        for name in COLUMNS}}
