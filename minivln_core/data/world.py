"""A world folder: the layout `minivln synth` writes and every offline command reads.

    <world>/connectivity/<scan>_connectivity.json (+ scans.txt)     Matterport format
    <world>/annotations/R2R_<split>.json, REVERIE_<split>.json       R2R / REVERIE format
    <world>/annotations/BBoxes.json                                  DUET's merged object boxes
    <world>/features/views.h5                                        (36, D) per "<scan>_<vp>"
    <world>/features/views_vit.h5                                    the same from rendered panoramas
    <world>/features/objects.h5                                      objects per "<scan>_<vp>"
    <world>/features/objects_vit.h5                                  object crops of the rendered views

Real data can be arranged the same way, or each path given explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from minivln_core.data.connectivity import ScanGraph, load_connectivity
from minivln_core.data.episodes import Episode
from minivln_core.errors import DataError

TASKS = ("r2r", "reverie")


@dataclass(frozen=True)
class WorldPaths:
    """Where one world's files are."""

    root: Path
    features: str = "views"      # which view-feature file: features/<features>.h5

    @property
    def connectivity(self) -> Path:
        return self.root / "connectivity"

    def annotations(self, task: str, split: str) -> Path:
        """R2R_<split>.json or REVERIE_<split>.json."""
        if task not in TASKS:
            raise DataError(self.root, f"unknown task '{task}' (choose {', '.join(TASKS)})")
        prefix = "R2R" if task == "r2r" else "REVERIE"
        return self.root / "annotations" / f"{prefix}_{split}.json"

    @property
    def bboxes(self) -> Path:
        return self.root / "annotations" / "BBoxes.json"

    @property
    def view_features(self) -> Path:
        return self.root / "features" / f"{self.features}.h5"

    @property
    def object_features(self) -> Path:
        """The object file that goes with the view features: objects.h5, objects_vit.h5, ..."""
        return self.root / "features" / f"{self.features.replace('views', 'objects', 1)}.h5"

    def check(self) -> "WorldPaths":
        """Raise a DataError naming the first missing part of the world folder."""
        for path in (self.root, self.connectivity, self.view_features):
            if not path.exists():
                hint = ("`minivln features --world DIR`" if path == self.view_features and self.features != "views"
                        else "`minivln synth --out DIR`")
                raise DataError(path, f"missing from the world folder (make it with {hint})")
        return self


def load_episodes(paths: WorldPaths, task: str, split: str, max_instr_len: int = 200) -> list[Episode]:
    """Read the split's annotations with the project's R2R / REVERIE readers."""
    from minivln_core.data.bboxes import ObjectIndex
    from minivln_core.data.r2r import load_r2r
    from minivln_core.data.reverie import load_reverie

    path = paths.annotations(task, split)
    if not path.exists():
        raise DataError(path, f"annotation file for split '{split}' does not exist")
    if task == "r2r":
        return load_r2r(path, max_instr_len=max_instr_len)
    bboxes = ObjectIndex.load(paths.bboxes) if paths.bboxes.exists() else None
    return load_reverie(path, bboxes=bboxes, max_instr_len=max_instr_len)


def load_graphs_for(paths: WorldPaths, episodes: list[Episode]) -> dict[str, ScanGraph]:
    """Connectivity graphs of the scans the episodes use."""
    return load_connectivity(paths.connectivity, sorted({ep.scan for ep in episodes}))
