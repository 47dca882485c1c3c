"""Real Matterport3D graphs and R2R / REVERIE annotations from ../shared/data (skipped when absent).

The data is licensed for non-commercial research and is never committed into the project.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from minivln_core.cli import main as cli_main
from minivln_core.data.bboxes import ObjectIndex
from minivln_core.data.connectivity import SUFFIX, load_connectivity
from minivln_core.data.r2r import load_r2r, validate_against
from minivln_core.data.reverie import load_reverie
from minivln_core.env.expert import run_expert
from minivln_core.env.nav_env import NavEnv
from minivln_core.eval.trajectories import write_results


def _find(root: Path, pattern: str) -> Path:
    hits = sorted(root.rglob(pattern))
    if not hits:
        pytest.skip(f"no {pattern} under {root}")
    return hits[0]


@pytest.fixture(scope="module")
def connectivity_dir(shared_data) -> Path:
    return _find(shared_data, f"*{SUFFIX}").parent


@pytest.fixture(scope="module")
def graphs(connectivity_dir):
    return load_connectivity(connectivity_dir, sorted(p.name[: -len(SUFFIX)]
                                                      for p in connectivity_dir.glob(f"*{SUFFIX}")))


class _NoFeatures:
    """The expert never looks: a fixed block keeps the env's (36, D) contract without real features."""

    def get(self, scan, vp):
        return np.zeros((36, 4), np.float32)


def test_all_90_connectivity_graphs_load(graphs):
    assert len(graphs) == 90
    for scan, graph in graphs.items():
        assert len(graph) > 0 and len(graph.edges()) > 0, scan
        assert np.isfinite(graph.positions).all()


@pytest.mark.parametrize("split", ["train", "val_seen"])
def test_r2r_paths_are_valid_walks(shared_data, graphs, split):
    path = _find(shared_data, f"R2R_{split}.json")
    episodes = load_r2r(path, tokenize=False)
    assert len(episodes) > 100
    validate_against(episodes, graphs, path, require_walk=True)
    for ep in episodes:
        assert graphs[ep.scan].is_walk(ep.path), ep.instr_id


def test_expert_scores_100_on_val_seen_through_eval_trajectories(shared_data, graphs, connectivity_dir, tmp_path,
                                                                  capsys):
    annotations = _find(shared_data, "R2R_val_seen.json")
    episodes = load_r2r(annotations, tokenize=False)
    env = NavEnv({s: graphs[s] for s in {ep.scan for ep in episodes}}, _NoFeatures(), episodes,
                 batch_size=64, max_steps=100)
    results = tmp_path / "expert_val_seen.json"
    write_results(results, run_expert(env))
    out = tmp_path / "metrics.json"
    assert cli_main(["eval-trajectories", "--annotations", str(annotations), "--connectivity",
                     str(connectivity_dir), "--results", str(results), "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["num_episodes"] == len(episodes)
    assert metrics["sr"] == pytest.approx(100.0) and metrics["spl"] == pytest.approx(100.0)
    assert metrics["ne"] == pytest.approx(0.0)


def test_reverie_annotations_and_boxes_load(shared_data, graphs):
    bboxes_path = _find(shared_data, "BBoxes.json")
    index = ObjectIndex.load(bboxes_path)
    assert len(index.scans()) > 0
    for reverie_file in sorted(shared_data.rglob("REVERIE_*.json")):
        episodes = load_reverie(reverie_file, bboxes=index, tokenize=False)
        assert episodes, reverie_file
        for ep in episodes:
            assert ep.scan in graphs
            if ep.obj_id is not None and ep.goal_viewpoints:
                assert all(vp in graphs[ep.scan] for vp in ep.goal_viewpoints)
