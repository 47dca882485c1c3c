"""The per-episode topological map of DUET: visited, current and ghost nodes with shortest paths.

Nodes are viewpoint ids, kept in first-seen order. Arriving at a node (``update``) marks it
visited and current and adds an edge to each navigable neighbour, weighted by the 3-D Euclidean
distance. Because every new edge touches the arrival node ``c``, the all-pairs table is kept
exact incrementally in O(K*N + N^2) numpy work per arrival (K neighbours, N nodes):

1. ``d(i, c) = min(d(i, c), min_k d(i, n_k) + w(n_k, c))`` -- a shortest path into ``c`` uses a
   new edge only as its last hop;
2. ``d(i, j) = min(d(i, j), d(i, c) + d(c, j))`` -- any other improved path passes through ``c``.

A next-hop table ``next[i, j]`` (first node after ``i`` on a shortest path to ``j``) is relaxed
alongside, so paths and hop counts are reconstructed without search.

Node embeddings are torch tensors that keep their autograd history: a visited node's embedding
is replaced on every visit, a ghost's is the mean of every contribution it has received.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from minivln_core.frames import angle_features, heading_elevation

MAX_DIST = 30.0   # metres; scale of the distance position features
MAX_STEP = 10.0   # hops; scale of the hop-count position feature
_EPS = 1e-9       # metres; a relaxation must improve by more than this (keeps ties stable)


class GraphMap:
    """Topological map of one episode (section b of the DUET reference)."""

    def __init__(self, capacity: int = 32):
        self._ids: dict[str, int] = {}             # viewpoint id -> storage index (first-seen order)
        self._names = np.empty(0, dtype=object)   # (C,) viewpoint id of each storage index
        self._adjacent: list[set[int]] = []
        self._current: int | None = None
        # Node features, created on the first embedding: (C, D) tensors replaced out of place,
        # so each row keeps its autograd history (visited: latest summary; ghosts: sum / count).
        self._visited_embeds: torch.Tensor | None = None
        self._ghost_sums: torch.Tensor | None = None
        self._allocate(max(int(capacity), 1))
        self._stop_scores: dict[str, float] = {}
        self._objects: dict[str, str | None] = {}

    # -- storage ------------------------------------------------------------------------
    def _allocate(self, capacity: int) -> None:
        """(Re)allocate the node arrays for `capacity` nodes, keeping the current content."""
        n = len(self._ids)
        positions = np.zeros((capacity, 3))                       # (C, 3)
        dist = np.full((capacity, capacity), np.inf)              # (C, C) metres, inf = unknown
        nxt = np.full((capacity, capacity), -1, dtype=np.int64)   # (C, C) first hop, -1 = none
        np.fill_diagonal(dist, 0.0)
        np.fill_diagonal(nxt, np.arange(capacity))
        visited = np.zeros(capacity, dtype=bool)                  # (C,)
        steps = np.zeros(capacity, dtype=np.int64)                # (C,)
        has_visited_embed = np.zeros(capacity, dtype=bool)        # (C,)
        ghost_counts = np.zeros(capacity, dtype=np.int64)         # (C,)
        names = np.empty(capacity, dtype=object)                  # (C,)
        if n:
            positions[:n] = self._positions[:n]
            dist[:n, :n] = self._dist[:n, :n]
            nxt[:n, :n] = self._next[:n, :n]
            visited[:n] = self._visited[:n]
            steps[:n] = self._steps[:n]
            has_visited_embed[:n] = self._has_visited_embed[:n]
            ghost_counts[:n] = self._ghost_counts[:n]
            names[:n] = self._names[:n]
        self._positions, self._dist, self._next = positions, dist, nxt
        self._visited, self._steps, self._names = visited, steps, names
        self._has_visited_embed, self._ghost_counts = has_visited_embed, ghost_counts
        if self._visited_embeds is not None and len(self._visited_embeds) < capacity:
            pad = (0, 0, 0, capacity - len(self._visited_embeds))
            self._visited_embeds = torch.nn.functional.pad(self._visited_embeds, pad)
            self._ghost_sums = torch.nn.functional.pad(self._ghost_sums, pad)

    def _add_node(self, viewpoint: str, position: np.ndarray) -> int:
        """Index of `viewpoint`, adding it with `position` if it is new (positions never move)."""
        index = self._ids.get(viewpoint)
        if index is not None:
            return index
        position = np.asarray(position, dtype=np.float64)
        if position.shape != (3,) or not np.all(np.isfinite(position)):
            raise ValueError(f"position of '{viewpoint}' must be 3 finite numbers, got {position!r}")
        index = len(self._ids)
        if index == len(self._positions):
            self._allocate(2 * index)
        self._ids[viewpoint] = index
        self._names[index] = viewpoint
        self._adjacent.append(set())
        self._positions[index] = position
        return index

    def _index(self, viewpoint: str) -> int:
        try:
            return self._ids[viewpoint]
        except KeyError:
            raise KeyError(f"viewpoint '{viewpoint}' is not in the graph map") from None

    def _indices(self, nodes: Sequence[str] | np.ndarray) -> np.ndarray:
        """(N,) node indices of viewpoint ids, or an index array passed through."""
        if isinstance(nodes, np.ndarray) and nodes.dtype.kind in "iu":
            return nodes.astype(np.int64, copy=False)
        return np.fromiter((self._index(vp) for vp in nodes), dtype=np.int64, count=len(nodes))  # (N,)

    def indices(self, nodes: Sequence[str]) -> np.ndarray:
        """(N,) int64 storage indices of `nodes`; every method taking nodes also takes such an array."""
        return self._indices(nodes)

    def names(self, index: np.ndarray) -> list[str]:
        """Viewpoint ids of an index array."""
        return self._names[index].tolist()

    # -- arrival ----------------------------------------------------------------------------
    def update(self, viewpoint: str, position: np.ndarray, neighbours: Mapping[str, np.ndarray],
               step: int) -> None:
        """Arrive at `viewpoint` at loop step `step` (0-based) and add edges to its neighbours."""
        if self._ids and viewpoint not in self._ids:
            raise ValueError(f"cannot arrive at '{viewpoint}': it was never seen from a visited node "
                             "(the map would be disconnected)")
        c = self._add_node(viewpoint, position)
        self._visited[c] = True
        self._steps[c] = int(step) + 1
        self._current = c
        nbrs = np.array([self._add_node(vp, pos) for vp, pos in neighbours.items() if vp != viewpoint],
                        dtype=np.int64)                                              # (K,)
        if nbrs.size == 0:
            return
        for k in nbrs:
            self._adjacent[c].add(int(k))
            self._adjacent[int(k)].add(c)
        n = len(self._ids)
        dist, nxt = self._dist[:n, :n], self._next[:n, :n]                            # views, (N, N)
        rows = np.arange(n)
        weights = np.linalg.norm(self._positions[nbrs] - self._positions[c], axis=1)  # (K,)
        # 1. shortest distances into c: old path to a neighbour, then the new edge.
        via = dist[:, nbrs] + weights[None, :]                                        # (N, K)
        best_k = np.argmin(via, axis=1)                                               # (N,)
        best = via[rows, best_k]                                                      # (N,)
        last = nbrs[best_k]                                                           # (N,)
        better = best < dist[:, c] - _EPS                                             # (N,)
        better[c] = False
        hop_into = np.where(rows == last, c, nxt[rows, last])                         # (N,)
        dist[better, c] = dist[c, better] = best[better]
        nxt[better, c] = hop_into[better]
        nxt[c, better] = last[better]     # undirected: the first hop out of c is that neighbour
        # 2. every other pair may now improve by passing through c.
        through = dist[:, c, None] + dist[None, c, :]                                 # (N, N)
        better2 = through < dist - _EPS                                               # (N, N)
        if better2.any():
            dist[better2] = through[better2]
            nxt[better2] = np.broadcast_to(nxt[:, c, None], (n, n))[better2]

    # -- node sets ----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, viewpoint: object) -> bool:
        return viewpoint in self._ids

    @property
    def nodes(self) -> list[str]:
        """Every node (visited and ghost) in first-seen order."""
        return self._names[: len(self._ids)].tolist()

    @property
    def current(self) -> str | None:
        """The latest visited node (None before the first update)."""
        return None if self._current is None else self._names[self._current]

    @property
    def visited(self) -> list[str]:
        """Visited nodes in first-seen order."""
        return self.names(np.flatnonzero(self._visited[: len(self._ids)]))

    @property
    def ghosts(self) -> list[str]:
        """Unvisited (ghost) nodes in first-seen order."""
        return self.names(np.flatnonzero(~self._visited[: len(self._ids)]))

    def global_order(self) -> np.ndarray:
        """(N,) indices in global-branch order: visited nodes, then ghosts (first-seen order within each)."""
        visited = self._visited[: len(self._ids)]
        return np.concatenate([np.flatnonzero(visited), np.flatnonzero(~visited)])

    def global_nodes(self) -> list[str]:
        """Global-branch node order: visited nodes, then ghosts (first-seen order within each)."""
        return self.names(self.global_order())

    def is_visited(self, viewpoint: str) -> bool:
        """True if the agent has stood at `viewpoint`."""
        return bool(self._visited[self._index(viewpoint)])

    def visited_mask(self, nodes: Sequence[str]) -> np.ndarray:
        """(N,) bool, True for visited nodes."""
        return self._visited[self._indices(nodes)].copy()

    def step_ids(self, nodes: Sequence[str]) -> np.ndarray:
        """(N,) int64 step id of each node: t+1 of its last visit at loop step t, 0 for ghosts."""
        return self._steps[self._indices(nodes)].copy()

    def position(self, viewpoint: str) -> np.ndarray:
        """(3,) position of a node in metres."""
        return self._positions[self._index(viewpoint)].copy()

    def neighbours(self, viewpoint: str) -> list[str]:
        """Nodes joined to `viewpoint` by an edge of the map (first-seen order)."""
        return self.names(np.array(sorted(self._adjacent[self._index(viewpoint)]), dtype=np.int64))

    # -- shortest paths in the known graph ----------------------------------------------
    def distance(self, a: str, b: str) -> float:
        """Shortest distance in metres from a to b through the known graph (inf if unknown)."""
        return float(self._dist[self._index(a), self._index(b)])

    def path(self, a: str, b: str) -> list[str]:
        """Viewpoints walked from a to b through the known graph: excludes a, ends with b."""
        i, j = self._index(a), self._index(b)
        if not np.isfinite(self._dist[i, j]):
            raise ValueError(f"no known path from '{a}' to '{b}' in the graph map")
        hops: list[str] = []
        while i != j:
            i = int(self._next[i, j])
            hops.append(self._names[i])
            if len(hops) > len(self._ids):
                raise RuntimeError("next-hop table is inconsistent (cycle)")
        return hops

    def hops(self, a: str, b: str) -> int:
        """Number of edges on the reconstructed shortest path from a to b."""
        return int(self._hop_counts(self._index(a), np.array([self._index(b)]))[0])

    def _hop_counts(self, source: int, targets: np.ndarray) -> np.ndarray:
        """(N,) hop counts from `source` to each target, walking all targets in lockstep."""
        at = np.full(len(targets), source, dtype=np.int64)   # (N,) where each walk currently is
        counts = np.zeros(len(targets), dtype=np.int64)       # (N,)
        active = at != targets
        for _ in range(len(self._ids)):
            if not active.any():
                return counts
            at[active] = self._next[at[active], targets[active]]
            if (at[active] < 0).any():
                raise ValueError("hop count requested between disconnected nodes of the graph map")
            counts[active] += 1
            active = at != targets
        if active.any():
            raise RuntimeError("next-hop table is inconsistent (cycle)")
        return counts

    def pair_distances(self, nodes: Sequence[str]) -> np.ndarray:
        """(N+1, N+1) float32 shortest distances between `nodes`, with a zero row/col 0 for [stop]."""
        idx = self._indices(nodes)
        out = np.zeros((len(idx) + 1, len(idx) + 1), dtype=np.float32)
        out[1:, 1:] = self._dist[np.ix_(idx, idx)]
        return out

    def position_features(self, nodes: Sequence[str] | np.ndarray, current: str | int, heading: float,
                          elevation: float) -> np.ndarray:
        """(N, 7) float32 [sin dh, cos dh, sin de, cos de, euclid/30, graph dist/30, hops/10].

        dh, de = direction of (node - current) minus the agent's (heading, elevation).
        """
        idx = self._indices(nodes)                                      # (N,)
        c = self._index(current) if isinstance(current, str) else int(current)
        vectors = self._positions[idx] - self._positions[c]            # (N, 3)
        node_heading, node_elevation = heading_elevation(vectors)      # (N,), (N,)
        feats = np.empty((len(idx), 7), dtype=np.float32)
        feats[:, :4] = angle_features(np.asarray(node_heading) - heading, np.asarray(node_elevation) - elevation)
        feats[:, 4] = np.linalg.norm(vectors, axis=1) / MAX_DIST
        feats[:, 5] = self._dist[c, idx] / MAX_DIST
        feats[:, 6] = self._hop_counts(c, idx) / MAX_STEP
        return feats

    # -- embeddings -----------------------------------------------------------------------
    def _ensure_embeddings(self, like: torch.Tensor) -> None:
        if self._visited_embeds is None:
            size = (len(self._positions), like.shape[-1])
            self._visited_embeds = like.new_zeros(size)    # (C, D)
            self._ghost_sums = like.new_zeros(size)        # (C, D)

    def set_visited_embedding(self, viewpoint: str, embedding: torch.Tensor) -> None:
        """Replace the embedding of a visited node (its own panorama summary, (D,))."""
        if not self.is_visited(viewpoint):
            raise ValueError(f"'{viewpoint}' is a ghost; call update() on arrival before setting it")
        self._ensure_embeddings(embedding)
        index = torch.tensor([self._index(viewpoint)], device=embedding.device)
        self._visited_embeds = self._visited_embeds.index_copy(0, index, embedding[None])
        self._has_visited_embed[int(index)] = True

    def add_ghost_embeddings(self, viewpoints: Sequence[str], embeddings: torch.Tensor) -> None:
        """Add one observation (K, D) of each of K nodes; visited ones are skipped (keeps autograd)."""
        idx = self._indices(viewpoints)                                                  # (K,)
        keep = ~self._visited[idx]
        if not keep.any():
            return
        self._ensure_embeddings(embeddings)
        rows = torch.from_numpy(np.flatnonzero(keep)).to(embeddings.device)
        index = torch.from_numpy(idx[keep]).to(embeddings.device)
        self._ghost_sums = self._ghost_sums.index_add(0, index, embeddings.index_select(0, rows))
        np.add.at(self._ghost_counts, idx[keep], 1)

    def add_ghost_embedding(self, viewpoint: str, embedding: torch.Tensor) -> None:
        """Add one observation (D,) of an unvisited node to its running mean (keeps autograd)."""
        if self.is_visited(viewpoint):
            raise ValueError(f"'{viewpoint}' is visited; ghost contributions are only for unvisited nodes")
        self.add_ghost_embeddings([viewpoint], embedding[None])

    def embedding(self, viewpoint: str) -> torch.Tensor:
        """(D,) node feature: the visited embedding, else the mean of the ghost contributions."""
        return self.embeddings([viewpoint])[0]

    def embeddings(self, nodes: Sequence[str] | np.ndarray) -> torch.Tensor:
        """(N, D) node features in the order of `nodes` (ids or an index array)."""
        idx = self._indices(nodes)
        has_visited, counts = self._has_visited_embed[idx], self._ghost_counts[idx]
        missing = ~has_visited & (counts == 0)
        if missing.any() or self._visited_embeds is None:
            raise KeyError(f"node '{self._names[int(idx[np.argmax(missing)])]}' has no embedding yet")
        index = torch.from_numpy(idx).to(self._visited_embeds.device)
        ghosts = self._ghost_sums.index_select(0, index) / torch.from_numpy(
            np.maximum(counts, 1)).to(self._ghost_sums)[:, None]                        # (N, D)
        use_visited = torch.from_numpy(has_visited).to(index.device)[:, None]
        return torch.where(use_visited, self._visited_embeds.index_select(0, index), ghosts)

    # -- stop scores and object predictions -------------------------------------------------
    def set_stop_score(self, viewpoint: str, probability: float) -> None:
        """Record the stop probability predicted while standing at a visited node."""
        if not self.is_visited(viewpoint):
            raise ValueError(f"stop scores are recorded at visited nodes only; '{viewpoint}' is a ghost")
        self._stop_scores[viewpoint] = float(probability)

    def stop_score(self, viewpoint: str) -> float | None:
        """The stored stop probability of a node, or None."""
        return self._stop_scores.get(viewpoint)

    def best_stop_node(self) -> str | None:
        """Visited node with the highest stored stop probability (first seen wins ties), or None."""
        best, best_score = None, -np.inf
        for vp in self.visited:
            score = self._stop_scores.get(vp)
            if score is not None and score > best_score:
                best, best_score = vp, score
        return best

    def set_object_prediction(self, viewpoint: str, obj_id: str | None) -> None:
        """Record the object predicted at a node (REVERIE grounding)."""
        self._index(viewpoint)
        self._objects[viewpoint] = obj_id

    def object_prediction(self, viewpoint: str) -> str | None:
        """The object predicted at a node, or None."""
        return self._objects.get(viewpoint)
