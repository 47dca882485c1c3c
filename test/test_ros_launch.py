"""The ROS user's path with the real launch stack: `ros2 launch minivln_ros navigate.launch.py`,
`ros2 run`, `ros2 param`, `ros2 topic`, `ros2 interface`, as real processes (DDS on loopback, the
session's private domain).

The launch stack has no PyPI wheels: scripts/setup.sh installs it from ../shared/wheels/ros2-launch
(requirements-ros-launch.txt). Where it is absent these tests skip and say so. Every `ros2` call
uses --no-daemon where it has the option, so no ros2 daemon outlives a test.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil", reason="psutil comes with the ROS 2 launch stack (requirements-ros-launch.txt)")
pytest.importorskip("launch_ros", reason="the ROS 2 launch stack is not installed (no ../shared/wheels/ros2-launch "
                                         "when scripts/setup.sh ran; a ROS 2 installation brings its own)")

from minivln_core.robot.launch import ros_environment  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ROS2 = Path(sys.executable).parent / "ros2"
PREFIX = Path(sys.prefix)
INSTRUCTION = "walk out of the kitchen and stop in the living room"

if not ROS2.is_file():
    pytest.skip(f"no {ROS2}: the ros2 command is not installed", allow_module_level=True)


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """The ROS environment with this venv as the ament prefix and a PATH without it (the executables
    must find the venv's Python themselves)."""
    environ = ros_environment(tmp_path / "roslog")
    environ["AMENT_PREFIX_PATH"] = str(PREFIX)
    environ["PATH"] = "/usr/bin:/bin"
    environ.pop("VIRTUAL_ENV", None)
    environ["OMP_NUM_THREADS"] = "1"
    return environ


def ros2(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROS2), *args], env=env, capture_output=True, text=True, timeout=timeout)


