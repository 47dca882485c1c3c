"""Metrics against hand-computed values on the toy graph, and end-to-end scoring of result files.

Toy graph (see fixtures_data): a-b-c-d on a line with 2 m spacing, x 2 m off c, z unconnected.
Reference path R = [a, b, c, d], L_gt = 6 m; goal d.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fixtures_data import (GT_PATH, TOY_SCAN, bbox_entries, connectivity_entries, r2r_record, reverie_record,
                           toy_graph, write_json, write_toy_connectivity)
from minivln_core.data.connectivity import parse_connectivity
from minivln_core.data.episodes import Episode
from minivln_core.errors import DataError
from minivln_core.eval.metrics import aggregate, dtw, episode_metrics
from minivln_core.eval.trajectories import (ResultRecord, load_results, score_results, score_results_detailed,
                                            summary_text, write_results)

GRAPH = toy_graph()


def r2r_episode() -> Episode:
    return Episode(instr_id="7_0", scan=TOY_SCAN, path=list(GT_PATH), heading=0.0, instruction="go",
                   instr_encoding=[101, 102], path_id="7")


def reverie_episode() -> Episode:
    ep = r2r_episode()
    ep.instr_id, ep.obj_id, ep.goal_viewpoints = "7_42_0", "42", ["c", "d"]
    return ep


def test_dtw_small_matrix() -> None:
    # D = [[1, 3], [2, 1]] -> accumulated [[1, 4], [3, 2]] -> 2
    assert dtw(np.array([[1.0, 3.0], [2.0, 1.0]])) == 2.0
    assert dtw(np.zeros((1, 1))) == 0.0


def test_dtw_matches_plain_recurrence() -> None:
    rng = np.random.default_rng(0)
    for n, m in [(1, 5), (5, 1), (4, 7), (9, 3)]:
        cost = rng.uniform(0, 5, size=(n, m))  # (n, m)
        acc = np.full((n + 1, m + 1), np.inf)
        acc[0, 0] = 0.0
        for i in range(1, n + 1):
            for j in range(1, m + 1):
                acc[i, j] = cost[i - 1, j - 1] + min(acc[i - 1, j], acc[i, j - 1], acc[i - 1, j - 1])
        assert dtw(cost) == pytest.approx(acc[n, m])


def test_perfect_trajectory() -> None:
    m = episode_metrics(GRAPH, GT_PATH, r2r_episode())
    assert (m["ne"], m["oe"], m["tl"], m["steps"], m["gt_length"]) == (0.0, 0.0, 6.0, 3.0, 6.0)
    assert m["sr"] == m["osr"] == m["spl"] == m["ndtw"] == m["sdtw"] == m["cls"] == 1.0
    agg = aggregate([m])
    assert agg["sr"] == agg["spl"] == agg["ndtw"] == 100.0 and agg["num_episodes"] == 1
    # rotating in place (repeated viewpoints) changes nothing
    assert episode_metrics(GRAPH, ["a", "a", "b", "c", "c", "d"], r2r_episode()) == m


def test_detour_that_succeeds() -> None:
    # P = [a, b, c, x, c]: TL = 2+2+2+2 = 8; NE = d(c, d) = 2 < 3 -> SR 1; OE = 2 -> OSR 1.
    # SPL = 1 * 6 / max(8, 6) = 0.75.
    # Cost rows d(p_i, r_j):  a [0 2 4 6]; b [2 0 2 4]; c [4 2 0 2]; x [6 4 2 4]; c [4 2 0 2]
    # Accumulated DTW rows:   a [0 2 6 12]; b [2 0 2 6]; c [6 2 0 2]; x [12 6 2 4]; c [16 8 2 4] -> DTW = 4
    # nDTW = exp(-4 / (3 * 4)); SDTW = 1 * nDTW.
    # CLS: min distance of each ref node to P: a 0, b 0, c 0, d 2 -> PC = (3 + e^(-2/3)) / 4;
    #      expected = PC * 6; LS = expected / (expected + |expected - 8|); CLS = PC * LS.
    m = episode_metrics(GRAPH, ["a", "b", "c", "x", "c"], r2r_episode())
    pc = (3 + math.exp(-2 / 3)) / 4
    expected = pc * 6
    assert (m["ne"], m["oe"], m["tl"], m["steps"]) == (2.0, 2.0, 8.0, 4.0)
    assert (m["sr"], m["osr"]) == (1.0, 1.0)
    assert m["spl"] == pytest.approx(0.75)
    assert m["ndtw"] == pytest.approx(math.exp(-1 / 3)) and m["sdtw"] == pytest.approx(math.exp(-1 / 3))
    assert m["cls"] == pytest.approx(pc * expected / (expected + abs(expected - 8)))
    assert m["cls"] == pytest.approx(0.5786, abs=1e-4)


def test_failure_with_jump() -> None:
    # P = [a, b, x]: b-x is not an edge; TL uses the shortest path b-c-x = 4 -> TL = 6.
    # NE = d(x, d) = 4 >= 3 -> SR 0; OE = min(6, 4, 4) = 4 -> OSR 0; SPL = SDTW = 0.
    # Cost rows: a [0 2 4 6]; b [2 0 2 4]; x [6 4 2 4] -> accumulated last row [8 4 2 6] -> DTW 6.
    # nDTW = exp(-6 / 12). CLS: ref distances to P: a 0, b 0, c 2, d 4 -> PC = (2 + e^(-2/3) + e^(-4/3)) / 4;
    # expected = 6 PC, PL(P) = 6 -> LS = 6 PC / (6 PC + 6 - 6 PC) = PC -> CLS = PC^2.
    m = episode_metrics(GRAPH, ["a", "b", "x"], r2r_episode())
    pc = (2 + math.exp(-2 / 3) + math.exp(-4 / 3)) / 4
    assert (m["ne"], m["oe"], m["tl"], m["sr"], m["osr"], m["spl"], m["sdtw"]) == (4.0, 4.0, 6.0, 0.0, 0.0, 0.0, 0.0)
    assert m["ndtw"] == pytest.approx(math.exp(-0.5))
    assert m["cls"] == pytest.approx(pc * pc)


def test_success_threshold_is_strict() -> None:
    # p --3.0 m-- q --0.5 m-- r: stopping at p is exactly 3 m from goal q -> failure (NE < 3 is required).
    graph = parse_connectivity("line3", connectivity_entries(
        {"p": (0.0, 0.0, 1.5), "q": (3.0, 0.0, 1.5), "r": (3.5, 0.0, 1.5)}, [("p", "q"), ("q", "r")]))
    to_q = Episode(instr_id="1_0", scan="line3", path=["r", "q"], heading=0.0, instruction="", instr_encoding=[])
    at_boundary = episode_metrics(graph, ["r", "q", "p"], to_q)
    assert at_boundary["ne"] == 3.0 and at_boundary["sr"] == 0.0 and at_boundary["osr"] == 1.0
    to_r = Episode(instr_id="2_0", scan="line3", path=["q", "r"], heading=0.0, instruction="", instr_encoding=[])
    assert episode_metrics(graph, ["q", "p"], to_r)["ne"] == 3.5  # 3 + 0.5, along the graph


def test_segments_and_aggregate() -> None:
    seg = episode_metrics(GRAPH, [["a"], ["b", "c"], ["d"]], r2r_episode())
    assert seg["action_steps"] == 2.0 and seg["steps"] == 3.0 and seg["sr"] == 1.0
    agg = aggregate([episode_metrics(GRAPH, GT_PATH, r2r_episode()),
                     episode_metrics(GRAPH, ["a", "b", "c", "x", "c"], r2r_episode())])
    assert agg["sr"] == 100.0 and agg["spl"] == pytest.approx(87.5)
    assert agg["ne"] == pytest.approx(1.0) and agg["tl"] == pytest.approx(7.0) and agg["num_episodes"] == 2
    assert "rgs" not in agg and "action_steps" not in agg
    with pytest.raises(ValueError):
        aggregate([])


def test_reverie_goal_set_and_grounding() -> None:
    ep = reverie_episode()  # goals {c, d}, target object 42
    # P = [a, b, c, x, c]: ends at c (a goal) -> SR 1, TL 8 -> SPL = 6/8; NE to the nearest goal = 0.
    hit = episode_metrics(GRAPH, ["a", "b", "c", "x", "c"], ep, pred_obj_id=42)
    assert (hit["sr"], hit["osr"], hit["ne"], hit["rgs"]) == (1.0, 1.0, 0.0, 1.0)
    assert hit["spl"] == pytest.approx(0.75) and hit["rgspl"] == pytest.approx(0.75)
    # wrong object: RGS 0 even though navigation succeeded
    miss = episode_metrics(GRAPH, ["a", "b", "c", "x", "c"], ep, pred_obj_id="41")
    assert (miss["sr"], miss["rgs"], miss["rgspl"]) == (1.0, 0.0, 0.0)
    # stops at x (2 m from goal c but not a goal viewpoint): SR 0, OSR 1 (passed c); RGS only compares ids
    near = episode_metrics(GRAPH, ["a", "b", "c", "x"], ep, pred_obj_id="42")
    assert (near["sr"], near["osr"], near["ne"], near["rgs"], near["rgspl"]) == (0.0, 1.0, 2.0, 1.0, 1.0)
    agg = aggregate([hit, miss])
    assert agg["rgs"] == 50.0 and agg["rgspl"] == pytest.approx(37.5) and agg["sr"] == 100.0
    ep.goal_viewpoints = []
    with pytest.raises(DataError, match="goal viewpoints"):
        episode_metrics(GRAPH, GT_PATH, ep)


# -- result files and end-to-end scoring --------------------------------------------------------
def _standard(instr_id: str, vps: list[str], **extra: object) -> dict:
    return {"instr_id": instr_id, "trajectory": [[vp, 0.5, 0.0] for vp in vps], **extra}


@pytest.fixture()
def r2r_files(tmp_path: Path) -> tuple[Path, Path]:
    anno = write_json(tmp_path / "R2R_val_unseen.json", [r2r_record(7, n_instr=2)])
    return anno, write_toy_connectivity(tmp_path / "connectivity")


def test_results_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "preds.json"
    write_results(path, [ResultRecord("7_0", ["a", "b"], poses=[(0.1, 0.2), (0.3, -0.1)]),
                         {"instr_id": "7_1", "trajectory": [["a"], ["b", "c"]], "pred_objid": 42}])
    stored = json.loads(path.read_text())
    assert stored[1] == {"instr_id": "7_1", "trajectory": [["a", 0.0, 0.0], ["b", 0.0, 0.0], ["c", 0.0, 0.0]],
                         "predObjId": 42}
    records = load_results(path)
    assert records[0].trajectory == ["a", "b"] and records[0].poses == [(0.1, 0.2), (0.3, -0.1)]
    assert records[1].pred_obj_id == "42"


@pytest.mark.parametrize("record,field", [({"trajectory": [["a", 0, 0]]}, "instr_id"),
                                          ({"instr_id": "7_0"}, "trajectory"),
                                          ({"instr_id": "7_0", "trajectory": []}, "trajectory"),
                                          ({"instr_id": "7_0", "trajectory": [["a", "x", 0]]}, "trajectory"),
                                          ({"instr_id": "7_0", "trajectory": [["a", 0, 0], ["b", 0]]}, "trajectory"),
                                          ({"instr_id": "7_0", "trajectory": ["a"], "predObjId": 1.5}, "predObjId")])
def test_load_results_malformed(tmp_path: Path, record: dict, field: str) -> None:
    path = write_json(tmp_path / "preds.json", [_standard("7_9", ["a"]), record])
    with pytest.raises(DataError) as excinfo:
        load_results(path)
    assert "preds.json" in str(excinfo.value) and "record 1" in str(excinfo.value)
    assert f"field '{field}'" in str(excinfo.value)


def test_score_r2r_end_to_end(tmp_path: Path, r2r_files: tuple[Path, Path]) -> None:
    anno, conn = r2r_files
    preds = write_json(tmp_path / "preds.json", [_standard("7_0", GT_PATH),
                                                 {"instr_id": "7_1", "trajectory": [["a"], ["b", "c", "x"], ["c"]]}])
    metrics, per_episode = score_results_detailed(anno, conn, preds)
    assert metrics["num_episodes"] == 2 and metrics["sr"] == 100.0 and metrics["spl"] == pytest.approx(87.5)
    assert metrics["ndtw"] == pytest.approx(50 * (1 + math.exp(-1 / 3)))
    assert per_episode["7_1"]["action_steps"] == 2.0 and "rgs" not in metrics
    assert score_results(anno, conn, preds, task="r2r") == metrics
    text = summary_text(metrics)
    assert "2 episodes" in text and "100.0% success (SR)" in text and "87.5% SPL" in text


def test_score_errors(tmp_path: Path, r2r_files: tuple[Path, Path]) -> None:
    anno, conn = r2r_files
    cases = [
        ([_standard("7_0", GT_PATH)], "1 of 2 annotated instructions have no result (first: 7_1)", None),
        ([_standard("7_0", GT_PATH), _standard("7_1", GT_PATH), _standard("9_0", ["a"])], "'9_0'", 2),
        ([_standard("7_0", GT_PATH), _standard("7_1", ["a", "b", "q"])], "viewpoint 'q'", 1),
        ([_standard("7_0", ["b", "c", "d"]), _standard("7_1", GT_PATH)], "annotated start is 'a'", 0),
        ([_standard("7_0", ["a", "z"]), _standard("7_1", GT_PATH)], "no path from 'a' to 'z'", 0),
    ]
    for records, text, record in cases:
        preds = write_json(tmp_path / "preds.json", records)
        with pytest.raises(DataError) as excinfo:
            score_results(anno, conn, preds)
        message = str(excinfo.value)
        assert text in message and "preds.json" in message, message
        if record is not None:
            assert f"record {record}" in message
    with pytest.raises(ValueError, match="task"):
        score_results(anno, conn, preds, task="soon")


def test_score_reverie_end_to_end(tmp_path: Path) -> None:
    conn = write_toy_connectivity(tmp_path / "connectivity")
    anno_dir = tmp_path / "annotations"
    anno = write_json(anno_dir / "REVERIE_val_unseen.json", [reverie_record(7, 42)])
    preds = write_json(tmp_path / "preds.json", [_standard("7_42_0", ["a", "b", "c", "x", "c"], predObjId=42),
                                                 _standard("7_42_1", ["a", "b", "c", "x", "c"], predObjId=41)])
    with pytest.raises(DataError, match="BBoxes.json"):  # no goal set without an index
        score_results(anno, conn, preds)
    write_json(anno_dir / "BBoxes.json", bbox_entries())  # DUET layout: picked up automatically
    metrics = score_results(anno, conn, preds)
    assert (metrics["sr"], metrics["rgs"], metrics["num_episodes"]) == (100.0, 50.0, 2)
    assert metrics["spl"] == pytest.approx(75.0) and metrics["rgspl"] == pytest.approx(37.5)
    assert "RGS 50.0%" in summary_text(metrics)
