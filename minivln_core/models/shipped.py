"""Shipped checkpoints: trained policies that come with the package, found by name.

A shipped checkpoint is a folder `checkpoints/<name>/` of the repository, installed as
`share/minivln_ros/checkpoints/<name>/`: an ordinary checkpoint (config.json, model.safetensors in
fp16, extractor.json where the policy expects ViT features) plus its model card (card.json and
card.md, written by `experiments.export_checkpoint`). Wherever a checkpoint is taken, a folder path wins;
a bare name (no path separator) that is not a folder names a shipped checkpoint. Folders listed in
$MINIVLN_CHECKPOINTS (separated like PATH) are searched first: a team's own checkpoint library.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minivln_core.errors import DataError
from minivln_core.io_utils import read_json_or_none
from minivln_core.paths import share_candidates

KIND = "checkpoints"
ENV = "MINIVLN_CHECKPOINTS"
CARD_JSON = "card.json"
CARD_MD = "card.md"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")  # lower-case, usable as a folder and a ROS parameter value


@dataclass(frozen=True)
class Shipped:
    """One shipped checkpoint: its name, folder and model card (None if the card is unreadable)."""

    name: str
    path: Path
    card: dict[str, Any] | None


def shipped_roots() -> list[Path]:
    """The checkpoint folders that exist, in lookup order: $MINIVLN_CHECKPOINTS, the source
    checkout's checkpoints/, then the installed share/minivln_ros/checkpoints/."""
    extra = [Path(p).expanduser() for p in os.environ.get(ENV, "").split(os.pathsep) if p]
    return [p for p in dict.fromkeys([*extra, *share_candidates(KIND, "")]) if p.is_dir()]


def list_shipped() -> list[Shipped]:
    """Every shipped checkpoint, by name (the first root holding a name wins)."""
    found: dict[str, Shipped] = {}
    for root in shipped_roots():
        for folder in sorted(root.iterdir()):
            if folder.is_dir() and folder.name not in found and (folder / "config.json").is_file():
                card = read_json_or_none(folder / CARD_JSON)
                found[folder.name] = Shipped(folder.name, folder, card if isinstance(card, dict) else None)
    return list(found.values())


def is_name(ref: str | Path) -> bool:
    """True for a bare checkpoint name (no path separator, no leading dot)."""
    text = os.fspath(ref)
    return bool(NAME_RE.match(text)) and os.sep not in text and "/" not in text


def resolve_checkpoint(ref: str | Path) -> Path:
    """The checkpoint folder `ref` means: an existing folder, else a shipped checkpoint's name.

    DataError names the reference and lists the shipped names when it is neither.
    """
    path = Path(ref).expanduser()
    if path.is_dir() or not is_name(ref):
        return path                     # a path: the loaders report what is wrong with it
    for root in shipped_roots():        # the first root holding the name, as list_shipped (no cards read)
        if (root / os.fspath(ref) / "config.json").is_file():
            return root / os.fspath(ref)
    names = ", ".join(s.name for s in list_shipped()) or "none installed"
    raise DataError(path, f"no such checkpoint folder, and no shipped checkpoint of that name (shipped: {names})")
