"""Depth image -> organised 3-D points in the camera's optical frame (REP-103: x right, y down, z forward)."""

from __future__ import annotations

import cv2
import numpy as np

from depth_ros.core.camera import CameraModel
from depth_ros.core.preprocess import resize


def depth_to_point_planes(
    depth: np.ndarray, camera: CameraModel, stride: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(h, w) metres along Z -> x, y, z planes of shape (ceil(h/stride), ceil(w/stride)), float32.

    Rays come from the camera model (undistorted when the image is raw), computed once per
    CameraInfo; NaN depth gives a NaN point, as depth_image_proc does. Planes rather than
    (h, w, 3) points: contiguous products are cheap, and the cloud packer interleaves them in
    one pass (codecs.fill_cloud_msg) without an intermediate points array.
    """
    if depth.shape != (camera.height, camera.width):
        raise ValueError(
            f"depth is {depth.shape[1]}x{depth.shape[0]} but the camera model is {camera.width}x{camera.height}"
        )
    rays_x, rays_y = camera.pixel_rays(stride)
    z = np.ascontiguousarray(depth[::stride, ::stride], dtype=np.float32)
    return rays_x * z, rays_y * z, z


def depth_to_points(depth: np.ndarray, camera: CameraModel, stride: int = 1) -> np.ndarray:
    """(h, w) metres along Z -> (ceil(h/stride), ceil(w/stride), 3) float32 x, y, z."""
    x, y, z = depth_to_point_planes(depth, camera, stride)
    points = cv2.merge([x, y, z])
    return points.reshape(*z.shape, 3)  # OpenCV drops unit dimensions of single-row images


def cloud_colours(rgb: np.ndarray, depth_shape: tuple[int, int], stride: int = 1) -> np.ndarray:
    """The RGB colour of each cloud point: the image at the depth image's resolution, strided."""
    height, width = depth_shape
    return resize(rgb, width, height)[::stride, ::stride]
