"""Start the MiniVLN navigator (and optionally the simulated robot) on a ROS 2 machine.

    ros2 launch minivln_ros navigate.launch.py use_sim:=true        # embedded-student on the embedded world
    ros2 launch minivln_ros navigate.launch.py checkpoint:=/path/to/ckpt
    ros2 launch minivln_ros navigate.launch.py checkpoint:=CKPT use_sim:=true world:=WORLD namespace:=robot1

`checkpoint` is a folder or a shipped checkpoint's name (`minivln checkpoints`); the default,
embedded-student, is trained on the embedded world. With use_sim and no `world`, sim_robot plays
the embedded world, built on first use into ~/.cache/minivln/world (`world_cache` in
config/sim_robot.yaml; about a minute on 2 cores). A checkpoint without extractor.json (e.g. from
`minivln pipeline`) needs `features_file` (the world's features/views_vit.h5).

Then: ros2 topic pub --once instruction std_msgs/msg/String "{data: 'walk past the sofa and stop at the bathroom door'}"
(inside the namespace if one is given). Without launch_ros, start the executables directly with
`--ros-args --params-file config/navigator.yaml`, or run `minivln ros-demo` (see README).
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    """Arguments (all documented), the navigator node, and sim_robot when use_sim is true."""
    config = Path(get_package_share_directory("minivln_ros")) / "config"
    args = [
        DeclareLaunchArgument("params_file", default_value=str(config / "navigator.yaml"),
                              description="navigator parameters (YAML, node name 'navigator')"),
        DeclareLaunchArgument("sim_params_file", default_value=str(config / "sim_robot.yaml"),
                              description="sim_robot parameters (YAML, node name 'sim_robot')"),
        DeclareLaunchArgument("checkpoint", default_value="embedded-student",
                              description="checkpoint directory or shipped checkpoint name of the policy "
                                          "(overrides the params file)"),
        DeclareLaunchArgument("features_file", default_value="",
                              description="views_vit.h5 giving the extractor settings when the checkpoint "
                                          "has no extractor.json"),
        DeclareLaunchArgument("use_sim", default_value="false", description="also start sim_robot on `world`"),
        DeclareLaunchArgument("world", default_value="",
                              description="world folder for sim_robot (use_sim); empty = the embedded world, "
                                          "built on first use into the cache (sim_robot's world_cache)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of both nodes and topics"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error or fatal"),
    ]
    log_args = ["--ros-args", "--log-level", LaunchConfiguration("log_level")]
    navigator = Node(package="minivln_ros", executable="navigator", name="navigator",
                     namespace=LaunchConfiguration("namespace"), output="screen", arguments=log_args,
                     parameters=[LaunchConfiguration("params_file"),
                                 {"checkpoint": LaunchConfiguration("checkpoint"),
                                  "features_file": LaunchConfiguration("features_file")}])
    sim_robot = Node(package="minivln_ros", executable="sim_robot", name="sim_robot",
                     namespace=LaunchConfiguration("namespace"), output="screen", arguments=log_args,
                     parameters=[LaunchConfiguration("sim_params_file"), {"world": LaunchConfiguration("world")}],
                     condition=IfCondition(LaunchConfiguration("use_sim")))
    return LaunchDescription(args + [navigator, sim_robot])
