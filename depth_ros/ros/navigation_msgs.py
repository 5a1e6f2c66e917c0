"""The navigation outputs as ROS messages: `scan` (sensor_msgs/LaserScan) and `points_filtered`
(unorganised sensor_msgs/PointCloud2), built from a metric depth image with depth_ros.core.navigation.

Kept apart from the node so that the node only wires (and `depth-ros` tools can reuse it).
"""

from __future__ import annotations

import array
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from sensor_msgs.msg import LaserScan, PointCloud2, PointField

from depth_ros.core.camera import CameraModel
from depth_ros.core.navigation import Mounting, band_rows, depth_to_scan, filtered_cloud
from depth_ros.ros import codecs

SCAN, POINTS_FILTERED = "scan", "points_filtered"  # relative topic names
MAX_SCAN_PERIOD_NS = 10 * 10**9  # a longer gap between frames is a pause, not the scan period


def scan_frame_id(image_frame: str, configured: str) -> tuple[str, str | None]:
    """The scan's frame_id and, when it had to be guessed badly, a warning.

    A LaserScan lies in its frame's x-y plane (x forward, y left), so it cannot be published in the
    camera's optical frame (z forward). `configured` wins when set; otherwise the optical frame's
    name without `_optical` (REP-103 naming, as camera drivers publish both:
    camera_color_optical_frame -> camera_color_frame).
    """
    if configured.strip():
        return configured.strip(), None
    for suffix, replacement in (("_optical_frame", "_frame"), ("_optical", "")):
        if image_frame.endswith(suffix) and len(image_frame) > len(suffix):
            return image_frame[: -len(suffix)] + replacement, None
    return image_frame, (
        f"the image's frame_id '{image_frame}' has no '_optical' suffix, so the frame with x forward, y left "
        "at the same origin cannot be derived; the scan is published in it as is. Set the parameter "
        "'scan_frame' to a frame with x along the optical axis and y to the left (e.g. camera_link)"
    )


def mounting(values: Mapping[str, Any]) -> Mounting | None:
    """The camera's mounting from the parameters; None (no height filter) while camera_height is 0."""
    if values["camera_height"] <= 0.0:
        return None
    return Mounting(height=float(values["camera_height"]), pitch=float(values["camera_pitch"]),
                    min_height=float(values["min_obstacle_height"]), max_height=float(values["max_obstacle_height"]))


def _stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 10**9 + int(header.stamp.nanosec)


def create_publishers(create_publisher: Callable[..., Any], qos: Any, **kwargs: Any) -> dict[str, Any]:
    """The node's `scan` and `points_filtered` publishers (relative names: namespaces and remaps work).

    ``create_publisher``: the node's factory (a lifecycle node passes create_lifecycle_publisher), called as
    ``create_publisher(type, topic, qos, **kwargs)``."""
    return {SCAN: create_publisher(LaserScan, SCAN, qos, **kwargs),
            POINTS_FILTERED: create_publisher(PointCloud2, POINTS_FILTERED, qos, **kwargs)}


class NavigationOutputs:
    """Builds the two messages for one camera stream; remembers the previous stamp for scan_time.

    Called after each frame's depth (`FrameProcessor.extra_outputs`), it builds and emits only the
    outputs somebody subscribes to (all of them when built without publishers, e.g. for a bag).
    """

    def __init__(self, publishers: Mapping[str, Any] | None = None, warn: Callable[[str], None] | None = None) -> None:
        self._publishers = dict(publishers or {})
        self._warn = warn
        self._warned: set[str] = set()
        self._last_scan_ns: int | None = None

    def _subscribed(self, kind: str) -> bool:
        publisher = self._publishers.get(kind)
        return publisher is None or publisher.get_subscription_count() > 0

    def wanted(self) -> bool:
        return self._subscribed(SCAN) or self._subscribed(POINTS_FILTERED)

    def __call__(self, frame: Any, header: Any, values: Mapping[str, Any],
                 emit: Callable[[str, Any], None]) -> dict[str, float]:
        """Emit the wanted outputs of one DepthFrame; returns {'navigation': seconds}."""
        t0 = time.perf_counter()
        if self._subscribed(SCAN):
            emit(SCAN, self.scan(frame.depth, frame.camera, header, values))
        if self._subscribed(POINTS_FILTERED):
            emit(POINTS_FILTERED, self.points(frame.depth, frame.camera, header, values))
        return {"navigation": time.perf_counter() - t0}

    def scan(self, depth: np.ndarray, camera: CameraModel, header: Any, values: Mapping[str, Any]) -> LaserScan:
        rows = band_rows(camera.height, values["scan_height"], values["scan_row"], camera.cy)
        scan = depth_to_scan(depth, camera, rows, values["range_min"], values["range_max"])
        msg = LaserScan()
        msg.header.stamp = header.stamp
        frame, warning = scan_frame_id(header.frame_id, values["scan_frame"])
        if warning is not None and header.frame_id not in self._warned and self._warn is not None:
            self._warned.add(header.frame_id)
            self._warn(warning)
        msg.header.frame_id = frame
        msg.angle_min = scan.angle_min
        msg.angle_max = scan.angle_max
        msg.angle_increment = scan.angle_increment
        msg.time_increment = 0.0  # every column of a frame is exposed at once (global or rolling: unknown)
        stamp = _stamp_ns(header)
        previous, self._last_scan_ns = self._last_scan_ns, stamp
        period = stamp - previous if previous is not None else 0
        msg.scan_time = period / 1e9 if 0 < period <= MAX_SCAN_PERIOD_NS else 0.0
        msg.range_min = float(values["range_min"])
        msg.range_max = float(values["range_max"])
        msg.ranges = array.array("f", scan.ranges.tobytes())
        return msg

    def points(self, depth: np.ndarray, camera: CameraModel, header: Any,
               values: Mapping[str, Any]) -> PointCloud2:
        xyz = filtered_cloud(depth, camera, values["cloud_stride"], values["filter_max_range"], values["voxel_size"],
                             mounting(values))
        msg = _new_cloud()
        msg.header = header
        codecs.fill_cloud_msg(msg, xyz.reshape(1, -1, 3), point_field_cls=PointField)
        msg.is_dense = True  # unorganised: only valid points
        return msg


def _new_cloud() -> PointCloud2:
    """A PointCloud2 that keeps the assigned data buffer (see frame_processor._new_message)."""
    try:
        return PointCloud2(check_fields=True)
    except TypeError:  # Humble's messages do not know the argument
        return PointCloud2()
