"""minivln_ros: the thin rclpy layer over minivln_core (nodes, parameters, message conversion)."""
