"""REVERIE annotation files -> one `Episode` per instruction, with the target object and goal set.

Accepted record forms (github YuankaiQi/REVERIE `tasks/REVERIE/data*` and cshizhe/VLN-DUET):

* v1 `REVERIE_<split>.json`: `{distance, ix, scan, heading, path_id, objId, id, path,
  instructions, instructions_l}`. `ix` (reserved) and `instructions_l` (the R2R instructions of the
  same path, "for convenience") are ignored.
* DUET `REVERIE_<split>_enc.json`: v1 plus `instr_encodings` (one id list per instruction), used
  as-is when present (truncated to max_instr_len, [SEP] kept last).
* v2 `data_v2/REVERIE_<split>.json`: `{id, path, objId, instructions, heading, scan, path_id}` --
  no `distance`, `ix` or `instructions_l`. The v2 release changed the bounding boxes (BBoxes v2),
  not the annotation schema; the goal set therefore depends on which BBoxes index is passed.
* Test split (v1/v2): `{id, path: [start], instructions, heading, scan}` with no `objId` and no
  `path_id`: obj_id is None, path_id = id and instr_id = "<id>_<j>".
* DUET pretrain JSONL lines: `{instr_id, scan, path, heading, instr_encoding, objId?, pos_vps?}`;
  `pos_vps` (viewpoints where the object is visible) become goal_viewpoints when given.

instr_id = "<path_id>_<objId>_<j>" (equal to "<id>_<j>" in the official files). `objId` may be an
integer or a string; it is stored as a string. goal_viewpoints are filled from a BBoxes index when
one is given (every viewpoint of the scan where the object has a non-empty visible_pos); an
object seen nowhere keeps an empty goal set here, and scoring such an episode is an error.
"""

from __future__ import annotations

from pathlib import Path

from minivln_core.data.bboxes import ObjectIndex
from minivln_core.data.episodes import Episode
from minivln_core.data.r2r import RecordReader, check_unique, instruction_encoding, read_records
from minivln_core.data.tokenizer import truncate_encoding


def _goals(reader: RecordReader, scan: str, obj_id: str | None, bboxes: ObjectIndex | None) -> list[str]:
    if reader.has("pos_vps"):
        return reader.viewpoints("pos_vps")
    if bboxes is not None and obj_id is not None:
        return bboxes.goal_viewpoints(scan, obj_id)
    return []


def _full_record(reader: RecordReader, bboxes: ObjectIndex | None, max_instr_len: int,
                 tokenize: bool) -> list[Episode]:
    scan = reader.string("scan")
    path = reader.viewpoints("path")
    heading = reader.number("heading")
    distance = reader.optional_number("distance", minimum=0.0)
    obj_id = reader.identifier("objId") if reader.has("objId") else None
    if reader.has("path_id"):
        path_id = reader.identifier("path_id")
    elif reader.has("id"):
        path_id = reader.identifier("id")
    else:
        raise reader.error("missing field (need 'path_id', or 'id' for test records)", "path_id")
    if obj_id is not None and reader.has("path_id"):
        prefix = f"{path_id}_{obj_id}"
    else:  # test records: the task id is the only key the leaderboard knows
        prefix = reader.identifier("id") if reader.has("id") else path_id
    instructions = reader.strings("instructions")
    encodings: list[list[int] | None] = [None] * len(instructions)
    if reader.has("instr_encodings"):
        encodings = list(reader.encodings("instr_encodings", len(instructions)))
    goals = _goals(reader, scan, obj_id, bboxes)
    return [Episode(instr_id=f"{prefix}_{j}", scan=scan, path=list(path), heading=heading, instruction=text,
                    instr_encoding=instruction_encoding(text, encodings[j], max_instr_len, tokenize),
                    path_id=path_id, distance=distance, obj_id=obj_id, goal_viewpoints=list(goals))
            for j, text in enumerate(instructions)]


def _line_record(reader: RecordReader, bboxes: ObjectIndex | None, max_instr_len: int) -> Episode:
    instr_id = reader.identifier("instr_id")
    scan = reader.string("scan")
    obj_id = reader.identifier("objId") if reader.has("objId") else None
    if obj_id is None and reader.has("obj_id"):
        obj_id = reader.identifier("obj_id")
    path_id = reader.identifier("path_id") if reader.has("path_id") else instr_id.split("_", 1)[0]
    text = reader.record.get("instruction", "")
    if not isinstance(text, str):
        raise reader.error(f"expected a string, got {type(text).__name__}", "instruction")
    encoding = reader.encoding(reader.get("instr_encoding"), "instr_encoding")
    return Episode(instr_id=instr_id, scan=scan, path=reader.viewpoints("path"), heading=reader.number("heading"),
                   instruction=text, instr_encoding=truncate_encoding(encoding, max_instr_len), path_id=path_id,
                   distance=reader.optional_number("distance", minimum=0.0), obj_id=obj_id,
                   goal_viewpoints=_goals(reader, scan, obj_id, bboxes))


def load_reverie(path: str | Path, bboxes: ObjectIndex | str | Path | None = None, max_instr_len: int = 200,
                 tokenize: bool = True) -> list[Episode]:
    """Read a REVERIE annotation file into one Episode per instruction.

    `bboxes` (an ObjectIndex, or a path to `BBoxes.json` / a `BBox/` folder) fills goal_viewpoints.
    `tokenize=False` skips the tokenizer when the file carries no encodings (instr_encoding = []).
    """
    if max_instr_len < 2:
        raise ValueError(f"max_instr_len must be >= 2, got {max_instr_len}")
    index = bboxes if isinstance(bboxes, ObjectIndex) or bboxes is None else ObjectIndex.load(bboxes)
    indexed: list[tuple[int, Episode]] = []
    for i, record in enumerate(read_records(path)):
        reader = RecordReader(path, i, record)
        if "instructions" in reader.record:
            indexed.extend((i, ep) for ep in _full_record(reader, index, max_instr_len, tokenize))
        elif "instr_encoding" in reader.record or "instr_id" in reader.record:
            indexed.append((i, _line_record(reader, index, max_instr_len)))
        else:
            raise reader.error("missing field (expected 'instructions', or 'instr_id' + 'instr_encoding' "
                               "for pretrain JSONL)", "instructions")
    check_unique(indexed, path)
    return [ep for _, ep in indexed]


def is_reverie_file(path: str | Path) -> bool:
    """True if any record of an annotation file names a target object (`objId`)."""
    return any(isinstance(record, dict) and "objId" in record for record in read_records(path))
