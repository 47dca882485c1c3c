"""The navigation agent: the one decision procedure used offline, in training and on the robot."""
