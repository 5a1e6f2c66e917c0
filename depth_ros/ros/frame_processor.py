"""One frame's work, shared by depth_node and `depth-ros bag process` so the two cannot drift.

decode the image -> find its camera (the latest valid CameraInfo of that size) -> estimate metric
depth -> build the depth, depth/camera_info, depth/colored, depth/confidence and points messages.

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

from depth_ros.core.camera import CameraInfoError, CameraModel
from depth_ros.core.colorize import colorize_depth
from depth_ros.core.pointcloud import cloud_colours
from depth_ros.core.temporal import TemporalFilter
from depth_ros.pipeline import DepthEstimator, DepthFrame, FrameRequest
from depth_ros.ros import codecs
from depth_ros.ros.parameters import pipeline_settings, temporal_settings

MAX_CAMERA_SIZES = 4  # CameraInfo kept per image size (a driver switching modes, several streams)

# Output kinds, in the order they are emitted; each is also the node's relative topic name.
DEPTH, CAMERA_INFO, COLORED, POINTS = "depth", "depth/camera_info", "depth/colored", "points"
CONFIDENCE = "depth/confidence"
OUTPUT_KINDS = (DEPTH, CAMERA_INFO, COLORED, CONFIDENCE, POINTS)
OUTPUT_TYPES = {DEPTH: "sensor_msgs/msg/Image", CAMERA_INFO: "sensor_msgs/msg/CameraInfo",
                COLORED: "sensor_msgs/msg/Image", CONFIDENCE: "sensor_msgs/msg/Image",
                POINTS: "sensor_msgs/msg/PointCloud2"}

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
    confidence: bool = False  # computed only when asked (a subscriber, `bag process --confidence`)

    def any(self) -> bool:
        return self.depth or self.colored or self.points or self.confidence


@dataclass
class PreparedFrame:
    """A decoded frame with its camera, ready for the estimator (FrameProcessor.prepare)."""

    msg: Any
    request: FrameRequest
    values: Mapping[str, Any]  # the parameters this frame runs with
    wanted: Wanted
    decode_seconds: float


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
            previous = self._cameras.pop(camera.size, None)
            if previous is not None and previous == camera:
                camera = previous  # the same calibration: keep its model, and what was planned for it
            self._cameras[camera.size] = camera
            while len(self._cameras) > self._capacity:
                self._cameras.pop(next(iter(self._cameras)))
        return camera

    def clear(self) -> None:
        with self._lock:
            self._cameras.clear()

    def latest(self) -> CameraModel | None:
        """The most recently accepted camera model (None before the first, or after a rejected one)."""
        with self._lock:
            return next(reversed(self._cameras.values()), None)

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


# image_transport plugins publish on <base topic>/<transport>: the base name says what the image is.
_TRANSPORT_SUFFIXES = ("compressed", "compressedDepth", "theora", "zstd", "ffmpeg", "h264", "foxglove")


def image_base_name(image_topic: str) -> str:
    """Last name of an image topic without its transport suffix (/cam/image_rect/compressed -> image_rect)."""
    parts = [part for part in image_topic.split("/") if part]
    if len(parts) > 1 and parts[-1] in _TRANSPORT_SUFFIXES:
        parts = parts[:-1]
    return parts[-1] if parts else ""


def input_rectified(setting: str, image_topic: str) -> bool | None:
    """The `input_rectified` parameter resolved for an image topic: True = rectified (P, D ignored), False =
    raw (K + D), None = decided per CameraInfo (raw when D has a non-zero coefficient).

    'auto' follows how ROS camera pipelines name their topics: image_proc publishes `image_rect` (and
    `image_rect_color`) with the camera's original CameraInfo, whose D is non-zero and whose P is the
    rectified camera, so a base name starting with image_rect is rectified whatever D says.
    """
    if setting == "true":
        return True
    if setting == "false":
        return False
    return True if image_base_name(image_topic).startswith("image_rect") else None


def describe_input_rule(setting: str, image_topic: str) -> str:
    """One line for the startup log: how images on ``image_topic`` are interpreted, and why."""
    rectified = input_rectified(setting, image_topic)
    if setting != "auto":
        return (f"input_rectified {setting}: images on {image_topic} are "
                + ("rectified (P, D ignored)" if rectified else "raw (K + D)"))
    if rectified:
        return f"input_rectified auto: {image_topic} is an image_rect topic -> rectified (P, D ignored)"
    return (f"input_rectified auto: {image_topic} is not an image_rect topic -> raw (K + D) when its CameraInfo "
            "has non-zero distortion, else P; set input_rectified true/false to override")


class FrameProcessor:
    """The per-frame pipeline of one camera: its CameraInfo registry, the estimator, the output settings."""

    def __init__(self, estimator: DepthEstimator, values: Mapping[str, Any], image_topic: str = "image") -> None:
        self.estimator = estimator
        self.cameras = CameraRegistry()
        self.image_topic = image_topic  # decides input_rectified 'auto' (input_rectified())
        # The last depth camera model and its CameraInfo fields (the estimator's plan keeps the model object).
        self._info_fields: tuple[CameraModel, dict[str, Any]] | None = None
        # The last cloud's data buffer and layout, reused by the next frame of the same layout.
        self._cloud_buffer: tuple[Any, Any] | None = None
        # (parameter values, pipeline settings): replaced whole by configure(), read once per frame, so a
        # parameter change never waits for the frame in flight and never applies half-way through one.
        self._state: tuple[dict[str, Any], Any] = ({}, None)
        # The temporal filter of this camera (None when off) and the camera model its state belongs to.
        self._temporal: TemporalFilter | None = None
        self._temporal_camera: CameraModel | None = None
        self.configure(values)
        # More outputs from the same depth (the node's navigation outputs): called with
        # (DepthFrame, header, parameter values, emit) after the others; returns stage timings.
        self.extra_outputs: Callable[[Any, Any, Mapping[str, Any], Emit], dict[str, float]] | None = None
        # Called with each frame's DepthFrame once it is estimated (the node counts the edge-filtered pixels).
        self.on_frame: Callable[[DepthFrame], None] | None = None

    def configure(self, values: Mapping[str, Any]) -> None:
        """Apply (validated) parameter values without waiting for a frame in flight (it keeps its values; the
        next frame takes these). CameraInfo is re-derived when input_rectified changes."""
        previous = self._state[0]
        rectified_changed = bool(previous) and values["input_rectified"] != previous["input_rectified"]
        settings = pipeline_settings(values)
        temporal = temporal_settings(values)
        if temporal is None:
            self._temporal = None
        elif self._temporal is None or self._temporal.settings != temporal:
            self._temporal = TemporalFilter(temporal)  # a new time constant starts from the next frame
        self._state = (dict(values), settings)  # one reference swap: atomic for the worker
        self.estimator.settings = settings
        if rectified_changed:
            self.cameras.clear()  # re-derive from the next CameraInfo

    @property
    def values(self) -> dict[str, Any]:
        return self._state[0]

    def camera_info(self, msg: Any) -> CameraModel:
        """Take a CameraInfo; raises CameraInfoError when it is invalid (the registry forgets the older ones)."""
        return self.cameras.update(msg, input_rectified(self._state[0]["input_rectified"], self.image_topic))

    def process(self, msg: Image | CompressedImage, emit: Emit, wanted: Wanted = Wanted(),
                info_topic: str = "camera_info", scale_hook: Any = None) -> dict[str, float]:
        """Run one frame and emit its outputs; returns stage timings (s). Raises FrameSkipped.

        decode -> its camera -> metric depth (+ points, DepthEstimator.estimate) -> depth, camera_info and
        colored messages -> the cloud -> the extra (navigation) outputs.
        """
        prepared = self.prepare(msg, wanted, info_topic, scale_hook)
        frame = self.estimator.estimate_batch([prepared.request])[0]
        assert isinstance(frame, DepthFrame)  # errors are raised, not returned
        return self.finish(prepared, frame, emit)

    def prepare(self, msg: Image | CompressedImage, wanted: Wanted = Wanted(), info_topic: str = "camera_info",
                scale_hook: Any = None) -> PreparedFrame:
        """Decode a frame and find its camera: what the estimator needs (several cameras' frames may then run
        in one batch, DepthEstimator.estimate_batch), and what ``finish`` needs. Raises FrameSkipped."""
        t0 = time.perf_counter()
        rgb = decode_image(msg)
        camera = self.cameras.lookup((rgb.shape[1], rgb.shape[0]), info_topic)
        values, settings = self._state  # this frame's parameters, whatever changes meanwhile
        temporal = self._temporal
        if temporal is not None and camera is not self._temporal_camera:
            temporal.reset()  # a new calibration (or the first frame): the state describes other pixels
            self._temporal_camera = camera
        request = FrameRequest(rgb, camera, values["cloud_stride"] if wanted.points else None, settings, temporal,
                               msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, wanted.confidence,
                               scale_hook)
        return PreparedFrame(msg, request, values, wanted, time.perf_counter() - t0)

    def finish(self, prepared: PreparedFrame, frame: DepthFrame, emit: Emit) -> dict[str, float]:
        """Emit the outputs of a prepared frame's depth; returns the frame's stage timings (s)."""
        if self.on_frame is not None:
            self.on_frame(frame)
        msg, values, wanted = prepared.msg, prepared.values, prepared.wanted
        t2 = time.perf_counter()
        self._emit_images(frame, msg.header, values, wanted, emit)
        t3 = time.perf_counter()
        if wanted.points:
            self._emit_cloud(frame, prepared.request.rgb, msg.header, values, emit)
        t4 = time.perf_counter()
        timings = {"decode": prepared.decode_seconds, **frame.timings, "publish_depth": t3 - t2, "cloud": t4 - t3}
        if self.extra_outputs is not None:
            timings.update(self.extra_outputs(frame, msg.header, values, emit))
        return timings

    def _emit_images(self, frame: DepthFrame, header: Any, values: Mapping[str, Any], wanted: Wanted,
                     emit: Emit) -> None:
        """depth (in the chosen encoding), its CameraInfo (always), the colour-mapped depth and the confidence."""
        if wanted.depth:
            out = _new_message(Image, header)
            codecs.fill_depth_msg(out, frame.depth, values["depth_encoding"])
            emit(DEPTH, out)
        emit(CAMERA_INFO, CameraInfo(header=header, **self._camera_info_fields(frame.camera)))
        if wanted.colored:
            coloured = colorize_depth(frame.depth, values["colormap"], values["colored_min_depth"],
                                      values["colored_max_depth"])
            out = _new_message(Image, header)
            codecs.fill_image_msg(out, coloured, "bgr8")
            emit(COLORED, out)
        if wanted.confidence and frame.confidence is not None:
            out = _new_message(Image, header)
            codecs.fill_image_msg(out, frame.confidence, "32FC1")
            emit(CONFIDENCE, out)

    def _camera_info_fields(self, camera: CameraModel) -> dict[str, Any]:
        """CameraInfo fields of the depth image (made once per camera model; messages never change them)."""
        last = self._info_fields
        if last is None or last[0] is not camera:
            fields = camera.camera_info_fields()
            fields["roi"] = RegionOfInterest(**fields["roi"])
            last = self._info_fields = (camera, fields)
        return last[1]

    def _emit_cloud(self, frame: DepthFrame, rgb: Any, header: Any, values: Mapping[str, Any], emit: Emit) -> None:
        """The organised cloud of the frame's points, coloured from the image when asked; the data buffer of
        the last cloud is reused by the next one of the same layout."""
        stride = frame.points_stride
        colours = cloud_colours(rgb, frame.depth.shape, stride) if values["cloud_color"] else None
        cloud = _new_message(PointCloud2, header)
        layout = (frame.depth[::stride, ::stride].shape, colours is not None)
        previous = self._cloud_buffer
        reuse = previous[1] if previous is not None and previous[0] == layout else None
        buffer = codecs.fill_cloud_msg(cloud, frame.points, colours, point_field_cls=PointField, buffer=reuse)
        emit(POINTS, cloud)  # publishes or serialises (copies) the cloud: its buffer is free again
        self._cloud_buffer = (layout, buffer)


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
