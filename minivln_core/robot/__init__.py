"""Robot-facing code that needs no rclpy: the navigator's input checks (`inputs`), rosbag2 bags
(`bag`), message and topic names with the bag type store (`messages`), and starting the nodes as
processes (`launch`). The ROS layer (`minivln_ros`) and the replay share it, so a bag is read with
exactly the checks the node applies."""
