"""minivln_ros.entry.run_node: bad input is one fatal line and exit status 2, a bug keeps its traceback.

Each case runs `run_node` in a subprocess (it calls rclpy.init and rclpy.shutdown on the default
context, which must not touch this session's) with a `make_node` or `spin` that raises; no ROS
node is created.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("rclpy")

from minivln_core.robot.launch import ros_environment  # noqa: E402

CHILD = """
import sys
from minivln_core.errors import ConfigError, DataError
from minivln_ros.entry import run_node
from minivln_ros.params import ParamError
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

ERRORS = {
    "param": ParamError("parameter 'max_steps': out of range"),
    "data": DataError("world/scans.json", "not valid JSON"),
    "config": ConfigError("unknown key 'foo'"),
    "missing": FileNotFoundError("msg/NavigatorStatus.msg not found"),
    "bug": KeyError("no_such_key"),
    "zero": ZeroDivisionError("division by zero"),
    "rcl": _rclpy.RCLError("failed to initialize wait set: the given context is not valid"),
}
where, kind = sys.argv[1:]


class StubNode:  # stands in for a Node: run_node only destroys it
    def destroy_node(self):
        print("destroyed", flush=True)


def broken_helper():
    raise ERRORS[kind]


def make_node():
    if where == "make_node":
        broken_helper()
    return StubNode()


def spin(node):
    if where == "spin_after_shutdown":  # what Ctrl-C's handler does while the executor builds a wait set
        import rclpy
        rclpy.shutdown()
        broken_helper()
    if where == "spin":
        broken_helper()


sys.exit(run_node("entry_probe", make_node, spin, []))
"""


def run_child(tmp_path, where: str, kind: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD, where, kind], env=ros_environment(tmp_path / "roslog"),
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("kind, message", [
    ("param", "parameter 'max_steps': out of range"),
    ("data", "DataError: world/scans.json: not valid JSON"),
    ("config", "ConfigError: unknown key 'foo'"),
    ("missing", "FileNotFoundError: msg/NavigatorStatus.msg not found"),
])
def test_an_expected_start_up_error_is_one_line_and_status_2(tmp_path, kind, message) -> None:
    proc = run_child(tmp_path, "make_node", kind)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    fatal = [line for line in out.splitlines() if "FATAL" in line]
    assert len(fatal) == 1 and fatal[0].endswith(message), out
    assert "Traceback" not in out and "broken_helper" not in out


@pytest.mark.parametrize("where", ["make_node", "spin"])
@pytest.mark.parametrize("kind, message", [("bug", "KeyError: 'no_such_key'"),
                                           ("zero", "ZeroDivisionError: division by zero")])
def test_an_unexpected_error_keeps_its_traceback_and_exits_non_zero(tmp_path, where, kind, message) -> None:
    proc = run_child(tmp_path, where, kind)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out  # non-zero, and not 2 (what a user can fix)
    assert f"unexpected {message}" in out
    # the whole traceback, down to the line that raised
    assert "Traceback (most recent call last)" in out and f"in {where}" in out and "in broken_helper" in out
    assert ("destroyed" in proc.stdout) == (where == "spin"), "a node that was made is destroyed"


def test_a_shutdown_racing_the_executor_ends_quietly_but_other_errors_do_not(tmp_path) -> None:
    """Ctrl-C shut the context down while the executor built its wait set (seen in a soak test's
    shutdown): rclpy's RCLError then is the asked-for shutdown, status 0; on a live context it is a
    bug, and so is any other error raised after the shutdown."""
    quiet = run_child(tmp_path, "spin_after_shutdown", "rcl")
    out = quiet.stdout + quiet.stderr
    assert quiet.returncode == 0 and "FATAL" not in out and "destroyed" in quiet.stdout, out
    live = run_child(tmp_path, "spin", "rcl")
    assert live.returncode == 1 and "unexpected RCLError" in live.stdout + live.stderr
    other = run_child(tmp_path, "spin_after_shutdown", "bug")
    assert other.returncode == 1 and "unexpected KeyError" in other.stdout + other.stderr
