"""Depth image -> organised 3-D points in the camera's optical frame (REP-103: x right, y down, z forward)."""

from __future__ import annotations

import numpy as np

from depth_ros.camera import CameraModel
from depth_ros.preprocess import resize


def depth_to_points(depth: np.ndarray, camera: CameraModel, stride: int = 1) -> np.ndarray:
    """(h, w) metres along Z -> (ceil(h/stride), ceil(w/stride), 3) float32 x, y, z.

    Rays come from the camera model (undistorted when the image is raw), computed once per
    CameraInfo; NaN depth gives a NaN point, as depth_image_proc does.
    """
    if depth.shape != (camera.height, camera.width):
        raise ValueError(
            f"depth is {depth.shape[1]}x{depth.shape[0]} but the camera model is {camera.width}x{camera.height}"
        )
    rays_x, rays_y = camera.pixel_rays(stride)
    z = depth[::stride, ::stride]
    points = np.empty((*z.shape, 3), dtype=np.float32)
    np.multiply(rays_x, z, out=points[:, :, 0])
    np.multiply(rays_y, z, out=points[:, :, 1])
    points[:, :, 2] = z
    return points


def cloud_colours(rgb: np.ndarray, depth_shape: tuple[int, int], stride: int = 1) -> np.ndarray:
    """The RGB colour of each cloud point: the image at the depth image's resolution, strided."""
    height, width = depth_shape
    return resize(rgb, width, height)[::stride, ::stride]
