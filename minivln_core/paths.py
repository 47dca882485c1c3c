"""Where the project's files live: the user cache, and the package's share files (config/, msg/).

A bottom module (standard library only): models, perception, the robot layer and the experiments
all ask here instead of each knowing a path.

Share files are looked up in the source checkout first (so edits take effect without reinstalling),
then in the installed package: `<prefix>/share/minivln_ros/<kind>/<name>` for the Python prefix and
every prefix of AMENT_PREFIX_PATH (colcon's install space, a venv set up by scripts/setup.sh).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "minivln_ros"
# The repository root when running from a source checkout (it holds package.xml), else None.
_CHECKOUT = Path(__file__).resolve().parents[1]
CHECKOUT: Path | None = _CHECKOUT if (_CHECKOUT / "package.xml").is_file() else None


def default_cache_dir() -> Path:
    """$MINIVLN_CACHE, else $XDG_CACHE_HOME/minivln, else ~/.cache/minivln."""
    if os.environ.get("MINIVLN_CACHE"):
        return Path(os.environ["MINIVLN_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "minivln"


def share_candidates(kind: str, name: str) -> list[Path]:
    """Every place `<kind>/<name>` (e.g. config/navigator.yaml) may be, in lookup order."""
    prefixes = [sys.prefix, *filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep))]
    found = [CHECKOUT / kind / name] if CHECKOUT else []
    found += [Path(prefix) / "share" / PACKAGE / kind / name for prefix in prefixes]
    return list(dict.fromkeys(found))


def share_file(kind: str, name: str) -> Path:
    """The first existing `<kind>/<name>` of `share_candidates`; FileNotFoundError listing where it looked."""
    candidates = share_candidates(kind, name)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"{kind}/{name} not found (looked in {', '.join(str(p) for p in candidates)})")
