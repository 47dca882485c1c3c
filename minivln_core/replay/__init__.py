"""Replay recorded rosbag2 bags through the navigator's agent, without ROS (docs/replay.md).

`run.run_replay` (what `minivln replay` calls): the bag is read with `minivln_core.robot.bag`
(rosbags, clear errors) and its messages pass the navigator's own input checks
(`minivln_core.robot.inputs`) -> openloop.py (recorded run vs. the agent's decisions) /
survey.py + closedloop.py (a surveyed building, `minivln_core.sim.survey_robot`, answers the
agent's goals) -> outputs.py (results, metrics, pictures.py). over_ros.py runs the closed loop
through the real nodes as subprocesses.
"""
