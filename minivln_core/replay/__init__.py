"""Replay recorded rosbag2 bags through the navigator's agent, without ROS (docs/replay.md).

bag.py (read/write bags with rosbags, clear errors; messages.py: type store) -> the navigator's
input checks (minivln_core.ros_inputs) -> openloop.py (recorded run vs. the agent's decisions) /
survey.py + closedloop.py (a surveyed building answers the agent's goals) -> outputs.py
(results, metrics, pictures.py). over_ros.py runs the closed loop through the real nodes as
subprocesses.
"""
