"""`depth-ros bag process`: the node's per-frame pipeline over a bag, offline, without DDS.

Reads a rosbag2 (sqlite3 or MCAP) or a ROS 1 .bag, runs every image of the chosen cameras through
`FrameProcessor` (exactly what depth_node runs) and writes a rosbag2 (MCAP) holding every input
topic plus each camera's depth, depth/camera_info, depth/colored and points, stamped with the
image's own header and recorded at the image's bag timestamp.

Camera topics (see the README, "Bags"):
- a CameraInfo topic `<ns>/camera_info` or `<ns>/info/camera_info` (RealSense) describes the camera
  namespace `<ns>`; an image topic pairs with the CameraInfo of the deepest namespace it lies in
  (`/cam/color/image_raw` -> `/cam/color/camera_info`,
  `/device_0/sensor_1/Color_0/image/data` -> `/device_0/sensor_1/Color_0/info/camera_info`);
- without --image-topic, every Image/CompressedImage topic with a paired CameraInfo is a candidate,
  except depth streams (16UC1/mono16/32FC1 or compressedDepth); there must be exactly one;
- outputs go to `<camera namespace>/depth`, `/depth/camera_info`, `/depth/colored`, `/points`,
  or under --output-prefix.

The result is written under `OUT.partial-<pid>/` and renamed to OUT only when complete, so an
interrupted or failed run never leaves a bag that looks finished.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from depth_ros.bags.io import BagError, BagReader, BagWriter, RawMessage
from depth_ros.bags.progress import Progress
from depth_ros.ros.frame_processor import OUTPUT_KINDS, OUTPUT_TYPES, FrameProcessor, FrameSkipped, Wanted
from depth_ros.ros.memory import tune_malloc_for_large_messages

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
DEPTH_ENCODINGS = frozenset({"16uc1", "mono16", "32fc1"})


class ConfigError(ValueError):
    """Bad parameters or model for `bag process` (exit code 2, like the node's startup errors)."""


# ----------------------------------------------------------------------------- topic rules

def camera_namespace(info_topic: str) -> str:
    """The namespace a CameraInfo topic describes: '/a/b/camera_info' and '/a/b/info/camera_info' -> '/a/b'."""
    parts = [p for p in info_topic.split("/") if p][:-1]
    if parts and parts[-1] == "info":
        parts = parts[:-1]
    return "/" + "/".join(parts)


def _inside(topic: str, namespace: str) -> bool:
    return namespace == "/" or topic.startswith(namespace + "/")


def pair_camera_info(image_topic: str, info_topics: list[str]) -> str | None:
    """The CameraInfo topic of the deepest camera namespace that contains ``image_topic``."""
    candidates = [(camera_namespace(t).count("/") if camera_namespace(t) != "/" else 0, t)
                  for t in info_topics if _inside(image_topic, camera_namespace(t))]
    if not candidates:
        return None
    best = max(depth for depth, _ in candidates)
    deepest = sorted(t for depth, t in candidates if depth == best)
    if len(deepest) > 1:
        raise BagError(f"image topic {image_topic} could belong to {', '.join(deepest)}; "
                       "name one with --camera-info-topic")
    return deepest[0]


def output_topics(prefix: str) -> dict[str, str]:
    """Output kind -> topic under ``prefix`` ('/cam/color' -> '/cam/color/depth', ...)."""
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    return {kind: f"{prefix}/{kind}" for kind in OUTPUT_KINDS}


@dataclass
class CameraTopics:
    image: str
    info: str
    prefix: str
    outputs: dict[str, str] = field(default_factory=dict)
    processed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    bad_camera_info: int = 0

    def __post_init__(self) -> None:
        self.outputs = output_topics(self.prefix)


def _is_depth_stream(reader: BagReader, topic: str) -> bool:
    """Depth cameras publish images too; their first message's encoding tells them apart."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage, Image

    for raw in reader.messages([topic]):
        if raw.msgtype == COMPRESSED:
            return "compresseddepth" in deserialize_message(raw.data, CompressedImage).format.lower()
        return deserialize_message(raw.data, Image).encoding.strip().lower() in DEPTH_ENCODINGS
    return False


def resolve_cameras(reader: BagReader, image_topics: list[str], info_topics: list[str],
                    prefixes: list[str]) -> list[CameraTopics]:
    infos = [t for t, info in reader.topics.items() if info.msgtype == CAMERA_INFO]
    if image_topics:
        reader.require(image_topics + info_topics)
        for topic in image_topics:
            if reader.topics[topic].msgtype not in (IMAGE, COMPRESSED):
                raise BagError(f"--image-topic {topic} carries {reader.topics[topic].msgtype}, not a "
                               "sensor_msgs/msg/Image or CompressedImage")
        for topic in info_topics:
            if reader.topics[topic].msgtype != CAMERA_INFO:
                raise BagError(f"--camera-info-topic {topic} carries {reader.topics[topic].msgtype}, "
                               "not a sensor_msgs/msg/CameraInfo")
    else:
        if info_topics:
            raise BagError("--camera-info-topic needs --image-topic (one CameraInfo topic per image topic)")
        candidates = [t for t, info in reader.topics.items() if info.msgtype in (IMAGE, COMPRESSED)
                      and pair_camera_info(t, infos) is not None]
        colour = [t for t in candidates if not _is_depth_stream(reader, t)]
        if len(colour) != 1:
            found = ", ".join(colour) if colour else "none"
            raise BagError(f"cannot choose the camera in {reader.path}: image topics with a CameraInfo: {found}; "
                           "name them with --image-topic")
        image_topics = colour
    if info_topics and len(info_topics) != len(image_topics):
        raise BagError("give one --camera-info-topic per --image-topic (or none, to pair them by namespace)")
    if prefixes and len(prefixes) != len(image_topics):
        raise BagError("give one --output-prefix per --image-topic")

    cameras = []
    for index, image in enumerate(image_topics):
        info = info_topics[index] if info_topics else pair_camera_info(image, infos)
        if info is None:
            raise BagError(f"no CameraInfo topic pairs with {image} (CameraInfo topics: {', '.join(infos) or 'none'});"
                           " name one with --camera-info-topic")
        cameras.append(CameraTopics(image, info, prefixes[index] if prefixes else camera_namespace(info)))
    taken: dict[str, str] = {}
    for camera in cameras:
        for topic in camera.outputs.values():
            if topic in reader.topics or topic in taken:
                raise BagError(f"output topic {topic} (for {camera.image}) already exists in "
                               f"{'the input bag' if topic in reader.topics else 'the outputs of ' + taken[topic]}; "
                               "choose another --output-prefix")
            taken[topic] = camera.image
    return cameras


# ----------------------------------------------------------------------------- parameters

def load_parameters(params_file: str | Path | None, overrides: list[str]) -> dict[str, Any]:
    """The node's parameter values: table defaults < params file (ros__parameters) < NAME:=VALUE overrides."""
    from depth_ros.resources import package_file
    from depth_ros.ros.parameters import PARAMETERS, SPECS, validate

    values: dict[str, Any] = {spec.name: spec.default for spec in PARAMETERS}
    path = Path(params_file) if params_file else package_file("config/depth.yaml")
    given: dict[str, Any] = {}
    if path is not None:
        try:
            document = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read params file {path}: {exc}") from exc
        for section in document.values() if isinstance(document, dict) else ():
            if isinstance(section, dict) and isinstance(section.get("ros__parameters"), dict):
                given.update(section["ros__parameters"])
    for item in overrides:
        name, sep, text = item.partition(":=")
        if not sep:
            name, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"-p {item}: write NAME:=VALUE")
        given[name.strip()] = yaml.safe_load(text) if text.strip() else ""
    for name, value in given.items():
        spec = SPECS.get(name)
        if spec is None:
            raise ConfigError(f"unknown parameter '{name}' (see the README's parameter table)")
        if isinstance(spec.default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        values[name] = value
    reason = validate(values)
    if reason is not None:
        raise ConfigError(f"{reason}. Fix it in the params file or with -p NAME:=VALUE")
    if values.get("scale_source", "fixed") != "fixed":
        # Online scale recovery needs the node's reference subscriptions; offline it would silently not happen.
        raise ConfigError(f"scale_source '{values['scale_source']}' is not supported by bag process; "
                          "use -p scale_source:=fixed (disparity_scale/disparity_shift)")
    return values


def load_estimator(values: dict[str, Any]) -> Any:
    from depth_ros.backends import ModelLoadError
    from depth_ros.core.contract import ContractError
    from depth_ros.pipeline import DepthEstimator
    from depth_ros.resources import resolve_model_path
    from depth_ros.ros.parameters import backend_options

    path = resolve_model_path(values["model"])
    options = backend_options(values)
    try:
        return DepthEstimator.from_path(path, values["backend"], options)
    except (ModelLoadError, ContractError) as exc:
        raise ConfigError(str(exc)) from exc


# ----------------------------------------------------------------------------- the run

@contextmanager
def atomic_bag_path(out: Path, overwrite: bool) -> Iterator[Path]:
    """A path to write the bag at; it becomes ``out`` only when the block completes.

    The bag is built inside `OUT.partial-<pid>/`; on any exception (KeyboardInterrupt included)
    that folder is removed and ``out`` is left as it was.
    """
    if out.exists() and not overwrite:
        raise BagError(f"{out} exists; remove it or pass --overwrite")
    staging = out.with_name(f"{out.name}.partial-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        yield staging / out.name
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(staging / out.name, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class Interrupted:
    """Ctrl-C (SIGINT) and SIGTERM only raise a flag, checked between messages.

    A KeyboardInterrupt raised wherever the signal lands (inside rclpy's C++ deserialiser, in the
    middle of a bag write) surfaces as an unrelated error; at a message boundary it is a clean stop.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    def __enter__(self) -> Interrupted:
        def handler(signum: int, frame: object) -> None:
            self.requested = True

        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, handler)
        except ValueError:  # not the main thread: leave signals alone
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


@dataclass
class ProcessResult:
    cameras: list[CameraTopics]
    messages_in: int = 0
    seconds: float = 0.0
    out: Path | None = None


def process_bag(bag: str | Path, out: str | Path, image_topics: list[str] | None = None,
                info_topics: list[str] | None = None, prefixes: list[str] | None = None,
                params_file: str | Path | None = None, overrides: list[str] | None = None,
                overwrite: bool = False, progress: bool | None = None, log: Any = print,
                confidence: bool = False) -> ProcessResult:
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    from depth_ros.core.camera import CameraInfoError

    tune_malloc_for_large_messages()  # every output is serialised (copied) once: reuse those buffers
    out = Path(out)
    values = load_parameters(params_file, overrides or [])
    start = time.monotonic()
    with BagReader(bag) as reader, Interrupted() as interrupted:
        cameras = resolve_cameras(reader, list(image_topics or []), list(info_topics or []), list(prefixes or []))
        estimator = load_estimator(values)
        processors = {camera.image: (camera, FrameProcessor(estimator, values)) for camera in cameras}
        by_info: dict[str, list[tuple[CameraTopics, FrameProcessor]]] = {}
        for camera, processor in processors.values():
            by_info.setdefault(camera.info, []).append((camera, processor))
        for camera in cameras:
            log(f"bag process: {camera.image} + {camera.info} -> {camera.outputs['depth']}, "
                f"{camera.outputs['depth/camera_info']}, {camera.outputs['depth/colored']}, "
                + (f"{camera.outputs['depth/confidence']}, " if confidence else "") + camera.outputs['points'])
        wanted = Wanted(confidence=confidence)
        bar = Progress(sum(reader.topics[c.image].count for c in cameras), enabled=progress)
        result = ProcessResult(cameras)
        with atomic_bag_path(out, overwrite) as path, BagWriter(path) as writer:
            for raw in reader.messages():
                interrupted.check()
                result.messages_in += 1
                if not writer.knows(raw.msgtype):
                    writer.add_types_from(reader.typestore, raw.msgtype)
                writer.write(raw.topic, raw.msgtype, raw.timestamp_ns, raw.data)
                for camera, processor in by_info.get(raw.topic, ()):
                    try:
                        processor.camera_info(_deserialize(deserialize_message, raw, CameraInfo))
                    except CameraInfoError as exc:
                        camera.bad_camera_info += 1
                        if camera.bad_camera_info == 1:
                            log(f"bag process: rejected CameraInfo on {raw.topic} at t={raw.timestamp_ns} ns: {exc}")
                entry = processors.get(raw.topic)
                if entry is None:
                    continue
                camera, processor = entry
                msg = _deserialize(deserialize_message, raw, CompressedImage if raw.msgtype == COMPRESSED else Image)

                def emit(kind: str, output: Any, camera: CameraTopics = camera, stamp: int = raw.timestamp_ns) -> None:
                    writer.write(camera.outputs[kind], OUTPUT_TYPES[kind], stamp, serialize_message(output))

                try:
                    processor.process(msg, emit, wanted, info_topic=camera.info)
                    camera.processed += 1
                except FrameSkipped as skipped:
                    if skipped.reason == "bad_image":
                        raise BagError(f"{raw.topic} at t={raw.timestamp_ns} ns: {skipped.message}") from skipped
                    camera.skipped[skipped.reason] += 1
                    if sum(camera.skipped.values()) == 1:
                        log(f"bag process: {raw.topic} at t={raw.timestamp_ns} ns: {skipped.message}")
                bar.update()
            bar.close()
            interrupted.check()
            if not any(camera.processed for camera in cameras):
                reasons = ", ".join(f"{n} {r}" for c in cameras for r, n in c.skipped.items()) or "no images"
                raise BagError(f"no frame could be processed ({reasons}); nothing written")
    result.seconds = time.monotonic() - start
    result.out = out
    return result


def _deserialize(deserialize: Any, raw: RawMessage, cls: type) -> Any:
    try:
        return deserialize(raw.data, cls)
    except Exception as exc:  # rclpy raises its own RMWError for malformed CDR
        raise BagError(f"{raw.topic} at t={raw.timestamp_ns} ns: not a valid {raw.msgtype} "
                       f"({' '.join(str(exc).split())})") from exc


def print_result(result: ProcessResult, log: Any = print) -> None:
    frames = sum(c.processed for c in result.cameras)
    rate = frames / result.seconds if result.seconds > 0 else float("nan")
    for camera in result.cameras:
        skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(camera.skipped.items()))
        log(f"bag process: {camera.image}: {camera.processed} frames" + (f", skipped {skipped}" if skipped else "")
            + (f", {camera.bad_camera_info} CameraInfo rejected" if camera.bad_camera_info else ""))
    log(f"bag process: {result.messages_in} messages in, {frames} frames in {result.seconds:.1f} s "
        f"({rate:.1f} frames/s); wrote {result.out} (rosbag2, MCAP)")
