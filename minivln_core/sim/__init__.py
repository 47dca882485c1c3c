"""Simulated robots on a navigation graph, all `graph_robot.GraphRobot`s (the same episodes, moves
and scores): `world_robot.SimWorld` renders a generated world, `survey_robot.SurveyWorld` plays a
recorded survey bag. The `sim_robot` node and the in-process closed-loop replay drive them."""
