"""The one episode record every reader produces and every consumer (env, metrics, agent) takes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Episode:
    """One instruction with its reference path (R2R) and, for REVERIE, its target object."""

    instr_id: str                 # "<path_id>_<j>" (R2R) or "<path_id>_<objId>_<j>" (REVERIE)
    scan: str
    path: list[str]               # reference path, start viewpoint first
    heading: float                # start heading in radians (clockwise from +y)
    instruction: str
    instr_encoding: list[int]     # [CLS] word-pieces [SEP] (bert-base-uncased ids), truncated
    path_id: str = ""
    distance: float | None = None  # annotated path length in metres, if given
    obj_id: str | None = None      # REVERIE target object id
    goal_viewpoints: list[str] = field(default_factory=list)  # REVERIE: where the object is visible

    @property
    def start(self) -> str:
        return self.path[0]

    @property
    def goal(self) -> str:
        return self.path[-1]
