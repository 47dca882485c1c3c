"""Place the ROS package's data files (setup.py's data_files) into a prefix as per-file symlinks.

`pip install -e .` (setuptools' editable wheels) installs no data_files, so without this an
editable install has no share/minivln_ros (launch, config, msg, checkpoints), no
lib/minivln_ros/<executable> and no ament index entry, and `ros2 launch minivln_ros ...` says
"Package 'minivln_ros' not found". Every file is linked on its own, never a folder: `ros2 launch`
does not follow a linked launch/ folder, and per-file links keep development edits live without a
reinstall. The list of files is setup.py's own (setup() is called with a recording stand-in), so
there is one place that says what the package installs.

    python scripts/link_prefix.py [PREFIX]      # default: sys.prefix (the venv running it)

Idempotent: links are replaced, links into this checkout that setup.py no longer lists are
removed, and a regular file left by an earlier `pip install .` is replaced by a link.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

import setuptools

REPO = Path(__file__).resolve().parents[1]


def data_files(repo: Path = REPO) -> list[tuple[str, list[str]]]:
    """setup.py's data_files: (destination folder relative to the prefix, [files relative to repo])."""
    captured: dict = {}
    real_setup, cwd = setuptools.setup, os.getcwd()
    setuptools.setup = lambda **kwargs: captured.update(kwargs)  # setup.py calls setuptools.setup(...)
    try:
        os.chdir(repo)  # its globs are relative to the checkout
        runpy.run_path(str(repo / "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = real_setup
        os.chdir(cwd)
    if "data_files" not in captured:
        raise SystemExit(f"{repo / 'setup.py'}: setup() was not called with data_files")
    return captured["data_files"]


def link(prefix: Path, repo: Path = REPO) -> tuple[int, int]:
    """Link every data file into `prefix`; returns (links made, stale links removed)."""
    wanted: dict[Path, Path] = {}
    listed = data_files(repo)  # runs setup.py once
    for folder, files in listed:
        for name in files:
            source = (repo / name).resolve()
            if not source.is_file():
                raise SystemExit(f"{repo / 'setup.py'}: data file {name} does not exist")
            wanted[prefix / folder / source.name] = source
    made = 0
    for dest, source in wanted.items():
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink() and dest.resolve() == source:
            continue
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        dest.symlink_to(source)
        made += 1
    removed = 0
    for root in {prefix / folder for folder, _ in listed}:
        for path in root.iterdir() if root.is_dir() else ():
            if path.is_symlink() and path not in wanted and Path(os.readlink(path)).is_relative_to(repo):
                path.unlink()  # a file this checkout no longer installs
                removed += 1
    return made, removed


if __name__ == "__main__":
    prefix = Path(sys.argv[1] if len(sys.argv) > 1 else sys.prefix).resolve()
    made, removed = link(prefix)
    print(f"[link_prefix] {prefix}: share/ and lib/ of minivln_ros linked to {REPO} "
          f"({made} new link(s), {removed} stale removed)")
