"""Atomic writes: a writer killed mid-write leaves a temporary that the next write of the same target removes,
and nothing else is touched (other targets, other names, temporaries of writers still running)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minivln_core.io_utils import LEGACY_STALE_SECONDS, atomic_write, atomic_write_json, atomic_write_text

REPO = Path(__file__).resolve().parents[1]
KILLED_WRITER = """
import sys, time
from minivln_core.io_utils import atomic_write

def write(tmp):
    with open(tmp, "w") as fh:
        fh.write("half of the")
    print(tmp, flush=True)
    time.sleep(600)  # killed here, mid-write

atomic_write(sys.argv[1], write)
"""


def ended_pid() -> int:
    """The pid of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path) -> None:
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"run": 1})
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True,
                              cwd=REPO)
    try:
        tmp = Path(writer.stdout.readline().strip())
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert tmp.parent == tmp_path and tmp.name.startswith(f".metrics.json.{writer.pid}.") and tmp.is_file()
    assert target.read_text() == '{\n  "run": 1\n}\n'  # the killed write changed nothing
    atomic_write_json(target, {"run": 2})
    assert not tmp.exists() and target.read_text() == '{\n  "run": 2\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_only_stale_temporaries_of_the_same_target_are_removed(tmp_path) -> None:
    dead = ended_pid()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        stale = [f".a.json.{dead}.x1y2z3_4.tmp", ".a.json.oldwrite.tmp"]  # a killed writer; the earlier naming
        kept = [f".a.json.{sleeper.pid}.abcdefgh.tmp",   # a writer still running
                f".a.json.{os.getpid()}.abcdefgh.tmp",   # this process (another thread may be writing)
                ".a.json.freshold.tmp",                   # earlier naming, too recent to be known dead
                f".b.json.{dead}.abcdefgh.tmp",          # another target
                f".a.json.x.{dead}.abcdefgh.tmp",        # the temporary of target "a.json.x"
                f"a.json.{dead}.abcdefgh.tmp",           # not hidden: not ours
                f".a.json.{dead}.abcdefgh.txt",          # another suffix
                f".a.json.{dead}.abcdefghi.tmp"]         # not tempfile's 8 random characters
        for name in stale + kept:
            (tmp_path / name).write_text("partial")
        old = time.time() - LEGACY_STALE_SECONDS - 60
        os.utime(tmp_path / ".a.json.oldwrite.tmp", (old, old))
        atomic_write_text(tmp_path / "a.json", "{}")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept + ["a.json"])
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_failed_write_leaves_nothing(tmp_path) -> None:
    def broken(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(tmp_path / "x.txt", broken)
    assert list(tmp_path.iterdir()) == []
