"""Room-to-Room (R2R) annotation files -> one `Episode` per instruction.

Accepted inputs (the form is chosen per record):

* `R2R_<split>.json` (original) and DUET's `R2R_<split>_enc.json`: a JSON array of
  `{distance, scan, path_id, path, heading, instructions: [str, ...], instr_encodings?}`.
  `distance` is optional (absent in some test files). When `instr_encodings` is present it must
  hold one id list per instruction and is used as-is (truncated); otherwise the text is tokenised.
  instr_id = "<path_id>_<j>" for the j-th instruction.
* DUET's pretraining JSONL (`*.jsonl`, one instruction per line):
  `{instr_id, scan, path, heading, instr_encoding, instruction?}`; path_id = instr_id without its
  last "_<j>" part.

Every problem raises `DataError(file, problem, record=<0-based record index>, field=<name>)`.
The record-level helpers here (`read_records`, `RecordReader`) are shared with the REVERIE reader.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from minivln_core.data.episodes import Episode
from minivln_core.data.tokenizer import VOCAB_SIZE, encode_instruction, truncate_encoding
from minivln_core.errors import DataError
from minivln_core.io_utils import decode_json, read_text

if TYPE_CHECKING:  # typing only; readers do not need scipy
    from minivln_core.data.connectivity import ScanGraph


def read_records(path: str | Path) -> list[Any]:
    """Decoded records of a JSON array file or a JSON-lines file (`.jsonl`, blank lines skipped)."""
    path = Path(path)
    text = read_text(path, "annotation file does not exist")
    if path.suffix == ".jsonl":
        records = []
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(decode_json(path, line, f"line {line_no} is "))
            except DataError as exc:
                raise DataError(path, exc.problem, record=len(records)) from None
        return records
    data = decode_json(path, text)
    if not isinstance(data, list):
        raise DataError(path, f"expected a JSON array of records, got {type(data).__name__}")
    return data


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class RecordReader:
    """Typed, validated access to the fields of one decoded record; errors name file, record and field."""

    def __init__(self, path: str | Path, index: int, record: Any):
        self.path = Path(path)
        self.index = index
        if not isinstance(record, dict):
            raise DataError(self.path, f"record is not a JSON object ({type(record).__name__})", record=index)
        self.record: dict[str, Any] = record

    def error(self, problem: str, field: str | None = None) -> DataError:
        """A DataError for this record."""
        return DataError(self.path, problem, record=self.index, field=field)

    def has(self, name: str) -> bool:
        """True if the field is present and not null."""
        return self.record.get(name) is not None

    def get(self, name: str) -> Any:
        """Raw value of a required field."""
        if name not in self.record:
            raise self.error("missing field", name)
        return self.record[name]

    def string(self, name: str) -> str:
        """A non-empty string field."""
        value = self.get(name)
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"expected a non-empty string, got {value!r}", name)
        return value

    def identifier(self, name: str) -> str:
        """An id given as an integer or a non-empty string, returned as a string."""
        value = self.get(name)
        blank = isinstance(value, str) and not value.strip()
        if isinstance(value, bool) or not isinstance(value, (int, str)) or blank:
            raise self.error(f"expected an integer or non-empty string id, got {value!r}", name)
        return str(value)

    def number(self, name: str, minimum: float | None = None) -> float:
        """A finite number (bools refused), optionally >= minimum."""
        value = self.get(name)
        if not _is_number(value) or not math.isfinite(value):
            raise self.error(f"expected a finite number, got {value!r}", name)
        if minimum is not None and value < minimum:
            raise self.error(f"expected a number >= {minimum}, got {value!r}", name)
        return float(value)

    def optional_number(self, name: str, minimum: float | None = None) -> float | None:
        """Like `number`, but None when the field is absent or null."""
        return self.number(name, minimum) if self.has(name) else None

    def viewpoints(self, name: str = "path") -> list[str]:
        """A non-empty list of non-empty viewpoint id strings."""
        value = self.get(name)
        if not isinstance(value, list) or not value:
            raise self.error(f"expected a non-empty list of viewpoint ids, got {_short(value)}", name)
        for k, vp in enumerate(value):
            if not isinstance(vp, str) or not vp:
                raise self.error(f"item {k} is not a non-empty viewpoint id string: {vp!r}", name)
        return list(value)

    def strings(self, name: str) -> list[str]:
        """A non-empty list of non-blank strings (e.g. instructions)."""
        value = self.get(name)
        if not isinstance(value, list) or not value:
            raise self.error(f"expected a non-empty list of strings, got {_short(value)}", name)
        for k, text in enumerate(value):
            if not isinstance(text, str) or not text.strip():
                raise self.error(f"item {k} is not a non-empty string: {_short(text)}", name)
        return list(value)

    def encoding(self, value: Any, name: str, label: str = "") -> list[int]:
        """Validate one token-id list (ints in [0, VOCAB_SIZE)), non-empty."""
        if not isinstance(value, list) or not value:
            raise self.error(f"{label}expected a non-empty list of token ids, got {_short(value)}", name)
        for k, tok in enumerate(value):
            if isinstance(tok, bool) or not isinstance(tok, int) or not 0 <= tok < VOCAB_SIZE:
                raise self.error(f"{label}token {k} is not an id in [0, {VOCAB_SIZE}): {tok!r}", name)
        return list(value)

    def encodings(self, name: str, count: int) -> list[list[int]]:
        """`count` token-id lists (one per instruction)."""
        value = self.get(name)
        if not isinstance(value, list) or len(value) != count:
            got = len(value) if isinstance(value, list) else type(value).__name__
            raise self.error(f"expected {count} token-id lists (one per instruction), got {got}", name)
        return [self.encoding(enc, name, f"list {j}: ") for j, enc in enumerate(value)]


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def instruction_encoding(text: str, encoding: list[int] | None, max_instr_len: int, tokenize: bool) -> list[int]:
    """The stored encoding (truncated) if given, else the tokenised text, else [] when tokenize=False."""
    if encoding is not None:
        return truncate_encoding(encoding, max_instr_len)
    if not tokenize:
        return []
    return encode_instruction(text, max_instr_len)


def _full_record(reader: RecordReader, max_instr_len: int, tokenize: bool) -> list[Episode]:
    scan = reader.string("scan")
    path_id = reader.identifier("path_id")
    path = reader.viewpoints("path")
    heading = reader.number("heading")
    distance = reader.optional_number("distance", minimum=0.0)
    instructions = reader.strings("instructions")
    encodings: list[list[int] | None] = [None] * len(instructions)
    if reader.has("instr_encodings"):
        encodings = list(reader.encodings("instr_encodings", len(instructions)))
    return [Episode(instr_id=f"{path_id}_{j}", scan=scan, path=list(path), heading=heading, instruction=text,
                    instr_encoding=instruction_encoding(text, encodings[j], max_instr_len, tokenize),
                    path_id=path_id, distance=distance)
            for j, text in enumerate(instructions)]


def _line_record(reader: RecordReader, max_instr_len: int) -> Episode:
    instr_id = reader.identifier("instr_id")
    path_id = reader.identifier("path_id") if reader.has("path_id") else instr_id.rsplit("_", 1)[0]
    text = reader.record.get("instruction", "")
    if not isinstance(text, str):
        raise reader.error(f"expected a string, got {_short(text)}", "instruction")
    encoding = reader.encoding(reader.get("instr_encoding"), "instr_encoding")
    return Episode(instr_id=instr_id, scan=reader.string("scan"), path=reader.viewpoints("path"),
                   heading=reader.number("heading"), instruction=text,
                   instr_encoding=truncate_encoding(encoding, max_instr_len), path_id=path_id,
                   distance=reader.optional_number("distance", minimum=0.0))


def check_unique(episodes: Iterable[tuple[int, Episode]], path: str | Path) -> None:
    """Refuse two episodes with the same instr_id (results could not be matched to them)."""
    seen: dict[str, int] = {}
    for index, ep in episodes:
        if ep.instr_id in seen:
            raise DataError(path, f"instr_id '{ep.instr_id}' is produced again (first by record {seen[ep.instr_id]})",
                            record=index, field="instr_id")
        seen[ep.instr_id] = index


def load_r2r(path: str | Path, max_instr_len: int = 200, tokenize: bool = True) -> list[Episode]:
    """Read an R2R annotation file (JSON array or pretrain JSONL) into one Episode per instruction.

    `tokenize=False` skips the tokenizer (instr_encoding stays [] when the file has no encodings),
    which is all scoring needs.
    """
    if max_instr_len < 2:
        raise ValueError(f"max_instr_len must be >= 2, got {max_instr_len}")
    indexed: list[tuple[int, Episode]] = []
    for index, record in enumerate(read_records(path)):
        reader = RecordReader(path, index, record)
        if "instructions" in reader.record:
            indexed.extend((index, ep) for ep in _full_record(reader, max_instr_len, tokenize))
        elif "instr_encoding" in reader.record or "instr_id" in reader.record:
            indexed.append((index, _line_record(reader, max_instr_len)))
        else:
            raise reader.error("missing field (expected 'instructions', or 'instr_id' + 'instr_encoding' "
                               "for pretrain JSONL)", "instructions")
    check_unique(indexed, path)
    return [ep for _, ep in indexed]


def validate_against(episodes: Iterable[Episode], graphs: Mapping[str, "ScanGraph"],
                     path: str | Path = "<annotations>", require_walk: bool = True) -> None:
    """Check that every episode's scan is loaded and its path is a walk over the scan graph.

    Errors name `path` (the annotation file), the episode's instr_id as the record and the viewpoint.
    """
    for ep in episodes:
        graph = graphs.get(ep.scan)
        if graph is None:
            raise DataError(path, f"scan '{ep.scan}' has no connectivity graph", record=ep.instr_id, field="scan")
        for k, vp in enumerate(ep.path):
            if vp not in graph:
                raise DataError(path, f"viewpoint '{vp}' (path item {k}) is not in scan {ep.scan}",
                                record=ep.instr_id, field="path")
        if require_walk:
            for k, (a, b) in enumerate(zip(ep.path[:-1], ep.path[1:])):
                if a != b and b not in graph.neighbors(a):
                    raise DataError(path, f"step {k} '{a}' -> '{b}' is not an edge of scan {ep.scan}",
                                    record=ep.instr_id, field="path")
        for k, vp in enumerate(ep.goal_viewpoints):
            if vp not in graph:
                raise DataError(path, f"goal viewpoint '{vp}' (item {k}) is not in scan {ep.scan}",
                                record=ep.instr_id, field="goal_viewpoints")
