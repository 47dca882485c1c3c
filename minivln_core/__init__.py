"""MiniVLN core: DUET teacher / MiniVLN student, graph map, environment, data and metrics.

Pure PyTorch; this package never imports rclpy.
"""

__version__ = "0.1.0"
