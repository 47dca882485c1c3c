"""GraphMap: incremental shortest paths, node sets, embeddings and position features."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
import torch

from minivln_core.graph.graph_map import GraphMap
from fixtures_graph import grid_graph


def _explore(graph, order_seed: int, arrivals: int):
    """Yield (map, known nx graph) after each arrival of an agent exploring ghosts at random."""
    rng = np.random.default_rng(order_seed)
    gmap, known = GraphMap(capacity=2), nx.Graph()  # tiny capacity exercises reallocation
    current = graph.viewpoints[0]
    for step in range(arrivals):
        neighbours = {vp: graph.position(vp) for vp in graph.neighbors(current)}
        gmap.update(current, graph.position(current), neighbours, step)
        for vp, pos in neighbours.items():
            known.add_edge(current, vp, weight=float(np.linalg.norm(pos - graph.position(current))))
        yield gmap, known
        ghosts = gmap.ghosts
        if not ghosts:
            return
        current = ghosts[int(rng.integers(len(ghosts)))]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_incremental_distances_match_dijkstra_on_known_graph(seed):
    graph = grid_graph(seed=seed)
    for gmap, known in _explore(graph, seed, arrivals=12):
        nodes = gmap.nodes
        assert set(nodes) == set(known.nodes)
        truth = dict(nx.all_pairs_dijkstra_path_length(known))
        got = gmap.pair_distances(nodes)[1:, 1:]
        want = np.array([[truth[a][b] for b in nodes] for a in nodes])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_path_reconstruction_follows_known_edges_with_shortest_length():
    graph = grid_graph(seed=3)
    for gmap, known in _explore(graph, 3, arrivals=10):
        pass
    nodes = gmap.nodes
    for a in nodes:
        for b in nodes:
            hops = gmap.path(a, b)
            assert gmap.hops(a, b) == len(hops)
            if a == b:
                assert hops == []
                continue
            walk = [a] + hops
            assert walk[-1] == b
            assert all(known.has_edge(u, v) for u, v in zip(walk[:-1], walk[1:]))
            length = sum(known[u][v]["weight"] for u, v in zip(walk[:-1], walk[1:]))
            assert length == pytest.approx(gmap.distance(a, b), abs=1e-9)
            # every edge touches a visited node (a ghost seen from two visited nodes may be crossed)
            assert all(gmap.is_visited(u) or gmap.is_visited(v) for u, v in zip(walk[:-1], walk[1:]))


def _line_map() -> GraphMap:
    """a(0,0,0) visited with ghosts n (3 m ahead, +y) and e (4 m east, +x); then n visited, m behind it."""
    gmap = GraphMap()
    gmap.update("a", np.zeros(3), {"n": np.array([0.0, 3.0, 0.0]), "e": np.array([4.0, 0.0, 0.0])}, step=0)
    return gmap


def test_node_sets_order_and_step_ids():
    gmap = _line_map()
    gmap.update("n", np.array([0.0, 3.0, 0.0]), {"a": np.zeros(3), "m": np.array([0.0, 6.0, 0.0])}, step=1)
    assert gmap.nodes == ["a", "n", "e", "m"]
    assert gmap.visited == ["a", "n"] and gmap.ghosts == ["e", "m"]
    assert gmap.global_nodes() == ["a", "n", "e", "m"]
    assert gmap.current == "n"
    assert gmap.step_ids(gmap.nodes).tolist() == [1, 2, 0, 0]
    gmap.update("a", np.zeros(3), {"n": np.array([0.0, 3.0, 0.0]), "e": np.array([4.0, 0.0, 0.0])}, step=2)
    assert gmap.step_ids(["a", "n"]).tolist() == [3, 2]  # overwritten on revisit
    assert gmap.visited_mask(gmap.global_nodes()).tolist() == [True, True, False, False]
    assert gmap.neighbours("a") == ["n", "e"]


def test_arrival_at_unseen_node_is_rejected():
    gmap = _line_map()
    with pytest.raises(ValueError, match="'zz'"):
        gmap.update("zz", np.ones(3), {}, step=1)


def test_position_features_hand_computed():
    gmap = _line_map()
    gmap.update("n", np.array([0.0, 3.0, 0.0]), {"m": np.array([0.0, 6.0, 0.0]), "u": np.array([0.0, 3.0, 3.0])},
                step=1)
    feats = gmap.position_features(["a", "n", "e", "m", "u"], current="a", heading=0.0, elevation=0.0)
    assert feats.shape == (5, 7) and feats.dtype == np.float32
    expected = np.array([
        [0, 1, 0, 1, 0, 0, 0],                          # the current node itself
        [0, 1, 0, 1, 3 / 30, 3 / 30, 1 / 10],           # straight ahead: dh = 0
        [1, 0, 0, 1, 4 / 30, 4 / 30, 1 / 10],           # east, agent facing north: dh = +90 deg
        [0, 1, 0, 1, 6 / 30, 6 / 30, 2 / 10],           # two hops ahead
    ])
    np.testing.assert_allclose(feats[:4], expected, atol=1e-6)
    s = math.sin(math.atan2(3.0, 3.0))                  # u is 45 deg above a
    np.testing.assert_allclose(feats[4], [0, 1, s, s, math.hypot(3, 3) / 30, 6 / 30, 2 / 10], atol=1e-6)
    # agent turned east: the node ahead along +y is now 90 deg to the left
    turned = gmap.position_features(["n", "e"], current="a", heading=math.pi / 2, elevation=0.0)
    np.testing.assert_allclose(turned[:, :2], [[-1, 0], [0, 1]], atol=1e-6)
    # relative to the current node n, looking down 30 deg: a is behind, m ahead
    from_n = gmap.position_features(["a", "m"], current="n", heading=0.0, elevation=-math.pi / 6)
    np.testing.assert_allclose(from_n[:, :4], [[0, -1, 0.5, math.cos(math.pi / 6)],
                                               [0, 1, 0.5, math.cos(math.pi / 6)]], atol=1e-6)


def test_pair_distances_have_stop_row_and_column():
    gmap = _line_map()
    d = gmap.pair_distances(["a", "n", "e"])
    assert d.shape == (4, 4) and d.dtype == np.float32
    assert not d[0].any() and not d[:, 0].any()
    np.testing.assert_allclose(d[1:, 1:], [[0, 3, 4], [3, 0, 7], [4, 7, 0]])
    assert gmap.path("n", "e") == ["a", "e"] and gmap.hops("n", "e") == 2


def test_ghost_feature_is_mean_of_contributions_and_keeps_autograd():
    gmap = _line_map()
    x1 = torch.tensor([1.0, 2.0], requires_grad=True)
    x2 = torch.tensor([3.0, 6.0], requires_grad=True)
    gmap.add_ghost_embedding("n", x1 * 1.0)
    gmap.add_ghost_embedding("n", x2 * 1.0)
    ghost = gmap.embedding("n")
    torch.testing.assert_close(ghost, torch.tensor([2.0, 4.0]))
    ghost.sum().backward()
    torch.testing.assert_close(x1.grad, torch.full((2,), 0.5))
    torch.testing.assert_close(x2.grad, torch.full((2,), 0.5))

    visited = torch.tensor([9.0, 9.0])
    gmap.set_visited_embedding("a", torch.zeros(2))
    gmap.set_visited_embedding("a", visited)           # replaced, not averaged
    assert torch.equal(gmap.embedding("a"), visited)
    y = torch.tensor([1.0, 1.0], requires_grad=True)
    fresh = _line_map()
    fresh.set_visited_embedding("a", y * 2.0)
    fresh.embedding("a").sum().backward()                # the replacement keeps its own autograd path
    torch.testing.assert_close(y.grad, torch.full((2,), 2.0))
    with pytest.raises(ValueError):
        gmap.add_ghost_embedding("a", torch.zeros(2))
    with pytest.raises(ValueError):
        gmap.set_visited_embedding("e", torch.zeros(2))
    with pytest.raises(KeyError):
        gmap.embedding("e")
    assert gmap.embeddings(["a", "n"]).shape == (2, 2)
    # once visited, the node's own embedding takes over from the ghost mean
    gmap.update("n", np.array([0.0, 3.0, 0.0]), {}, step=1)
    gmap.set_visited_embedding("n", visited)
    assert torch.equal(gmap.embedding("n"), visited)


def test_stop_scores_and_object_predictions():
    gmap = _line_map()
    assert gmap.best_stop_node() is None
    gmap.update("n", np.array([0.0, 3.0, 0.0]), {"m": np.array([0.0, 6.0, 0.0])}, step=1)
    gmap.set_stop_score("a", 0.7)
    gmap.set_stop_score("n", 0.2)
    assert gmap.best_stop_node() == "a"
    gmap.set_stop_score("n", 0.9)
    assert gmap.best_stop_node() == "n"
    with pytest.raises(ValueError):
        gmap.set_stop_score("m", 0.5)
    gmap.set_object_prediction("a", "obj_7")
    assert gmap.object_prediction("a") == "obj_7" and gmap.object_prediction("n") is None
