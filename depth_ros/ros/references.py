"""Reference messages for online scale recovery: sensor_msgs Image / PointCloud2 -> the core's references."""

from __future__ import annotations

from typing import Any

import numpy as np

from depth_ros.core.scale_recovery import (
    MAX_REFERENCE_POINTS,
    DepthReference,
    PointsReference,
    ReferenceInputError,
    depth_reference,
    reference_depth_metres,
    spread,
)
from depth_ros.ros.codecs import ImageDecodeError, cloud_msg_to_arrays, image_msg_to_array


def reference_from_image_msg(msg: Any, stamp_s: float) -> DepthReference:
    """sensor_msgs/Image (32FC1 m or 16UC1 mm) -> DepthReference; raises ReferenceInputError."""
    encoding = str(msg.encoding).strip()
    if encoding not in ("32FC1", "16UC1", "mono16"):
        reference_depth_metres(np.zeros((1, 1)), encoding)  # raises with the reason
    try:
        array = image_msg_to_array(msg)
    except (ImageDecodeError, ValueError) as exc:
        raise ReferenceInputError(f"reference depth image: {exc}") from exc
    return depth_reference(reference_depth_metres(array, encoding), stamp_s)


def reference_from_cloud_msg(msg: Any, stamp_s: float) -> PointsReference:
    """sensor_msgs/PointCloud2 (x, y, z in the camera's optical frame) -> PointsReference."""
    try:
        xyz, _ = cloud_msg_to_arrays(msg)
    except (ValueError, KeyError) as exc:
        raise ReferenceInputError(f"reference cloud: {exc}") from exc
    xyz = xyz.reshape(-1, 3)
    keep = np.flatnonzero(np.isfinite(xyz).all(axis=1) & (xyz[:, 2] > 0))
    # Keep more than the fit needs: several points may fall outside the image or onto one pixel.
    keep = spread(keep, 4 * MAX_REFERENCE_POINTS)
    return PointsReference(stamp_s, np.ascontiguousarray(xyz[keep]), str(msg.header.frame_id))
