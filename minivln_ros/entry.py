"""The executables' shared start-up and shutdown: bad input exits 2 with one line, a bug 1 with its traceback."""

from __future__ import annotations

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
    traceback and gives status 1. Ctrl-C and an external shutdown end quietly with 0.
    """
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
        rclpy.logging.get_logger(name).fatal(f"unexpected {type(err).__name__}: {err}\n{traceback.format_exc()}")
        return 1
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
