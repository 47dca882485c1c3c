"""The executables' shared start-up and shutdown: bad input exits 2 with one line, a bug 1 with its traceback."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import traceback
from typing import Callable

import rclpy
import rclpy.executors
import rclpy.logging
from rclpy.node import Node

from minivln_core.errors import ConfigError, DataError
from minivln_ros.params import ParamError

# What a user can fix (a parameter, a data or config file, a missing share file such as
# msg/NavigatorStatus.msg from `minivln_core.paths.share_file`): the message says what, so one
# line is clearer than a traceback.
EXPECTED_ERRORS = (ParamError, DataError, ConfigError, FileNotFoundError)


def run_node(name: str, make_node: Callable[[], Node], spin: Callable[[Node], None],
             args: list[str] | None = None) -> int:
    """rclpy.init, build the node, spin it until done; returns the process exit status.

    A ParamError or a start-up data error (EXPECTED_ERRORS) is logged as one fatal line and gives
    status 2; any other exception is a bug: it is logged as a fatal line followed by its full
    traceback and gives status 1. Ctrl-C and an external shutdown end quietly with 0 (also when the
    shutdown races the executor, `_shut_down_while_spinning`).
    """
    _end_with_parent()
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        spin(node)
    except ParamError as err:
        rclpy.logging.get_logger(name).fatal(str(err))
        return 2
    except EXPECTED_ERRORS as err:
        rclpy.logging.get_logger(name).fatal(f"{type(err).__name__}: {err}")
        return 2
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    except Exception as err:  # a bug, not bad input: where it happened matters, so keep the traceback
        if _shut_down_while_spinning(err):
            return 0
        rclpy.logging.get_logger(name).fatal(f"unexpected {type(err).__name__}: {err}\n{traceback.format_exc()}")
        return 1
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


def _shut_down_while_spinning(err: Exception) -> bool:
    """Ctrl-C's handler shut the context down while the executor was building its wait set: rclpy
    then raises RCLError ("the given context is not valid") instead of ExternalShutdownException.
    That is the shutdown that was asked for, not a bug; an RCLError on a live context still is."""
    return type(err).__name__ == "RCLError" and not rclpy.ok()


def closing_logger(node: Node):
    """The node's logger while its context is live; once Ctrl-C has shut the context down, a logger
    of another name (`<node>.exit`), so the last lines a node logs while it is destroyed still reach
    the console and the log file without an error from the dead /rosout publisher."""
    return node.get_logger() if node.context.ok() else rclpy.logging.get_logger(f"{node.get_name()}.exit")


def _end_with_parent() -> None:
    """Linux: deliver SIGINT (a clean shutdown) to this process when its parent dies.

    `ros2 launch` stopped by SIGTERM or SIGKILL exits without stopping its nodes (upstream launch
    warns "using SIGTERM can result in orphaned processes"); a robot's process manager sends exactly
    that. The signal follows the thread that started the process: every launcher here (launch,
    `ros2 run`, minivln ros-demo, the tests) starts nodes from its main thread.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    pr_set_pdeathsig = 1  # <linux/prctl.h>
    if ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGINT), 0, 0, 0) != 0:
        return  # not fatal: the node works, only the orphan guard is missing
    if os.getppid() != parent:  # the parent died before the guard was set: nobody to serve
        raise SystemExit(0)
