"""Start the MiniVLN navigator (and optionally the simulated robot) on a ROS 2 machine.

    ros2 launch minivln_ros navigate.launch.py use_sim:=true        # embedded-student on the embedded world
    ros2 topic pub --once -w 1 /instruction std_msgs/msg/String "{data: 'walk past the sofa and stop at the bathroom door'}"

    ros2 launch minivln_ros navigate.launch.py checkpoint:=/path/to/ckpt       # a real robot's driver publishes the inputs
    ros2 launch minivln_ros navigate.launch.py use_sim:=true publish_instruction:=true episodes:=5 exit_when_done:=true
    ros2 launch minivln_ros navigate.launch.py use_sim:=true world:=WORLD namespace:=robot1   # topics under /robot1

`checkpoint` is a folder or a shipped checkpoint's name (`minivln checkpoints`); the default,
embedded-student, is trained on the embedded world. With use_sim and no `world`, sim_robot plays
the embedded world, built on first use into ~/.cache/minivln/world (`world_cache` in
config/sim_robot.yaml; about a minute on 2 cores). With the defaults sim_robot places the robot at
the start of its first episode and waits: the instruction a person publishes drives it, and each
episode's result is published on `episode_result`. A checkpoint without extractor.json (e.g. from
`minivln pipeline`) needs `features_file` (the world's features/views_vit.h5).

The parameter files' top keys are `/**/navigator` and `/**/sim_robot`, so they hold in any
namespace. An argument that would stop a node at start-up (a checkpoint that does not resolve, a
missing world or features file) ends the launch at once with one error line and exit status 1;
either node ending ends the launch (a node's own error is its last log line). Ctrl-C stops both.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def _check_arguments(context) -> list:
    """The start-up checks of the nodes themselves (minivln_ros.params), on the launch arguments."""
    from minivln_ros.params import (NavigatorParams, ParamError, SimRobotParams, validate_navigator,
                                    validate_sim_robot)

    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    try:
        validate_navigator(NavigatorParams(checkpoint=value("checkpoint"), features_file=value("features_file")))
        if value("use_sim").lower() in ("true", "1"):
            validate_sim_robot(SimRobotParams(world=value("world")))
    except ParamError as exc:  # launch logs it as one line and exits 1 (the traceback only at debug level)
        raise RuntimeError(f"navigate.launch.py: {exc}") from None
    return []


def _on_exit(event, context) -> list:
    """A node ended: stop the launch; a node that failed makes `ros2 launch` exit non-zero."""
    name = event.action.node_name.lstrip("/")
    if event.returncode is not None and event.returncode > 0:
        raise RuntimeError(f"{name} exited with status {event.returncode} (its error is logged above)")
    return [Shutdown(reason=f"{name} ended")]


def _string(name: str) -> ParameterValue:
    """A launch argument passed as a string parameter ('' and 'true' stay strings)."""
    return ParameterValue(LaunchConfiguration(name), value_type=str)


def generate_launch_description() -> LaunchDescription:
    """Arguments (all documented), the argument check, the navigator node, and sim_robot when use_sim is true."""
    config = Path(get_package_share_directory("minivln_ros")) / "config"
    args = [
        DeclareLaunchArgument("params_file", default_value=str(config / "navigator.yaml"),
                              description="navigator parameters (YAML, top key '/**/navigator')"),
        DeclareLaunchArgument("sim_params_file", default_value=str(config / "sim_robot.yaml"),
                              description="sim_robot parameters (YAML, top key '/**/sim_robot')"),
        DeclareLaunchArgument("checkpoint", default_value="embedded-student",
                              description="checkpoint directory or shipped checkpoint name of the policy "
                                          "(overrides the params file)"),
        DeclareLaunchArgument("features_file", default_value="",
                              description="views_vit.h5 giving the extractor settings when the checkpoint "
                                          "has no extractor.json"),
        DeclareLaunchArgument("use_sim", default_value="false", choices=["true", "false"],
                              description="also start sim_robot on `world`"),
        DeclareLaunchArgument("world", default_value="",
                              description="world folder for sim_robot (use_sim); empty = the embedded world, "
                                          "built on first use into the cache (sim_robot's world_cache)"),
        DeclareLaunchArgument("publish_instruction", default_value="false", choices=["true", "false"],
                              description="sim_robot publishes each episode's own instruction; false = it "
                                          "waits at the episode's start for the instruction a person publishes"),
        DeclareLaunchArgument("episodes", default_value="1",
                              description="episodes sim_robot plays in order from its first_episode (0 = all)"),
        DeclareLaunchArgument("exit_when_done", default_value="false", choices=["true", "false"],
                              description="sim_robot (and with it the launch) ends after the last episode"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of both nodes and topics"),
        DeclareLaunchArgument("log_level", default_value="info", choices=["debug", "info", "warn", "error", "fatal"],
                              description="the nodes' log level"),
    ]
    log_args = ["--ros-args", "--log-level", LaunchConfiguration("log_level")]
    navigator = Node(package="minivln_ros", executable="navigator", name="navigator",
                     namespace=LaunchConfiguration("namespace"), output="screen", arguments=log_args,
                     parameters=[LaunchConfiguration("params_file"),
                                 {"checkpoint": _string("checkpoint"), "features_file": _string("features_file")}],
                     on_exit=_on_exit)
    sim_robot = Node(package="minivln_ros", executable="sim_robot", name="sim_robot",
                     namespace=LaunchConfiguration("namespace"), output="screen", arguments=log_args,
                     parameters=[LaunchConfiguration("sim_params_file"),
                                 {"world": _string("world"),
                                  "publish_instruction": ParameterValue(LaunchConfiguration("publish_instruction"),
                                                                        value_type=bool),
                                  "num_episodes": ParameterValue(LaunchConfiguration("episodes"), value_type=int),
                                  "exit_when_done": ParameterValue(LaunchConfiguration("exit_when_done"),
                                                                   value_type=bool)}],
                     condition=IfCondition(LaunchConfiguration("use_sim")), on_exit=_on_exit)
    return LaunchDescription(args + [OpaqueFunction(function=_check_arguments), navigator, sim_robot])