class Launch:
    """`ros2 launch minivln_ros navigate.launch.py ARGS` as a subprocess, its output in a file."""

    def __init__(self, env: dict[str, str], log: Path, *args: str):
        self.log = log
        # SIGINT as a terminal delivers it: a child of a non-interactive shell may inherit it ignored
        self.proc = subprocess.Popen([str(ROS2), "launch", "minivln_ros", "navigate.launch.py", *args], env=env,
                                     stdout=log.open("w"), stderr=subprocess.STDOUT,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert self.proc.poll() is None, f"launch ended (status {self.proc.returncode}):\n{self.output()[-3000:]}"
            assert time.monotonic() < deadline, f"no {text!r} within {timeout} s:\n{self.output()[-3000:]}"
            time.sleep(0.2)

    def nodes(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def interrupt(self, sig: int = signal.SIGINT) -> tuple[int, list[int]]:
        """Ctrl-C (or `sig`): the launch's exit status and the PIDs of its processes still alive afterwards."""
        children = self.nodes()
        self.proc.send_signal(sig)
        status = self.proc.wait(timeout=30)
        gone, alive = psutil.wait_procs(children, timeout=10)
        return status, [p.pid for p in alive]

    def kill(self) -> None:
        if self.proc.poll() is None:
            for child in self.nodes():
                child.kill()
            self.proc.kill()
            self.proc.wait()


def test_the_package_is_installed_in_the_venv_prefix(env) -> None:
    """`ros2 pkg prefix` finds it; share/ and lib/ hold per-file links into the checkout (live edits)."""
    assert ros2(env, "pkg", "prefix", "minivln_ros").stdout.strip() == str(PREFIX)
    launch_file = PREFIX / "share" / "minivln_ros" / "launch" / "navigate.launch.py"
    assert launch_file.is_symlink() and not launch_file.parent.is_symlink()
    assert launch_file.resolve().read_bytes() == (REPO / "launch" / "navigate.launch.py").read_bytes()
    executables = ros2(env, "pkg", "executables", "minivln_ros").stdout.split()
    assert executables == ["minivln_ros", "navigator", "minivln_ros", "sim_robot"]


def test_link_prefix_links_every_data_file_and_removes_stale_links(tmp_path) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import link_prefix
    finally:
        sys.path.remove(str(REPO / "scripts"))
    prefix = tmp_path / "prefix"
    (prefix / "share" / "minivln_ros" / "config").mkdir(parents=True)
    stale = prefix / "share" / "minivln_ros" / "config" / "gone.yaml"
    stale.symlink_to(REPO / "config" / "gone.yaml")      # a file the checkout no longer has
    foreign = prefix / "share" / "minivln_ros" / "config" / "mine.yaml"
    foreign.write_text("a user's own file\n")             # not ours: kept
    made, removed = link_prefix.link(prefix)
    assert removed == 1 and not stale.is_symlink() and foreign.read_text() == "a user's own file\n"
    expected = {prefix / folder / Path(f).name for folder, files in link_prefix.data_files() for f in files}
    assert made == len(expected) and all(p.is_symlink() and p.exists() for p in expected)
    assert (prefix / "lib" / "minivln_ros" / "navigator").resolve() == REPO / "scripts" / "ros" / "navigator"
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "minivln_ros").is_symlink()
    assert link_prefix.link(prefix) == (0, 0)              # idempotent


def test_ros2_run_uses_the_venv_python_and_a_bad_parameter_exits_2(env) -> None:
    """Outside an activated venv (PATH without it): the executable still runs the node."""
    proc = ros2(env, "run", "minivln_ros", "navigator", "--ros-args", "-p", "checkpoint:=no-such-checkpoint")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "parameter 'checkpoint': no-such-checkpoint" in proc.stderr and "Traceback" not in proc.stderr


def test_a_bad_launch_argument_fails_at_once_with_one_clear_line(env, tmp_path) -> None:
    proc = ros2(env, "launch", "minivln_ros", "navigate.launch.py", "checkpoint:=no-such-checkpoint")
    assert proc.returncode == 1
    output = proc.stdout + proc.stderr
    assert "navigate.launch.py: parameter 'checkpoint': no-such-checkpoint: no such checkpoint" in output
    assert "Traceback" not in output and "process started" not in output  # no node was started
    proc = ros2(env, "launch", "minivln_ros", "navigate.launch.py", "use_sim:=true", f"world:={tmp_path}")
    assert proc.returncode == 1 and "is not a generated world (no world.json)" in proc.stdout + proc.stderr


def test_interface_show(env) -> None:
    proc = ros2(env, "interface", "show", "minivln_interfaces/msg/NavigatorStatus")
    assert proc.returncode == 0, proc.stderr
    assert "uint8 STATE_NAVIGATING" in proc.stdout and "float32 stop_probability" in proc.stdout


def test_launch_sim_waits_for_a_published_instruction_then_ctrl_c_stops_everything(online, env, tmp_path) -> None:
    """The README's flow: launch with use_sim, publish an instruction, get goals and a result."""
    launch = Launch(env, tmp_path / "launch.log", "use_sim:=true", f"world:={online['world']}",
                    f"checkpoint:={online['checkpoint']}")
    try:
        launch.wait_for("[navigator]: ready", timeout=90)
        launch.wait_for("[sim_robot]: episode", timeout=30)
        nodes = ros2(env, "node", "list", "--no-daemon", "--spin-time", "2")
        assert {"/navigator", "/sim_robot"} <= set(nodes.stdout.split()), nodes.stdout + nodes.stderr
        assert ros2(env, "param", "get", "--no-daemon", "/navigator", "max_steps").stdout.strip() == \
            "Integer value is: 15"
        assert ros2(env, "param", "get", "--no-daemon", "/sim_robot", "publish_instruction").stdout.strip() == \
            "Boolean value is: False"
        time.sleep(2)
        assert "navigator]: episode 1" not in launch.output()  # it waits for a person's instruction
        echo = [subprocess.Popen([str(ROS2), "topic", "echo", "--once", "--no-daemon", topic, message_type],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for topic, message_type in (("/goal_pose", "geometry_msgs/msg/PoseStamped"),
                                            ("/episode_result", "minivln_interfaces/msg/EpisodeResult"))]
        time.sleep(3)  # the echoes' subscriptions are discovered
        pub = ros2(env, "topic", "pub", "--once", "-w", "1", "/instruction", "std_msgs/msg/String",
                   f"{{data: '{INSTRUCTION}'}}")
        assert pub.returncode == 0, pub.stdout + pub.stderr
        goal, result = (p.communicate(timeout=60)[0] for p in echo)
        assert "frame_id: map" in goal and "position:" in goal, goal
        assert "navigator_episode_id: 1" in result and "final_state:" in result, result
        assert f"episode 1: '{INSTRUCTION}'" in launch.output()
        status, alive = launch.interrupt()
        assert status == 0 and alive == [], launch.output()[-3000:]
        assert "process has finished cleanly" in launch.output()
        assert "Traceback" not in launch.output() and "Failed to publish" not in launch.output()
    finally:
        launch.kill()


def test_launch_in_a_namespace_keeps_the_parameter_files(online, env, tmp_path) -> None:
    """namespace:=robot1 with copies of config/navigator.yaml and config/sim_robot.yaml (their /**/ keys)
    setting max_steps 7 and first_episode 1: both are in force inside the namespace."""
    files = {}
    for name, old, new in (("navigator", "    max_steps: 15 ", "    max_steps: 7 "),
                           ("sim_robot", "    first_episode: 0 ", "    first_episode: 1 ")):
        text = (REPO / "config" / f"{name}.yaml").read_text()
        assert text.count(old) == 1, old
        files[name] = tmp_path / f"{name}.yaml"
        files[name].write_text(text.replace(old, new))
    launch = Launch(env, tmp_path / "launch.log", "use_sim:=true", "namespace:=robot1",
                    f"params_file:={files['navigator']}", f"sim_params_file:={files['sim_robot']}",
                    f"world:={online['world']}", f"checkpoint:={online['checkpoint']}")
    try:
        launch.wait_for("[robot1.navigator]: ready", timeout=90)
        get = ros2(env, "param", "get", "--no-daemon", "/robot1/navigator", "max_steps")
        assert get.stdout.strip() == "Integer value is: 7", get.stdout + get.stderr
        launch.wait_for("[robot1.sim_robot]: episode", timeout=30)
        assert "(#1) at" in launch.output()          # first_episode 1 from the sim_robot file
        pub = ros2(env, "topic", "pub", "--once", "-w", "1", "/robot1/instruction", "std_msgs/msg/String",
                   f"{{data: '{INSTRUCTION}'}}")
        assert pub.returncode == 0, pub.stdout + pub.stderr
        launch.wait_for('{"instr_id"', timeout=60)    # the episode's result inside the namespace
        status, alive = launch.interrupt()
        assert status == 0 and alive == []
    finally:
        launch.kill()


def test_launch_plays_episodes_itself_and_ends_when_done(online, env, tmp_path) -> None:
    """publish_instruction / episodes / exit_when_done: sim_robot plays 2 episodes, then the launch ends."""
    launch = Launch(env, tmp_path / "launch.log", "use_sim:=true", f"world:={online['world']}",
                    f"checkpoint:={online['checkpoint']}", "publish_instruction:=true", "episodes:=2",
                    "exit_when_done:=true")
    try:
        assert launch.proc.wait(timeout=150) == 0, launch.output()[-3000:]
        assert launch.output().count('{"instr_id"') == 2
        assert "sim_robot ended" in launch.output() or "shutting down" in launch.output()
    finally:
        launch.kill()


def test_sigterm_to_the_launcher_leaves_no_node_behind(online, env, tmp_path) -> None:
    """Upstream launch exits on SIGTERM without stopping its processes; the nodes end with their parent."""
    launch = Launch(env, tmp_path / "launch.log", "use_sim:=true", f"world:={online['world']}",
                    f"checkpoint:={online['checkpoint']}")
    try:
        launch.wait_for("[navigator]: ready", timeout=90)
        status, alive = launch.interrupt(signal.SIGTERM)
        assert status != 0 and alive == [], launch.output()[-3000:]
    finally:
        launch.kill()


@pytest.mark.skipif(shutil.which("colcon", path=str(Path(sys.executable).parent)) is None,
                    reason="colcon is not installed (pip install colcon-common-extensions)")
def test_colcon_build_installs_the_package(tmp_path, env) -> None:
    """The colcon route: `colcon build` of this checkout gives an install space ros2 finds."""
    env = dict(env, PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin")
    proc = subprocess.run([str(Path(sys.executable).parent / "colcon"), "build", "--base-paths", str(REPO),
                           "--packages-select", "minivln_ros", "--build-base", str(tmp_path / "build"),
                           "--install-base", str(tmp_path / "install")], env=env, capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    prefix = tmp_path / "install" / "minivln_ros"
    assert (prefix / "share" / "minivln_ros" / "launch" / "navigate.launch.py").is_file()
    assert os.access(prefix / "lib" / "minivln_ros" / "navigator", os.X_OK)
    env["AMENT_PREFIX_PATH"] = f"{prefix}:{PREFIX}"  # the install space first, as its setup.bash would put it
    assert ros2(env, "pkg", "prefix", "minivln_ros").stdout.strip() == str(prefix)
    proc = ros2(env, "run", "minivln_ros", "navigator", "--ros-args", "-p", "checkpoint:=no-such-checkpoint")
    assert proc.returncode == 2 and "parameter 'checkpoint': no-such-checkpoint" in proc.stderr, proc.stderr
