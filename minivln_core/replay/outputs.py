"""What a replay writes: the standard results file, scored by the project's one scorer, and pictures.

    <out>/results.json     trajectories in the standard R2R results format (`eval.trajectories.write_results`)
    <out>/metrics.json     the summary: mode, inputs, agreement (open loop), aggregate metrics
    <out>/episodes.json    per episode: state, trajectory, metrics, decisions
    <out>/pictures/<instr_id>.png   the map from above (`pictures.plot_episode`)

Metrics come from `eval.trajectories.score_results_detailed` on the written results file, the
code `minivln eval-trajectories` and `minivln evaluate` use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from tqdm import tqdm

from minivln_core.data.connectivity import ScanGraph
from minivln_core.data.episodes import Episode
from minivln_core.eval.trajectories import score_results_detailed, write_results
from minivln_core.io_utils import atomic_write_json
from minivln_core.replay.pictures import plot_episode

log = logging.getLogger("minivln.replay")


@dataclass
class Outcome:
    """One episode to score, from either mode."""

    episode: Episode
    trajectory: list[str]                           # viewpoints passed, start first
    details: dict[str, Any] = field(default_factory=dict)  # state, decisions, agreement, ...
    marks: list[str] = field(default_factory=list)  # places ringed in the picture
    marks_label: str = ""


def unique_outcomes(outcomes: Sequence[Outcome]) -> list[Outcome]:
    """The first outcome of each instr_id (a results file holds one per instruction)."""
    seen: set[str] = set()
    kept = []
    for o in outcomes:
        if o.episode.instr_id in seen:
            log.warning("instruction %s was run again: only its first run is scored", o.episode.instr_id)
            continue
        seen.add(o.episode.instr_id)
        kept.append(o)
    return kept


def write_outputs(out: Path, outcomes: Sequence[Outcome], episodes_file: str | Path, connectivity: str | Path,
                  graphs: Mapping[str, ScanGraph], summary: dict[str, Any], pictures: bool = True,
                  progress: bool = True) -> dict[str, Any]:
    """Write results.json, score it, write metrics.json, episodes.json and pictures; returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    outcomes = unique_outcomes(outcomes)
    results = out / "results.json"
    write_results(results, [{"instr_id": o.episode.instr_id, "trajectory": o.trajectory} for o in outcomes])
    metrics, per_episode = score_results_detailed(episodes_file, connectivity, results, task="r2r", allow_missing=True)
    summary = {**summary, "metrics": metrics}
    atomic_write_json(out / "metrics.json", summary)
    atomic_write_json(out / "episodes.json", [
        {"instr_id": o.episode.instr_id, "scan": o.episode.scan, "instruction": o.episode.instruction,
         "reference": o.episode.path, "trajectory": o.trajectory,
         "metrics": {k: round(v, 4) for k, v in per_episode[o.episode.instr_id].items()}, **o.details}
        for o in outcomes])
    if pictures:
        for o in tqdm(outcomes, desc="pictures", unit="episode", disable=not progress):
            plot_episode(graphs[o.episode.scan], o.episode, o.trajectory,
                         out / "pictures" / f"{o.episode.instr_id}.png", per_episode[o.episode.instr_id],
                         o.marks, o.marks_label)
    return summary
