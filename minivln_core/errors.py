"""Errors raised at the project's boundaries (files, records, messages)."""

from __future__ import annotations

from typing import Any


class DataError(ValueError):
    """Malformed input data; the message names the file, the record and the field."""

    def __init__(self, path: Any, problem: str, record: Any = None, field: str | None = None):
        self.path = str(path)
        self.record = record
        self.field = field
        self.problem = problem
        where = self.path
        if record is not None:
            where += f", record {record}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {problem}")


class ConfigError(ValueError):
    """Bad configuration: unknown key, wrong type or out-of-range value (the key is named)."""
