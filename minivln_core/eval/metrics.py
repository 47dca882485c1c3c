"""Navigation metrics of R2R and REVERIE, as DUET computes them (reference study, section e).

All distances d(a, b) are shortest-path lengths in metres on the FULL scan graph
(`ScanGraph.distances`). For a predicted viewpoint sequence P (start first) and the annotated
path R (L_gt = its length, summed along the given path):

* ne = d(P[-1], R[-1]); oe (oracle error) = min_v d(v, R[-1]); tl = sum d(P[k], P[k+1]);
  steps = len(P) - 1 (moves; consecutive repeats of one viewpoint are collapsed first, which
  changes nothing for DUET outputs and keeps rotate-in-place records from inflating DTW/steps);
  action_steps = number of segments - 1 when the trajectory is given as DUET segments.
* sr = ne < 3 m (strict); osr = oe < 3 m; spl = sr * L_gt / max(tl, L_gt, 0.01).
* ndtw = exp(-DTW(P, R) / (3 * len(R))); sdtw = sr * ndtw.
* cls = coverage * score, coverage = mean_{u in R} exp(-min_{v in P} d(u, v) / 3),
  expected = coverage * L(R), score = expected / (expected + |expected - L(P)|) (1 if both are 0).
* REVERIE (episode.obj_id set): sr / osr test membership of P[-1] / any v in the goal set
  (viewpoints where the object is visible); ne / oe are measured to the nearest goal viewpoint;
  rgs = str(pred_obj_id) == str(obj_id); rgspl = rgs * L_gt / max(tl, L_gt, 0.01).

`aggregate` reports means; rates (sr, osr, spl, ndtw, sdtw, cls, rgs, rgspl) as percentages.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from minivln_core.data.episodes import Episode
from minivln_core.errors import DataError

if TYPE_CHECKING:
    from minivln_core.data.connectivity import ScanGraph

SUCCESS_DISTANCE = 3.0   # metres; success is strictly closer than this
DTW_THRESHOLD = 3.0      # metres; nDTW / CLS normalisation
RATE_KEYS = ("sr", "osr", "spl", "ndtw", "sdtw", "cls", "rgs", "rgspl")
MEAN_KEYS = ("ne", "oe", "tl", "steps", "action_steps", "gt_length")


def flatten_trajectory(trajectory: Sequence[str] | Sequence[Sequence[str]]) -> tuple[list[str], int | None]:
    """(viewpoints with consecutive repeats collapsed, action steps or None) of a flat or segment trajectory."""
    if trajectory and all(not isinstance(item, str) for item in trajectory):
        flat = [vp for segment in trajectory for vp in segment]
        action_steps: int | None = len(trajectory) - 1
    else:
        flat, action_steps = list(trajectory), None  # type: ignore[arg-type]
    if not all(isinstance(vp, str) for vp in flat):
        raise TypeError("a trajectory is a list of viewpoint ids or a list of segments (lists of ids)")
    collapsed = [vp for k, vp in enumerate(flat) if k == 0 or vp != flat[k - 1]]
    return collapsed, action_steps


def dtw(cost: np.ndarray) -> float:
    """Classic dynamic time warping total cost for a (n, m) cost matrix (O(nm) DP, row-vectorised)."""
    cost = np.asarray(cost, dtype=np.float64)
    n, m = cost.shape
    if n == 0 or m == 0:
        raise ValueError("DTW needs two non-empty sequences")
    prev = np.full(m + 1, np.inf)  # row i-1 of the (n+1, m+1) accumulated matrix
    prev[0] = 0.0
    for i in range(n):
        cur = np.full(m + 1, np.inf)
        # diag/up terms vectorised over j; the left term needs a running pass
        best_prev = np.minimum(prev[1:], prev[:-1])  # min(D[i-1][j], D[i-1][j-1]) for j = 1..m
        for j in range(m):
            cur[j + 1] = cost[i, j] + min(best_prev[j], cur[j])
        prev = cur
    return float(prev[m])


def ndtw(distances: np.ndarray, path_idx: Sequence[int], ref_idx: Sequence[int]) -> float:
    """Normalised DTW in [0, 1] from an all-pairs distance matrix (N, N) and index sequences."""
    cost = distances[np.ix_(list(path_idx), list(ref_idx))]  # (len(path), len(ref)) metres
    return float(math.exp(-dtw(cost) / (DTW_THRESHOLD * len(ref_idx))))


def cls_score(distances: np.ndarray, path_idx: Sequence[int], ref_idx: Sequence[int]) -> float:
    """Coverage weighted by length score (Jain et al. 2019) in [0, 1]."""
    pi, ri = np.asarray(path_idx), np.asarray(ref_idx)
    to_path = distances[np.ix_(ri, pi)].min(axis=1)                   # (len(ref),) metres
    coverage = float(np.exp(-to_path / DTW_THRESHOLD).mean())
    ref_len = float(distances[ri[:-1], ri[1:]].sum())
    pred_len = float(distances[pi[:-1], pi[1:]].sum())
    expected = coverage * ref_len
    denom = expected + abs(expected - pred_len)
    score = expected / denom if denom > 0 else 1.0
    return coverage * score


def episode_metrics(graph: "ScanGraph", trajectory: Sequence[str] | Sequence[Sequence[str]], episode: Episode,
                    pred_obj_id: str | int | None = None) -> dict[str, float]:
    """Metrics of one trajectory (flat viewpoint list or DUET segments) against its episode.

    Rates are 0/1 or fractions here; `aggregate` turns their means into percentages.
    """
    path, action_steps = flatten_trajectory(trajectory)
    where = f"episode {episode.instr_id}"
    if not path:
        raise DataError(where, "empty trajectory", field="trajectory")
    p_idx = [graph.require(vp) for vp in path]
    r_idx = [graph.require(vp, "annotated path viewpoint") for vp in episode.path]
    dist = graph.distances  # (N, N) metres
    tl = float(dist[p_idx[:-1], p_idx[1:]].sum())
    gt_length = float(dist[r_idx[:-1], r_idx[1:]].sum())
    reverie = episode.obj_id is not None
    if reverie:
        if not episode.goal_viewpoints:
            raise DataError(where, f"object {episode.obj_id} has no goal viewpoints (load the annotations with "
                                   f"a BBoxes index)", field="goal_viewpoints")
        goals = set(episode.goal_viewpoints)
        g_idx = [graph.require(vp, "goal viewpoint") for vp in episode.goal_viewpoints]
        to_goal = dist[np.ix_(p_idx, g_idx)].min(axis=1)             # (len(path),) metres
        success = float(path[-1] in goals)
        oracle = float(any(vp in goals for vp in path))
    else:
        to_goal = dist[p_idx, r_idx[-1]]                               # (len(path),) metres
        success = float(to_goal[-1] < SUCCESS_DISTANCE)
        oracle = float(to_goal.min() < SUCCESS_DISTANCE)
    length_ratio = gt_length / max(tl, gt_length, 0.01)
    n = ndtw(dist, p_idx, r_idx)
    scores = {
        "ne": float(to_goal[-1]),
        "oe": float(to_goal.min()),
        "tl": tl,
        "steps": float(len(path) - 1),
        "gt_length": gt_length,
        "sr": success,
        "osr": oracle,
        "spl": success * length_ratio,
        "ndtw": n,
        "sdtw": success * n,
        "cls": cls_score(dist, p_idx, r_idx),
    }
    if action_steps is not None:
        scores["action_steps"] = float(action_steps)
    if reverie:
        rgs = float(pred_obj_id is not None and str(pred_obj_id) == str(episode.obj_id))
        scores["rgs"] = rgs
        scores["rgspl"] = rgs * length_ratio
    return scores


def aggregate(per_episode: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Means over episodes: rates ×100, distances in metres, plus `num_episodes`.

    A key is reported only if every episode has it (e.g. rgs only when all are REVERIE).
    """
    if not per_episode:
        raise ValueError("no episodes to aggregate")
    common = set(per_episode[0]).intersection(*per_episode[1:])
    result: dict[str, float] = {}
    for key in (*RATE_KEYS, *MEAN_KEYS):
        if key in common:
            mean = float(np.mean([float(ep[key]) for ep in per_episode]))
            result[key] = mean * 100.0 if key in RATE_KEYS else mean
    result["num_episodes"] = len(per_episode)
    return result
