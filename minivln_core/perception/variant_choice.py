"""Which extractor variant a checkpoint runs by default: the fastest one measured to keep its decisions.

`minivln bench --place` measures, for one policy checkpoint on one CPU, each extractor variant's
new place -> goal latency and its decision agreement with the features the policy was trained
on. Such a measurement is only valid for that policy and that kind of CPU (bf16 is fast only with
avx512_bf16 / AMX, int8 only pays with VNNI), so each record names both:

    {"checkpoint_digest": "...", "cpu": {"model": ..., "flags": {...}}, "threads": 2, "measured": "...",
     "fastest_meeting_bar": "onnx-int8", "variants": {"onnx-int8": {"median_ms": ..., "agreement": ...}}}

Records live in two places: the user cache (`<MINIVLN_CACHE>/place_variants/<digest>.json`, written
by every place bench) and `place_variants.json` inside a checkpoint folder (shipped with it). The
navigator's `extractor_variant: auto` asks `choose_variant`: the newest record for this checkpoint
on the same CPU model, else on a CPU with the same low-precision flags, gives the variant; with no
such record the extractor runs as recorded with the checkpoint (fp32 torch, the reference).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minivln_core.errors import DataError
from minivln_core.io_utils import atomic_write_json
from minivln_core.models.shipped import resolve_checkpoint
from minivln_core.paths import default_cache_dir
from minivln_core.perception.config import EXTRACTOR_FILE, ExtractorConfig, parse_variant, with_variant
from minivln_core.provenance import CPU_FLAGS, cpu_info

RECORD_FILE = "place_variants.json"     # inside a checkpoint folder: the records shipped with it
AUTO = "auto"
AGREEMENT_BAR = 0.99                    # issue 21's bar: >= 99% argmax agreement with the trained features


@dataclass(frozen=True)
class Choice:
    """The variant to run ("" = as recorded with the checkpoint) and why, for the log."""

    spec: str
    reason: str


def checkpoint_digest(checkpoint: str | Path) -> str:
    """Identity of a policy and its extractor settings: sha256 of model.safetensors + extractor.json (16 hex)."""
    folder = resolve_checkpoint(checkpoint)
    h = hashlib.sha256()
    for name in ("model.safetensors", EXTRACTOR_FILE):
        path = folder / name
        if path.is_file():
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        h.update(b"\0")
    return h.hexdigest()[:16]


def cache_file(digest: str, cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / "place_variants" / f"{digest}.json"


def latency_and_agreement(bench_rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A place bench's variant rows -> spec -> {"median_ms", "agreement" (None if not scored)}."""
    return {spec: {"median_ms": row["place"]["median_ms"],
                   "agreement": row["agreement"]["agreement"] if "agreement" in row else None}
            for spec, row in bench_rows.items()}


def make_record(checkpoint: str | Path, report: dict[str, Any]) -> dict[str, Any]:
    """The part of a place-bench report that decides a default (latency + agreement per variant)."""
    variants = latency_and_agreement(report["variants"])
    return {"checkpoint_digest": checkpoint_digest(checkpoint), "cpu": report["cpu"], "threads": report["threads"],
            "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "fastest_meeting_bar": report["fastest_meeting_bar"],
            "variants": variants}


def _read_records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    try:
        records = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(path, f"unreadable place-variant records: {exc}") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) and "cpu" in r and "variants" in r
                                                for r in records):
        raise DataError(path, "place-variant records must be a list of objects with 'cpu' and 'variants'")
    return records


def append_record(path: Path, record: dict[str, Any], keep: int = 20) -> Path:
    """Add `record` to the list in `path` (atomically; the newest `keep` are kept)."""
    records = [*_read_records(path), record][-keep:]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, records)
    return path


def remember(checkpoint: str | Path, report: dict[str, Any], cache_dir: Path | None = None,
             in_checkpoint: bool = False) -> list[Path]:
    """Store a place-bench report's record in the user cache (and in the checkpoint folder if asked)."""
    record = make_record(checkpoint, report)
    written = [append_record(cache_file(record["checkpoint_digest"], cache_dir), record)]
    if in_checkpoint:
        written.append(append_record(resolve_checkpoint(checkpoint) / RECORD_FILE, record))
    return written


def _flag_class(cpu: dict[str, Any]) -> tuple[bool, ...]:
    flags = cpu.get("flags", {})
    return tuple(bool(flags.get(f)) for f in CPU_FLAGS)


def _usable(spec: str) -> bool:
    _, _, folder = parse_variant(spec)
    return folder is None or Path(folder).is_dir()


def fastest_meeting(rows: dict[str, dict[str, Any]], bar: float = AGREEMENT_BAR, here_only: bool = False) -> str | None:
    """The fastest variant of `rows` (spec -> {"median_ms", "agreement"}) with agreement >= bar; with
    `here_only`, only variants whose distilled folder (if any) exists on this machine. None if there is none."""
    ok = [(row["median_ms"], spec) for spec, row in rows.items()
          if row.get("agreement") is not None and row["agreement"] >= bar and (not here_only or _usable(spec))]
    return min(ok)[1] if ok else None


def choose_variant(checkpoint: str | Path, cpu: dict[str, Any] | None = None, cache_dir: Path | None = None,
                   bar: float = AGREEMENT_BAR) -> Choice:
    """The variant `extractor_variant: auto` runs for this checkpoint on this CPU (see the module doc)."""
    cpu = cpu or cpu_info()
    digest = checkpoint_digest(checkpoint)
    records = [r for r in _read_records(resolve_checkpoint(checkpoint) / RECORD_FILE) + _read_records(cache_file(digest, cache_dir))
               if r.get("checkpoint_digest") == digest]
    same_model = [r for r in records if r["cpu"].get("model") == cpu["model"]]
    same_flags = [r for r in records if _flag_class(r["cpu"]) == _flag_class(cpu)]
    for kind, group in (("this CPU model", same_model), ("a CPU with the same bf16/int8 flags", same_flags)):
        for record in sorted(group, key=lambda r: r.get("measured", ""), reverse=True):
            spec = fastest_meeting(record["variants"], bar, here_only=True)
            if spec:
                row = record["variants"][spec]
                return Choice(spec, f"{spec}: the fastest variant with >= {100 * bar:.0f}% decision agreement "
                                    f"measured on {kind} ({record['cpu'].get('model')}, {record.get('measured')}: "
                                    f"{row['median_ms']:.0f} ms per new place, agreement {row['agreement']:.3f})")
    return Choice("", "as recorded with the checkpoint: no place measurement of this checkpoint on a CPU like "
                      f"this one ({cpu['model']}); `minivln bench --place --set checkpoint=...` makes one")


def apply_variant(checkpoint: str | Path, extractor: ExtractorConfig, spec: str) -> tuple[ExtractorConfig, str]:
    """The extractor the navigator (and a replay of its bags) runs for the `extractor_variant` setting `spec`:
    "auto" (`choose_variant`), "" (as recorded) or a variant; returns it and a sentence saying which."""
    if spec == AUTO:
        choice = choose_variant(checkpoint)
        spec, reason = choice.spec, choice.reason
    else:
        reason = spec or "as recorded with the checkpoint (extractor_variant is empty)"
    return (with_variant(extractor, spec) if spec else extractor), reason
