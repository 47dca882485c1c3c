"""Geometry, candidates, the batched NavEnv and the experts on toy graphs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fixtures_graph import FakeFeatures, grid_graph, make_episode, make_graph, polar, star_graph
from minivln_core.env.expert import map_expert, run_expert, shortest_path_expert_next
from minivln_core.env.candidates import compute_candidates
from minivln_core.frames import VIEW_ELEVATIONS, VIEW_HEADINGS, angle_features, heading_elevation, nearest_view_index, view_angle_features, view_elevation, view_heading, wrap_angle
from minivln_core.env.nav_env import NavEnv
from minivln_core.errors import DataError
from minivln_core.graph.graph_map import GraphMap

DEG = math.pi / 180.0


# -- geometry -------------------------------------------------------------------------------
def test_view_angles_and_wrapping():
    assert view_heading(15) == pytest.approx(90 * DEG) and view_elevation(15) == 0.0
    assert view_elevation(3) == pytest.approx(-30 * DEG) and view_elevation(27) == pytest.approx(30 * DEG)
    assert VIEW_HEADINGS.shape == VIEW_ELEVATIONS.shape == (36,)
    with pytest.raises(ValueError):
        view_heading(36)
    assert wrap_angle(math.pi) == pytest.approx(math.pi)
    assert wrap_angle(-math.pi) == pytest.approx(math.pi)
    assert wrap_angle(1.5 * math.pi) == pytest.approx(-0.5 * math.pi)
    np.testing.assert_allclose(wrap_angle(np.array([0.0, 2 * math.pi + 0.1, -3 * math.pi])), [0.0, 0.1, math.pi])


def test_heading_elevation_and_angle_features():
    h, e = heading_elevation(np.array([1.0, 0.0, 1.0]))        # east, 45 deg up
    assert h == pytest.approx(math.pi / 2) and e == pytest.approx(math.pi / 4)
    hs, es = heading_elevation(np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]))
    np.testing.assert_allclose(hs, [0.0, -math.pi / 2, math.pi])
    feats = angle_features(np.zeros((2, 3)), np.full((2, 3), math.pi / 2))
    assert feats.shape == (2, 3, 4) and feats.dtype == np.float32
    np.testing.assert_allclose(feats[0, 0], [0, 1, 1, 0], atol=1e-7)
    base = view_angle_features(heading=VIEW_HEADINGS[14], elevation=0.0)
    np.testing.assert_allclose(base[14], [0, 1, 0, 1], atol=1e-6)


def test_nearest_view_index():
    assert nearest_view_index(95 * DEG) == 15              # col 3 (90 deg), middle row
    assert nearest_view_index(-10 * DEG) == 12             # wraps to col 0
    assert nearest_view_index(350 * DEG, 40 * DEG) == 24   # top row, col 0
    assert nearest_view_index(200 * DEG, -50 * DEG) == 7   # bottom row, col 7 (210 deg)


def test_candidates_views_rows_and_order():
    graph = star_graph()
    cands = compute_candidates(graph, "c")
    by_vp = {c.viewpoint: c for c in cands}
    assert set(by_vp) == {"h95", "h200", "up", "down"}
    assert by_vp["h95"].view_index == 15                   # 95 deg -> col 3 (90), not col 4 (120)
    assert by_vp["h200"].view_index == 19                  # 200 deg -> col 7 (210)
    assert by_vp["up"].view_index == 24                    # +35 deg -> top row
    assert by_vp["down"].view_index == 6                   # -35 deg, heading 180 -> bottom row, col 6
    assert by_vp["h95"].heading == pytest.approx(95 * DEG)
    assert by_vp["up"].elevation == pytest.approx(math.atan(0.7))
    assert by_vp["h200"].distance == pytest.approx(3.0)
    np.testing.assert_allclose(by_vp["h95"].position, graph.position("h95"))
    rel_h, rel_e = by_vp["h95"].view_offset
    assert rel_h == pytest.approx(5 * DEG) and rel_e == pytest.approx(0.0)
    assert [c.view_index for c in cands] == sorted(c.view_index for c in cands)
    assert compute_candidates(graph, "c") == cands        # cached and stable


def test_candidates_in_one_view_sorted_by_offset():
    graph = make_graph("two", {"c": (0.0, 0.0, 1.5), "a": polar(100.0, 2.0), "b": polar(92.0, 2.0)},
                       [("c", "a"), ("c", "b")])
    cands = compute_candidates(graph, "c")
    assert [(c.viewpoint, c.view_index) for c in cands] == [("b", 15), ("a", 15)]


# -- environment ----------------------------------------------------------------------------
def _star_env(**kwargs) -> NavEnv:
    graphs = {"star": star_graph()}
    episodes = [make_episode("e0", "star", ["c", "h95", "far"], heading=0.3)]
    return NavEnv(graphs, FakeFeatures(graphs, **kwargs), episodes, batch_size=1, max_steps=3)


def test_reset_observation_fields():
    env = _star_env()
    (obs,) = env.reset()
    assert obs.index == 0 and obs.viewpoint == "c" and obs.instr_id == "e0"
    assert obs.heading == pytest.approx(0.3) and obs.elevation == 0.0
    assert obs.view_features.shape == (36, 8) and obs.view_features.dtype == np.float32
    assert {c.viewpoint for c in obs.candidates} == {"h95", "h200", "up", "down"}
    assert obs.distance_to_goal == pytest.approx(4.0)
    assert obs.step == 0 and not obs.done and obs.objects is None
    assert env.trajectories() == [[["c", 0.3, 0.0]]]


def test_hop_faces_the_view_the_target_was_seen_in():
    env = _star_env()
    env.reset()
    env.hop(0, "up")
    obs = env.observation(0)
    assert obs.viewpoint == "up"
    assert obs.heading == pytest.approx(0.0) and obs.elevation == pytest.approx(30 * DEG)
    env.hop(0, "c")
    env.hop(0, "h95")
    obs = env.observation(0)
    assert obs.heading == pytest.approx(90 * DEG) and obs.elevation == 0.0
    assert obs.distance_to_goal == pytest.approx(2.0)
    assert [t[0] for t in env.trajectories()[0]] == ["c", "up", "c", "h95"]
    assert env.trajectories()[0][-1][1:] == pytest.approx([90 * DEG, 0.0])


def test_hop_to_non_neighbour_raises_naming_it():
    env = _star_env()
    env.reset()
    with pytest.raises(ValueError, match="'far'"):
        env.hop(0, "far")
    with pytest.raises(ValueError, match="'nowhere'"):
        env.hop(0, "nowhere")
    assert env.viewpoint(0) == "c"


def test_missing_features_raise_not_zero():
    env = _star_env(missing=("h95",))
    env.reset()
    env.hop(0, "h95")
    with pytest.raises(DataError, match="h95"):
        env.observations()


def test_decisions_limit_and_stop():
    env = _star_env()
    env.reset()
    assert [env.decide(0) for _ in range(3)] == [1, 2, 3]
    with pytest.raises(ValueError, match="max_steps"):
        env.decide(0)
    env.stop(0)
    assert env.all_done and env.observation(0).done and env.observation(0).step == 3
    with pytest.raises(ValueError, match="stopped"):
        env.hop(0, "h95")


def test_unknown_scan_or_viewpoint_in_episodes_is_rejected():
    graphs = {"star": star_graph()}
    with pytest.raises(DataError, match="scan 'other'"):
        NavEnv(graphs, FakeFeatures(graphs), [make_episode("x", "other", ["c"])], batch_size=1)
    with pytest.raises(DataError, match="'zz'"):
        NavEnv(graphs, FakeFeatures(graphs), [make_episode("x", "star", ["c", "zz"])], batch_size=1)


def _grid_env(n_episodes: int, batch_size: int, shuffle: bool = False, seed: int = 0) -> NavEnv:
    graph = grid_graph()
    rng = np.random.default_rng(42)
    episodes = []
    for k in range(n_episodes):
        a, b = rng.choice(len(graph), size=2, replace=False)
        path = graph.shortest_path(graph.viewpoints[a], graph.viewpoints[b])
        episodes.append(make_episode(f"{k}_0", "grid", path, heading=float(rng.uniform(-math.pi, math.pi))))
    graphs = {"grid": graph}
    return NavEnv(graphs, FakeFeatures(graphs), episodes, batch_size=batch_size, shuffle=shuffle, seed=seed)


def _ids(batch) -> list[str]:
    return [obs.instr_id for obs in batch]


def test_reset_cycles_in_order_and_flags_epoch_end():
    env = _grid_env(5, batch_size=2)
    assert _ids(env.reset()) == ["0_0", "1_0"] and not env.epoch_done
    assert _ids(env.reset()) == ["2_0", "3_0"] and not env.epoch_done
    assert _ids(env.reset()) == ["4_0", "0_0"] and env.epoch_done
    assert _ids(env.reset()) == ["1_0", "2_0"] and not env.epoch_done


def test_iterate_once_serves_every_episode_once():
    env = _grid_env(5, batch_size=2, shuffle=True, seed=3)
    sizes, seen = [], []
    for batch in env.iterate_once():
        sizes.append(len(batch))
        seen += _ids(batch)
    assert sizes == [2, 2, 1] and sorted(seen) == sorted(f"{k}_0" for k in range(5))
    assert env.epoch_done


def test_shuffled_order_is_deterministic_per_seed():
    def sequence(seed: int) -> list[str]:
        env = _grid_env(10, batch_size=3, shuffle=True, seed=seed)
        return [i for _ in range(7) for i in _ids(env.reset())]

    assert sequence(5) == sequence(5)
    assert sequence(5) != sequence(6)
    assert sequence(5)[:10] != [f"{k}_0" for k in range(10)]
    assert sorted(sequence(5)[:9]) == sorted(set(sequence(5)[:9]))   # no repeats within an epoch


# -- experts --------------------------------------------------------------------------------
def test_shortest_path_expert_reaches_goal_with_shortest_length():
    env = _grid_env(9, batch_size=4)
    graph = env.graphs["grid"]
    records = run_expert(env)
    assert [r["instr_id"] for r in records] == [f"{k}_0" for k in range(9)]
    for record, episode in zip(records, env.episodes):
        walk = [entry[0] for entry in record["trajectory"]]
        assert walk[0] == episode.start and walk[-1] == episode.goal     # SR = 100
        assert graph.is_walk(walk)
        assert graph.path_length(walk) == pytest.approx(graph.distance(episode.start, episode.goal))  # SPL = 100
    assert shortest_path_expert_next(graph, "r0c0", "r0c0") is None


def test_map_expert_picks_unvisited_node_on_the_best_detour():
    graph = star_graph()
    gmap = GraphMap()
    gmap.update("c", graph.position("c"), {vp: graph.position(vp) for vp in graph.neighbors("c")}, step=0)
    ghosts = gmap.ghosts
    assert map_expert(graph, gmap, "c", "far", ["c"] + ghosts) == "h95"
    assert map_expert(graph, gmap, "c", "down", ghosts) == "down"
    assert map_expert(graph, gmap, "far", "far", ghosts) is None           # at the goal: stop
    assert map_expert(graph, gmap, "c", "far", ["c"]) is None              # nothing unvisited left
