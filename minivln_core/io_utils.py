"""Atomic file writes: a crash never leaves a half-written file under the final name.

A file is written as `.<name>.<pid>.<8 random characters>.tmp` beside its target, then renamed
over it. A process killed mid-write leaves that temporary behind; the next write of the same
target removes it (`remove_stale_temporaries`): only files of that exact name pattern for that
target, and only when the process that wrote them has ended (its pid no longer runs on this
machine), so concurrent writers are never disturbed. Temporaries of the earlier naming, without a
pid (`.<name>.<8 random characters>.tmp`), are removed once older than LEGACY_STALE_SECONDS.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from minivln_core.errors import DataError

LEGACY_STALE_SECONDS = 3600.0  # a write that has not finished in an hour has been killed
_RANDOM = "[a-z0-9_]{8}"       # tempfile's random part


def _running(pid: int) -> bool:
    """True if process `pid` exists on this machine (or cannot be asked about)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: it runs, under another user
        return True
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the temporaries of `path` left by killed writes (see the module docstring); the paths deleted."""
    path = Path(path)
    name = re.escape(path.name)
    with_pid = re.compile(rf"\.{name}\.([0-9]+)\.{_RANDOM}\.tmp")
    legacy = re.compile(rf"\.{name}\.{_RANDOM}\.tmp")
    removed = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(f".{path.name}."):
            continue
        match = with_pid.fullmatch(entry.name)
        try:
            if match:
                pid = int(match.group(1))
                stale = pid != os.getpid() and not _running(pid)
            else:
                stale = bool(legacy.fullmatch(entry.name)) and \
                    time.time() - entry.stat().st_mtime > LEGACY_STALE_SECONDS
            if stale and entry.is_file() and not entry.is_symlink():
                entry.unlink()
                removed.append(entry)
        except OSError:  # gone already, or not ours to delete
            continue
    return removed


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


# Modes open() and mkdir() would give: mkstemp's and mkdtemp's private 0o600 / 0o700 would make
# every atomically written file and folder unreadable to others (shipped checkpoints included).
def _file_mode() -> int:
    return 0o666 & ~_umask()


def _dir_mode() -> int:
    return 0o777 & ~_umask()


def default_mode(path: str | Path) -> None:
    """Give a file written by a library through a private temporary (safetensors does) the mode
    open() would have given it."""
    os.chmod(path, _file_mode())


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)` for a temporary file beside `path`, fsync it, then rename over `path`.

    Temporaries of `path` left by killed writes are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, _file_mode())
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    atomic_write(path, write)


def atomic_write_json(path: str | Path, data: Any, indent: int = 2) -> None:
    """Write JSON atomically (NaN/inf are refused so files stay standard JSON)."""
    atomic_write_text(path, json.dumps(data, indent=indent, allow_nan=False) + "\n")


def atomic_save_figure(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG atomically (the caller closes it)."""

    def write(tmp: str) -> None:
        fig.savefig(tmp, format="png", dpi=dpi)

    atomic_write(path, write)
    return Path(path)


def finish_figure(fig: Any, path: str | Path, title: str) -> Path:
    """Title, tight layout, atomic PNG save and close: how every report picture is finished."""
    import matplotlib.pyplot as plt

    fig.suptitle(title)
    fig.tight_layout()
    atomic_save_figure(fig, path)
    plt.close(fig)
    return Path(path)


def decode_json(path: str | Path, text: str, what: str = "") -> Any:
    """json.loads(text), or a DataError naming `path` (`what` says which part, e.g. "line 3 is ")."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"{what or 'file is '}not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except (RecursionError, ValueError) as exc:  # nesting too deep, an integer too long to convert
        raise DataError(path, f"{what or 'file is '}not usable JSON ({type(exc).__name__}: {exc})") from None


def read_text(path: str | Path, missing: str = "file does not exist") -> str:
    """A UTF-8 text file; DataError naming it if it is missing, unreadable or not UTF-8."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, missing) from None
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:  # a directory, no permission, an I/O error
        raise DataError(path, f"cannot be read ({exc.strerror or exc})") from None


def read_json(path: str | Path, missing: str = "file does not exist") -> Any:
    """The decoded JSON of a UTF-8 file; every problem is a DataError naming the file."""
    return decode_json(path, read_text(path, missing))


def read_json_or_none(path: str | Path) -> Any:
    """The decoded JSON of a file, or None when it is missing or damaged (a cache or stamp to redo)."""
    try:
        return read_json(path)
    except DataError:
        return None


# -- directories: written whole or not at all ------------------------------------------------------
# Replacing a directory takes two renames (old -> `.<name>.old`, new -> `<name>`). A process killed
# between them leaves no `<name>`; the next read or write of that directory renames the previous,
# complete one back (`restore_interrupted`), so a resumed run continues from it instead of starting
# over. Temporary directories of writes that were killed are removed by the next write.
def _old_name(directory: Path) -> Path:
    return directory.with_name(f".{directory.name}.old")


def restore_interrupted(directory: str | Path) -> bool:
    """Rename `.<name>.old` back to `<name>` if a swap was killed between its two renames."""
    directory = Path(directory)
    old = _old_name(directory)
    if directory.exists() or not old.is_dir():
        return False
    os.replace(old, directory)
    return True


def _remove_stale_temporaries(directory: Path) -> None:
    """Delete `.<name>.XXXXXXXX` directories left by writes that were killed (one writer per checkpoint)."""
    pattern = re.compile(rf"\.{re.escape(directory.name)}\.[A-Za-z0-9_]{{8}}")
    for path in directory.parent.iterdir():
        if pattern.fullmatch(path.name) and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


@contextmanager
def atomic_directory(directory: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside `directory`; on success fsync its files and swap it in.

    On an exception (or a kill) the temporary directory is never renamed, so `directory` keeps
    its previous complete contents.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    restore_interrupted(directory)
    _remove_stale_temporaries(directory)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    os.chmod(tmp, _dir_mode())
    try:
        yield tmp
        for path in tmp.iterdir():
            if path.is_file():
                with open(path, "rb") as fh:
                    os.fsync(fh.fileno())
        fsync_dir(tmp)
        old = _old_name(directory)
        shutil.rmtree(old, ignore_errors=True)
        if directory.exists():
            os.replace(directory, old)
        os.replace(tmp, directory)
        fsync_dir(directory.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
