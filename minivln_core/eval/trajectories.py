"""Result files (agent trajectories) -- reading, writing and scoring against annotations.

Standard format (R2R / REVERIE leaderboards), a JSON array of
`{"instr_id": "<path_id>_<j>", "trajectory": [[viewpoint, heading, elevation], ...]}`; REVERIE
adds `"predObjId"` (DUET writes `"pred_objid"`; both are read). Also read: DUET's segment form,
where `trajectory` is a list of segments (lists of viewpoint ids, the first being [start]), which
is flattened, and a plain list of viewpoint ids. `write_results` always writes the standard form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from minivln_core.data.bboxes import ObjectIndex
from minivln_core.data.connectivity import load_connectivity
from minivln_core.data.episodes import Episode
from minivln_core.data.r2r import load_r2r, validate_against
from minivln_core.data.reverie import is_reverie_file, load_reverie
from minivln_core.errors import DataError
from minivln_core.eval.metrics import aggregate, episode_metrics
from minivln_core.io_utils import atomic_write_json, read_json

PRED_OBJ_KEYS = ("predObjId", "pred_objid", "pred_obj_id")
TASKS = ("auto", "r2r", "reverie")


@dataclass
class ResultRecord:
    """One agent result; `trajectory` is the flattened viewpoint sequence, start first."""

    instr_id: str
    trajectory: list[str]
    poses: list[tuple[float, float]] | None = None  # (heading, elevation) per trajectory entry, standard form only
    segments: list[list[str]] | None = None         # DUET segment form, when read from one
    pred_obj_id: str | None = None                  # REVERIE predicted object id


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parse_trajectory(path: Path, index: int, raw: Any) -> tuple[list[str], list | None, list | None]:
    def fail(problem: str) -> DataError:
        return DataError(path, problem, record=index, field="trajectory")

    if not isinstance(raw, list) or not raw:
        raise fail("expected a non-empty list")
    first = raw[0]
    if isinstance(first, str):  # plain viewpoint list
        for k, vp in enumerate(raw):
            if not isinstance(vp, str) or not vp:
                raise fail(f"entry {k} is not a viewpoint id: {vp!r}")
        return list(raw), None, None
    if isinstance(first, list) and len(first) == 3 and isinstance(first[0], str) and not isinstance(first[1], str):
        poses = []
        for k, entry in enumerate(raw):  # standard [viewpoint, heading, elevation]
            if (not isinstance(entry, list) or len(entry) != 3 or not isinstance(entry[0], str) or not entry[0]
                    or not _is_number(entry[1]) or not _is_number(entry[2])):
                raise fail(f"entry {k} is not [viewpoint, heading, elevation] with finite angles: {entry!r}")
            poses.append((float(entry[1]), float(entry[2])))
        return [entry[0] for entry in raw], poses, None
    segments = []
    for k, segment in enumerate(raw):  # DUET segments
        if not isinstance(segment, list) or not all(isinstance(vp, str) and vp for vp in segment):
            raise fail(f"entry {k} is neither [viewpoint, heading, elevation] nor a list of viewpoint ids: {segment!r}")
        segments.append(list(segment))
    flat = [vp for segment in segments for vp in segment]
    if not flat:
        raise fail("all segments are empty")
    return flat, None, segments


def parse_result(path: str | Path, index: int, raw: Any) -> ResultRecord:
    """Validate one decoded result record."""
    path = Path(path)
    if not isinstance(raw, dict):
        raise DataError(path, f"record is not a JSON object ({type(raw).__name__})", record=index)
    instr_id = raw.get("instr_id")
    if isinstance(instr_id, bool) or not isinstance(instr_id, (str, int)) or not str(instr_id).strip():
        raise DataError(path, f"expected a non-empty string, got {instr_id!r}", record=index, field="instr_id")
    if "trajectory" not in raw:
        raise DataError(path, "missing field", record=index, field="trajectory")
    flat, poses, segments = _parse_trajectory(path, index, raw["trajectory"])
    pred = None
    for key in PRED_OBJ_KEYS:
        if raw.get(key) is not None:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise DataError(path, f"expected an integer or string object id, got {value!r}", record=index,
                                field=key)
            pred = str(value)
            break
    return ResultRecord(str(instr_id), flat, poses, segments, pred)


def load_results(path: str | Path) -> list[ResultRecord]:
    """Read and validate a results file; instr_ids must be unique."""
    path = Path(path)
    data = read_json(path, "results file does not exist")
    if not isinstance(data, list):
        raise DataError(path, f"expected a JSON array of results, got {type(data).__name__}")
    records = [parse_result(path, i, raw) for i, raw in enumerate(data)]
    seen: dict[str, int] = {}
    for i, rec in enumerate(records):
        if rec.instr_id in seen:
            raise DataError(path, f"instr_id '{rec.instr_id}' appears again (first at record {seen[rec.instr_id]})",
                            record=i, field="instr_id")
        seen[rec.instr_id] = i
    return records


def _json_obj_id(obj_id: str) -> int | str:
    return int(obj_id) if obj_id.isdigit() else obj_id  # the REVERIE server expects integers


def write_results(path: str | Path, records: Iterable[ResultRecord | Mapping[str, Any]]) -> None:
    """Write results atomically in the standard form (headings/elevations 0 where unknown)."""
    out = []
    for i, rec in enumerate(records):
        if not isinstance(rec, ResultRecord):
            rec = parse_result(path, i, dict(rec))
        poses = rec.poses if rec.poses is not None else [(0.0, 0.0)] * len(rec.trajectory)
        if len(poses) != len(rec.trajectory):
            raise DataError(path, f"{len(poses)} poses for {len(rec.trajectory)} viewpoints", record=i, field="poses")
        item: dict[str, Any] = {"instr_id": rec.instr_id,
                                "trajectory": [[vp, float(h), float(e)] for vp, (h, e) in zip(rec.trajectory, poses)]}
        if rec.pred_obj_id is not None:
            item["predObjId"] = _json_obj_id(rec.pred_obj_id)
        out.append(item)
    atomic_write_json(path, out)


def _load_annotations(annotations_path: Path, task: str, bboxes: ObjectIndex | str | Path | None) -> list[Episode]:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if task == "auto":
        task = "reverie" if is_reverie_file(annotations_path) else "r2r"
    if task == "r2r":
        return load_r2r(annotations_path, tokenize=False)
    if bboxes is None and (annotations_path.parent / "BBoxes.json").is_file():
        bboxes = annotations_path.parent / "BBoxes.json"  # DUET layout: REVERIE/annotations/BBoxes.json
    episodes = load_reverie(annotations_path, bboxes=bboxes, tokenize=False)
    for ep in episodes:
        if ep.obj_id is None:
            raise DataError(annotations_path, "no objId: REVERIE scoring needs annotated targets", record=ep.instr_id,
                            field="objId")
        if not ep.goal_viewpoints:
            hint = "" if bboxes is not None else " (no BBoxes.json beside the annotations; pass bboxes=)"
            raise DataError(annotations_path, f"object {ep.obj_id} of scan {ep.scan} is visible from no "
                                              f"viewpoint{hint}", record=ep.instr_id, field="goal_viewpoints")
    return episodes


def score_results_detailed(annotations_path: str | Path, connectivity_dir: str | Path, results_path: str | Path,
                           task: str = "auto", bboxes: ObjectIndex | str | Path | None = None,
                           allow_missing: bool = False) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Like `score_results`, also returning the per-episode metrics keyed by instr_id.

    allow_missing: score only the annotated instructions that have a result (for evaluations
    limited to part of a split); by default a missing result is an error.
    """
    annotations_path, results_path = Path(annotations_path), Path(results_path)
    episodes = _load_annotations(annotations_path, task.lower(), bboxes)
    by_id = {ep.instr_id: ep for ep in episodes}
    results = load_results(results_path)
    for i, rec in enumerate(results):
        if rec.instr_id not in by_id:
            unknown = sum(r.instr_id not in by_id for r in results)
            raise DataError(results_path, f"instr_id '{rec.instr_id}' is not in {annotations_path.name} "
                                          f"({unknown} unknown id(s) in total)", record=i, field="instr_id")
    answered = {rec.instr_id for rec in results}
    missing = [ep.instr_id for ep in episodes if ep.instr_id not in answered]
    if missing and allow_missing:
        episodes = [ep for ep in episodes if ep.instr_id in answered]
    elif missing:
        first = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DataError(results_path, f"{len(missing)} of {len(episodes)} annotated instructions have no result "
                                      f"(first: {first})", field="instr_id")
    graphs = load_connectivity(connectivity_dir, scans=sorted({ep.scan for ep in episodes}))
    validate_against(episodes, graphs, annotations_path, require_walk=False)
    per_episode: dict[str, dict[str, float]] = {}
    for i, rec in enumerate(results):
        ep = by_id[rec.instr_id]
        graph = graphs[ep.scan]
        for k, vp in enumerate(rec.trajectory):
            if vp not in graph:
                raise DataError(results_path, f"viewpoint '{vp}' (trajectory entry {k}) is not in scan {ep.scan}",
                                record=i, field="trajectory")
        if rec.trajectory[0] != ep.start:
            raise DataError(results_path, f"trajectory starts at '{rec.trajectory[0]}', the annotated start is "
                                          f"'{ep.start}'", record=i, field="trajectory")
        idx = [graph.index[vp] for vp in rec.trajectory]
        hops = graph.distances[idx[:-1], idx[1:]]  # (len-1,) metres
        if not np.isfinite(hops).all():
            k = int(np.argmin(np.isfinite(hops)))
            raise DataError(results_path, f"no path from '{rec.trajectory[k]}' to '{rec.trajectory[k + 1]}' in scan "
                                          f"{ep.scan}", record=i, field="trajectory")
        per_episode[rec.instr_id] = episode_metrics(graph, rec.segments or rec.trajectory, ep, rec.pred_obj_id)
    return aggregate(list(per_episode.values())), per_episode


