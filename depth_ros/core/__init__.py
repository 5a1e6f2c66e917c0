"""The pure array core: one frame's steps as functions on numpy arrays (and their torch twin).

Camera model, model contract, preprocessing, metric conversion, point clouds, navigation arrays, scale
recovery, colour maps and evaluation metrics. No ROS, no file formats, no runtimes: it imports only numpy,
OpenCV and (``torch_ops`` alone) torch, and nothing above it in depth_ros.
"""
