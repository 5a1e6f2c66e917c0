"""One frame's work, shared by depth_node and `depth-ros bag process` so the two cannot drift.

decode the image -> find its camera (the latest valid CameraInfo of that size) -> estimate metric
depth -> build the depth, depth/camera_info, depth/colored and points messages.

No DDS: outputs are handed to an `emit(kind, message)` callback as soon as each is ready (the node
publishes them, the bag tool writes them), so the depth image never waits for the cloud.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField, RegionOfInterest

from depth_ros import codecs
from depth_ros.camera import CameraInfoError, CameraModel
from depth_ros.colorize import colorize_depth
from depth_ros.parameters import pipeline_settings
from depth_ros.pipeline import DepthEstimator
from depth_ros.pointcloud import cloud_colours, depth_to_point_planes

MAX_CAMERA_SIZES = 4  # CameraInfo kept per image size (a driver switching modes, several streams)

# Output kinds, in the order they are emitted; each is also the node's relative topic name.
DEPTH, CAMERA_INFO, COLORED, POINTS = "depth", "depth/camera_info", "depth/colored", "points"
OUTPUT_KINDS = (DEPTH, CAMERA_INFO, COLORED, POINTS)
OUTPUT_TYPES = {DEPTH: "sensor_msgs/msg/Image", CAMERA_INFO: "sensor_msgs/msg/CameraInfo",
                COLORED: "sensor_msgs/msg/Image", POINTS: "sensor_msgs/msg/PointCloud2"}

Emit = Callable[[str, Any], None]


class FrameSkipped(Exception):
    """A frame that produced no output; `reason` is its diagnostics counter (skipped_<reason>)."""

    def __init__(self, reason: str, message: str, level: str = "error") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.level = level


@dataclass(frozen=True)
class Wanted:
    """Which outputs somebody consumes (work for the others is skipped). CameraInfo is always made."""

    depth: bool = True
    colored: bool = True
    points: bool = True

    def any(self) -> bool:
        return self.depth or self.colored or self.points


class CameraRegistry:
    """The latest valid CameraInfo per image size, as the node keeps it (thread-safe).

    The newest CameraInfo is the truth: a rejected one clears what was known, so images are never
    paired with an older, possibly wrong calibration.
    """

    def __init__(self, capacity: int = MAX_CAMERA_SIZES) -> None:
        self._capacity = capacity
        self._cameras: dict[tuple[int, int], CameraModel] = {}
        self._error = ""
        self._lock = threading.Lock()

    def update(self, info: Any, rectified: bool | None) -> CameraModel:
        """Add a CameraInfo; raises CameraInfoError (after forgetting the older ones) when it is invalid."""
        try:
            camera = CameraModel.from_camera_info(info, rectified=rectified)
        except CameraInfoError as exc:
            with self._lock:
                self._cameras.clear()
                self._error = str(exc)
            raise
        with self._lock:
            self._error = ""
            self._cameras.pop(camera.size, None)
            self._cameras[camera.size] = camera
            while len(self._cameras) > self._capacity:
                self._cameras.pop(next(iter(self._cameras)))
        return camera

    def clear(self) -> None:
        with self._lock:
            self._cameras.clear()

    def lookup(self, size: tuple[int, int], info_topic: str) -> CameraModel:
        """The camera model of a (width, height) image, or FrameSkipped saying why there is none."""
        with self._lock:
            camera = self._cameras.get(size)
            known = list(self._cameras)
            error = self._error
        if camera is not None:
            return camera
        if error:
            raise FrameSkipped("bad_camera_info", f"skipping image: the latest CameraInfo on {info_topic} was "
                               f"rejected ({error})")
        if not known:
            raise FrameSkipped("no_camera_info", f"no valid CameraInfo received on {info_topic} yet; skipping "
                               "images until one arrives", level="warn")
        sizes = ", ".join(f"{w}x{h}" for w, h in known)
        raise FrameSkipped("camera_info_size_mismatch", f"image is {size[0]}x{size[1]} but the CameraInfo on "
                           f"{info_topic} describes {sizes}; skipping", level="warn")


def decode_image(msg: Image | CompressedImage) -> Any:
    """HxWx3 uint8 RGB, or FrameSkipped('bad_image') naming what is wrong with the message."""
    try:
        if isinstance(msg, CompressedImage):
            return codecs.compressed_to_rgb(msg)
        return codecs.image_to_rgb(msg)
    except codecs.ImageDecodeError as exc:
        raise FrameSkipped("bad_image", f"rejected image: {exc}") from exc


def _rectified_setting(values: Mapping[str, Any]) -> bool | None:
    return {"auto": None, "true": True, "false": False}[values["input_rectified"]]


class FrameProcessor:
    """The per-frame pipeline of one camera: its CameraInfo registry, the estimator, the output settings."""

    def __init__(self, estimator: DepthEstimator, values: Mapping[str, Any]) -> None:
        self.estimator = estimator
        self.cameras = CameraRegistry()
        # The last cloud's data buffer and layout, reused by the next frame of the same layout.
        self._cloud_buffer: tuple[Any, Any] | None = None
        self._lock = threading.Lock()  # settings change (parameter callback) vs. a frame in flight
        self._values: dict[str, Any] = {}
        self.configure(values)
        # More outputs from the same depth (the node's navigation outputs): called with
        # (DepthFrame, header, parameter values, emit) after the others; returns stage timings.
        self.extra_outputs: Callable[[Any, Any, Mapping[str, Any], Emit], dict[str, float]] | None = None

    def configure(self, values: Mapping[str, Any]) -> None:
        """Apply (validated) parameter values; CameraInfo is re-derived when input_rectified changes."""
        with self._lock:
            rectified_changed = bool(self._values) and values["input_rectified"] != self._values["input_rectified"]
            self._values = dict(values)
            self.estimator.settings = pipeline_settings(values)
        if rectified_changed:
            self.cameras.clear()  # re-derive from the next CameraInfo

    def camera_info(self, msg: Any) -> CameraModel:
        """Take a CameraInfo; raises CameraInfoError when it is invalid (the registry forgets the older ones)."""
        return self.cameras.update(msg, _rectified_setting(self._values))

    def process(self, msg: Image | CompressedImage, emit: Emit, wanted: Wanted = Wanted(),
                info_topic: str = "camera_info") -> dict[str, float]:
        """Run one frame and emit its outputs; returns stage timings (s). Raises FrameSkipped."""
        t0 = time.perf_counter()
        rgb = decode_image(msg)
        camera = self.cameras.lookup((rgb.shape[1], rgb.shape[0]), info_topic)
        t1 = time.perf_counter()
        with self._lock:
            values = self._values
            stride = values["cloud_stride"]
            # The device pipeline builds the points beside the depth and returns both in one copy;
            # the host path builds them below, straight as the planes the cloud packer interleaves.
            on_device = wanted.points and self.estimator.uses_device_pipeline
            frame = self.estimator.estimate(rgb, camera, points_stride=stride if on_device else None)
        timings = {"decode": t1 - t0, **frame.timings}
        header = msg.header

        t2 = time.perf_counter()
        if wanted.depth:
            out = _new_message(Image, header)
            data, _ = codecs.depth_to_image_data(frame.depth, values["depth_encoding"])
            codecs.fill_image_msg(out, data, values["depth_encoding"])
            emit(DEPTH, out)
        emit(CAMERA_INFO, CameraInfo(header=header, **_camera_info_kwargs(frame.camera)))
        if wanted.colored:
            coloured = colorize_depth(frame.depth, values["colormap"], values["colored_min_depth"],
                                      values["colored_max_depth"])
            out = _new_message(Image, header)
            codecs.fill_image_msg(out, coloured, "bgr8")
            emit(COLORED, out)
        t3 = time.perf_counter()
        if wanted.points:
            xyz: codecs.CloudXYZ
            if frame.points is not None and frame.points_stride == stride:
                xyz = frame.points
            else:
                xyz = depth_to_point_planes(frame.depth, frame.camera, stride)
            colours = cloud_colours(rgb, frame.depth.shape, stride) if values["cloud_color"] else None
            cloud = _new_message(PointCloud2, header)
            layout = (frame.depth[::stride, ::stride].shape, colours is not None)
            previous = self._cloud_buffer
            reuse = previous[1] if previous is not None and previous[0] == layout else None
            buffer = codecs.fill_cloud_msg(cloud, xyz, colours, point_field_cls=PointField, buffer=reuse)
            emit(POINTS, cloud)  # publishes or serialises (copies) the cloud: its buffer is free again
            self._cloud_buffer = (layout, buffer)
        t4 = time.perf_counter()
        timings["publish_depth"] = t3 - t2
        timings["cloud"] = t4 - t3
        if self.extra_outputs is not None:
            timings.update(self.extra_outputs(frame, header, values, emit))
        return timings


def _new_message(cls: type, header: Any) -> Any:
    """A message whose array fields keep what is assigned instead of copying it.

    With field checks off (rclpy's default) the generated setters copy an assigned
    array.array('B'): ~8 ms per 10 MB cloud. check_fields=True takes it as is; Humble's
    messages do not know the argument and copy.
    """
    try:
        msg = cls(check_fields=True)
    except TypeError:
        msg = cls()
    msg.header = header
    return msg


def _camera_info_kwargs(camera: CameraModel) -> dict[str, Any]:
    fields = camera.camera_info_fields()
    roi = fields.pop("roi")
    fields["roi"] = RegionOfInterest(**roi)
    return fields