def score_results(annotations_path: str | Path, connectivity_dir: str | Path, results_path: str | Path,
                  task: str = "auto", bboxes: ObjectIndex | str | Path | None = None) -> dict[str, float]:
    """Score a results file against annotations and return the aggregate metrics.

    task: "r2r", "reverie" or "auto" (REVERIE if annotation records carry objId). REVERIE goal sets
    come from `bboxes` (ObjectIndex or path), else `BBoxes.json` beside the annotations, else
    `pos_vps` in the annotation records. Every annotated instruction needs exactly one result;
    every result must name an annotated instruction, start at its start and use scan viewpoints.
    """
    return score_results_detailed(annotations_path, connectivity_dir, results_path, task, bboxes)[0]


def summary_text(metrics: Mapping[str, float]) -> str:
    """One human-readable paragraph of aggregate metrics."""
    n = int(metrics.get("num_episodes", 0))
    parts = [f"{metrics[k]:.1f}% {label}" for k, label in
             (("sr", "success (SR)"), ("spl", "SPL"), ("osr", "oracle success"), ("ndtw", "nDTW"),
              ("sdtw", "SDTW"), ("cls", "CLS")) if k in metrics]
    text = f"Scored {n:,} episode{'s' if n != 1 else ''}: " + ", ".join(parts) + "."
    if "ne" in metrics:
        text += f" The agent stopped {metrics['ne']:.2f} m from the goal on average"
        text += f" (oracle error {metrics['oe']:.2f} m)" if "oe" in metrics else ""
        text += "."
    if "tl" in metrics:
        text += f" Trajectories were {metrics['tl']:.2f} m long"
        text += f" over {metrics['steps']:.1f} moves" if "steps" in metrics else ""
        text += f" (reference paths {metrics['gt_length']:.2f} m)" if "gt_length" in metrics else ""
        text += "."
    if "rgs" in metrics:
        text += f" Remote grounding: RGS {metrics['rgs']:.1f}%, RGSPL {metrics.get('rgspl', 0.0):.1f}%."
    return text
