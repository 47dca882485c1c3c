"""The ROS nodes as subprocesses: commands, their environment, and one run of navigator + sim_robot.

For machines without `ros2 launch` (launch_ros has no PyPI wheel): `minivln ros-demo` and the
replay over ROS (`replay.over_ros`) start `python -m minivln_ros.<node>` with the package's params
files (config/*.yaml) on localhost DDS. The core never imports rclpy: it only starts processes
and reads the JSON line sim_robot prints for each finished episode.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Mapping

from minivln_core.paths import share_file


def ros_environment(log_dir: Path) -> dict[str, str]:
    """Environment of the ROS processes: DDS on loopback only, the loopback Fast DDS profile, logs in log_dir.

    The caller's ROS_DOMAIN_ID (if any) is kept, so the processes talk only to its domain.
    """
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOG_DIR=str(log_dir),
               PYTHONUNBUFFERED="1")
    try:
        env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(share_file("config", "fastdds_loopback.xml")))
    except FileNotFoundError:
        pass  # DDS still stays on loopback through ROS_AUTOMATIC_DISCOVERY_RANGE
    return env


def node_command(node: str, params: Mapping[str, Any] | None = None, namespace: str = "") -> list[str]:
    """`python -m minivln_ros.<node>_node` with config/<node>.yaml, `-p name:=value` overrides and a namespace."""
    cmd = [sys.executable, "-m", f"minivln_ros.{node}_node", "--ros-args",
           "--params-file", str(share_file("config", f"{node}.yaml"))]
    if namespace:
        cmd += ["-r", f"__ns:={namespace}"]
    for name, value in (params or {}).items():
        cmd += ["-p", f"{name}:={str(value).lower() if isinstance(value, bool) else value}"]
    return cmd


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    """Send `sig` to a running process, kill it if it has not exited after `timeout` s; its exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass
class NodesRun:
    """How a navigator + sim_robot run ended."""

    records: list[dict[str, Any]] = field(default_factory=list)  # sim_robot's JSON line per finished episode
    sim_code: int | None = None        # sim_robot's exit status (None: still running when given up)
    navigator_code: int | None = None  # the navigator's (it is stopped at the end: -15 is normal)
    timed_out: bool = False            # sim_robot was killed after `timeout` seconds


def run_navigator_and_sim(nav_cmd: list[str], sim_cmd: list[str], env: Mapping[str, str], timeout: float,
                          on_record: Callable[[dict[str, Any]], None] | None = None, echo: bool = False,
                          sim_stderr: IO[str] | None = None) -> NodesRun:
    """Run both nodes until sim_robot exits (or the navigator dies, or `timeout` s pass); then stop both.

    sim_robot prints one JSON line per finished episode: each is collected and passed to
    `on_record`; `echo` prints every line sim_robot prints. Its stderr goes to `sim_stderr`
    (default: ours).
    """
    run = NodesRun()
    navigator = subprocess.Popen(nav_cmd, env=dict(env))
    try:
        sim = subprocess.Popen(sim_cmd, env=dict(env), stdout=subprocess.PIPE, stderr=sim_stderr, text=True)
    except BaseException:
        stop_process(navigator)
        raise

    def give_up() -> None:  # a silent, stuck sim_robot must not block the caller
        run.timed_out = True
        sim.kill()

    watchdog = threading.Timer(timeout, give_up)
    watchdog.start()
    try:
        for line in sim.stdout:
            if echo:
                print(line, end="", flush=True)
            if line.startswith("{"):
                run.records.append(json.loads(line))
                if on_record is not None:
                    on_record(run.records[-1])
            if navigator.poll() is not None:
                break
        # sim_robot exits after its last episode; it would wait for a dead navigator forever
        run.sim_code = sim.wait(timeout=30) if navigator.poll() is None else sim.poll()
    except subprocess.TimeoutExpired:
        run.sim_code = None
    finally:
        watchdog.cancel()
        stop_process(sim)
        run.navigator_code = stop_process(navigator)
    return run
