"""Depth discontinuities: the pixels a network puts between a foreground and a background ("flying pixels").

A network predicts at a fraction of the image's resolution and its map is smooth across occlusions; resized
up, every object edge becomes a ramp of depths between the two surfaces, which back-project into a sheet of
points that exists nowhere (phantom obstacles in a costmap). A pixel is on such a ramp when, within a small
window, there is depth more than ``threshold`` (relative) nearer than its own *and* more than ``threshold``
farther: it lies inside a jump, away from both sides. Pixels of the two surfaces themselves, even right at
the edge, have a side they belong to and are kept; so are slanted planes, unless they change by more than
``threshold`` within the window in both directions (only very near a horizon).

The window's radius follows the upsampling: a ramp is as wide as one network pixel is in the depth image,
so ``edge_radius`` = ceil(factor / 2), factor = depth image width / network content width.
Measured (network-like predictions of exact depth, `depth-ros bench --edges`): README "Navigation-grade depth".
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from depth_ros.core.preprocess import InputGeometry


def window_radius(depth_width: int, content_width: int) -> int:
    """Half the width of one network pixel in the depth image, rounded up, at least 1: the window radius
    for a depth image ``depth_width`` wide of a network whose image content is ``content_width`` wide."""
    return max(1, math.ceil(depth_width / max(1, content_width) / 2))


def edge_radius(geometry: InputGeometry, depth_width: int) -> int:
    """``window_radius`` of a network input ``geometry`` for a depth image ``depth_width`` wide."""
    return window_radius(depth_width, geometry.content_width)


def window_extremes(depth: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(farthest depth, largest inverse depth (= 1 / the nearest), depth with invalid as 0) over the valid depths
    within ``radius`` pixels of each pixel (a (2 radius + 1)^2 window; 0 where the window has none), float32.

    Both extremes are window maxima (one morphological pass each, cheap), with invalid pixels as 0, which never
    wins a maximum of positive values. The edge filter and the confidence's local range (core.confidence) use it.
    """
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * radius + 1, 2 * radius + 1))
    depths = np.nan_to_num(depth, nan=0.0)
    with np.errstate(divide="ignore"):
        inverse = np.divide(np.float32(1.0), depths)
    inverse[depths == 0] = 0.0
    farthest = cv2.dilate(depths, kernel, borderType=cv2.BORDER_REPLICATE)
    nearest_inverse = cv2.dilate(inverse, kernel, borderType=cv2.BORDER_REPLICATE)
    return farthest, nearest_inverse, depths


def edge_mask(depth: np.ndarray, threshold: float, radius: int) -> np.ndarray:
    """True where ``depth`` (metres, NaN = invalid) lies more than ``threshold`` from both the nearest and
    the farthest valid depth within ``radius`` pixels (a (2 radius + 1)^2 window; ``window_extremes``). Invalid
    pixels are False. Float32 throughout, so the torch twin (core.torch_ops.edge_mask) gives the same mask.
    """
    farthest, nearest_inverse, depths = window_extremes(depth, radius)
    factor = np.float32(1.0 + threshold)
    depths *= factor
    mask = np.greater(farthest, depths)  # something farther than depth * (1 + t)
    with np.errstate(invalid="ignore"):
        nearest_inverse *= depth
        mask &= nearest_inverse > factor  # something nearer than depth / (1 + t)
    return mask


def filter_edges(depth: np.ndarray, threshold: float, radius: int) -> int:
    """Mark ``edge_mask`` pixels invalid (NaN) in place; returns how many were."""
    mask = edge_mask(depth, threshold, radius)
    depth[mask] = np.nan
    return int(np.count_nonzero(mask))
