"""depth_ros: metric monocular depth and point clouds for ROS 2.

The pipeline core (codecs, camera model, preprocessing, metric conversion, point clouds) is
plain functions on numpy arrays, usable without ROS; `depth_ros.ros.node` wires it into rclpy.
"""

__version__ = "0.1.0"
