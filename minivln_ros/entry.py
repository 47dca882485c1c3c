"""The executables' shared start-up and shutdown: bad parameters or data exit 2 with one line."""

from __future__ import annotations

from typing import Callable

import rclpy
import rclpy.executors
import rclpy.logging
from rclpy.node import Node

from minivln_ros.params import ParamError


def run_node(name: str, make_node: Callable[[], Node], spin: Callable[[Node], None],
             args: list[str] | None = None) -> int:
    """rclpy.init, build the node, spin it until done; returns the process exit status.

    A ParamError or a start-up data error (DataError, ConfigError, ...) is logged as one fatal
    line and gives status 2; Ctrl-C and an external shutdown end quietly with 0.
    """
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        spin(node)
    except ParamError as err:
        rclpy.logging.get_logger(name).fatal(str(err))
        return 2
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    except Exception as err:  # start-up data errors: one clear line instead of a traceback
        rclpy.logging.get_logger(name).fatal(f"{type(err).__name__}: {err}")
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
