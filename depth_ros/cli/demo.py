"""The demo (`make demo`): the bundled RealSense D435 sample played into a live depth_node over DDS.

Built from the bag tools a user has: the sample frame is written `loops` times (each with its own
stamp, `1/rate` apart) into an input bag, `depth_node` runs as its own process (params file +
remaps, as a user would), `bags.play.Player` plays the input bag on live topics with its recorded
timing, `bags.play.Recorder` records the node's outputs and the played image into a rosbag2, and a
preview PNG is written (input | coloured depth | point cloud from an oblique viewpoint).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from depth_ros.bags.io import BagWriter, RawMessage, read_raw
from depth_ros.bags.play import Player, PlayOptions, Recorder
from depth_ros.core.colorize import colorize_depth
from depth_ros.resources import package_file
from depth_ros.ros import codecs
from depth_ros.ros.dds import local_ros_env, release_domain_id, reserve_domain_id

SAMPLE_IMAGE_TOPIC = "/device_0/sensor_1/Color_0/image/data"
SAMPLE_INFO_TOPIC = "/device_0/sensor_1/Color_0/info/camera_info"
CAMERA_NS = "/camera"
OUTPUTS = {
    f"{CAMERA_NS}/depth": "sensor_msgs/msg/Image",
    f"{CAMERA_NS}/depth/camera_info": "sensor_msgs/msg/CameraInfo",
    f"{CAMERA_NS}/points": "sensor_msgs/msg/PointCloud2",
    f"{CAMERA_NS}/depth/colored": "sensor_msgs/msg/Image",
}


def sample_bag() -> Path:
    """The bundled D435 sample (rosbag2, MCAP)."""
    found = package_file("data/realsense_d435/d435_rosbag2/metadata.yaml")
    if found is None:
        raise FileNotFoundError("the bundled D435 sample (data/realsense_d435) is not installed")
    return found.parent


def node_command(params_file: Path, model: str | None, extra: list[str] | None = None) -> list[str]:
    """depth_node as a user runs it: params file + namespace + remaps onto the bag's topics."""
    args = [sys.executable, "-m", "depth_ros.ros.node", "--ros-args", "--params-file", str(params_file),
            "-r", f"__ns:={CAMERA_NS}", "-r", f"image:={SAMPLE_IMAGE_TOPIC}", "-r", f"camera_info:={SAMPLE_INFO_TOPIC}"]
    if model is not None:
        args += ["-p", f"model:={model}"]
    return args + (extra or [])


def _stamp_ns(header: object) -> int:
    return header.stamp.sec * 10**9 + header.stamp.nanosec  # type: ignore[attr-defined]


def _image_stamp(cdr: bytes) -> int:
    """header.stamp of a serialized message that starts with a Header, without deserialising megabytes.

    CDR: 4 bytes of encapsulation (byte 1: 1 = little endian), then stamp.sec (int32), stamp.nanosec (uint32).
    """
    order = "little" if cdr[1] == 1 else "big"
    sec = int.from_bytes(cdr[4:8], order, signed=True)
    return sec * 10**9 + int.from_bytes(cdr[8:12], order)


def write_frame_sequence(path: Path, image: RawMessage, info: RawMessage, count: int, period_s: float,
                         storage: str = "mcap") -> list[int]:
    """A bag of ``count`` copies of one frame (CameraInfo + image), ``period_s`` apart, each with its own
    header stamp (like a camera streaming a still scene); returns the image stamps (ns)."""
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CameraInfo, Image

    image_msg = deserialize_message(image.data, Image)
    info_msg = deserialize_message(info.data, CameraInfo)
    base, step = _stamp_ns(image_msg.header), int(round(period_s * 1e9))
    stamps = []
    with BagWriter(path, storage=storage) as writer:
        for i in range(count):
            stamp = base + i * step
            image_msg.header.stamp.sec, image_msg.header.stamp.nanosec = divmod(stamp, 10**9)
            info_msg.header.stamp = image_msg.header.stamp
            at = image.timestamp_ns + i * step
            writer.write(info.topic, info.msgtype, at, serialize_message(info_msg))
            writer.write(image.topic, image.msgtype, at, serialize_message(image_msg))
            stamps.append(stamp)
    return stamps


@dataclass
class DemoResult:
    frames_in: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    depth_range: tuple[float, float] = (float("nan"), float("nan"))
    valid_fraction: float = 0.0
    points_per_frame: int = 0
    latency_ms: list[float] = field(default_factory=list)


def run_demo(out_dir: Path, loops: int = 10, rate_hz: float = 5.0, model: str | None = None,
             domain_id: int | None = None, timeout_s: float = 60.0) -> DemoResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    reserved = domain_id is None
    domain_id = reserve_domain_id() if domain_id is None else domain_id  # no other run hears this one
    env = local_ros_env(domain_id)
    try:
        return _run_demo(out_dir, loops, rate_hz, model, env, timeout_s)
    finally:  # the node has exited: its domain and its profile copy are free again
        Path(env["FASTDDS_DEFAULT_PROFILES_FILE"]).unlink(missing_ok=True)
        if reserved:
            release_domain_id(domain_id)


def _run_demo(out_dir: Path, loops: int, rate_hz: float, model: str | None, env: dict[str, str],
              timeout_s: float) -> DemoResult:
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY", "ROS_DOMAIN_ID",
                                           "RMW_IMPLEMENTATION", "FASTDDS_DEFAULT_PROFILES_FILE")})
    params = package_file("config/depth.yaml")
    if params is None:
        raise FileNotFoundError("config/depth.yaml is not installed with depth_ros")
    bag_path = out_dir / "outputs"
    if bag_path.exists():
        shutil.rmtree(bag_path)
    messages = {m.topic: m for m in read_raw(sample_bag(), [SAMPLE_IMAGE_TOPIC, SAMPLE_INFO_TOPIC])}

    with tempfile.TemporaryDirectory(prefix="depth_ros_demo_") as tmp:
        input_bag = Path(tmp) / "input"
        write_frame_sequence(input_bag, messages[SAMPLE_IMAGE_TOPIC], messages[SAMPLE_INFO_TOPIC], loops, 1.0 / rate_hz)
        result, last = _play_through_node(input_bag, bag_path, params, model, env, timeout_s)

    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image, PointCloud2

    if f"{CAMERA_NS}/depth" not in last or f"{CAMERA_NS}/points" not in last:
        raise RuntimeError(f"depth_node published nothing usable: {result.counts}")
    depth = codecs.image_msg_to_array(deserialize_message(last[f"{CAMERA_NS}/depth"], Image))
    xyz, _ = codecs.cloud_msg_to_arrays(deserialize_message(last[f"{CAMERA_NS}/points"], PointCloud2))
    valid = np.isfinite(depth)
    result.valid_fraction = float(valid.mean())
    if valid.any():
        result.depth_range = (float(depth[valid].min()), float(depth[valid].max()))
    result.points_per_frame = int(np.isfinite(xyz[:, :, 2]).sum())
    rgb = codecs.image_to_rgb(deserialize_message(messages[SAMPLE_IMAGE_TOPIC].data, Image))
    write_preview(out_dir / "preview.png", rgb, depth, xyz)
    return result


def _play_through_node(input_bag: Path, bag_path: Path, params: Path, model: str | None, env: dict[str, str],
                       timeout_s: float) -> tuple[DemoResult, dict[str, bytes]]:
    """input bag -> Player -> depth_node (own process) -> Recorder -> bag_path."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    result = DemoResult()
    sent_at: dict[int, int] = {}  # image stamp -> wall time published (ns)
    last: dict[str, bytes] = {}
    lock = threading.Lock()

    def on_publish(raw: RawMessage, wall_ns: int) -> None:
        if raw.topic == SAMPLE_IMAGE_TOPIC:
            with lock:
                result.frames_in += 1
                sent_at[_image_stamp(raw.data)] = wall_ns

    def on_message(topic: str, data: bytes, wall_ns: int) -> None:
        last[topic] = bytes(data)
        if topic == f"{CAMERA_NS}/depth":
            with lock:
                sent = sent_at.pop(_image_stamp(data), None)
            if sent is not None:
                result.latency_ms.append((wall_ns - sent) / 1e6)

    process = subprocess.Popen(node_command(params, model), env=env)
    rclpy.init()
    node = rclpy.create_node("depth_demo")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    try:
        with BagWriter(bag_path) as writer:
            recorder = Recorder(node, writer, {**OUTPUTS, SAMPLE_IMAGE_TOPIC: "sensor_msgs/msg/Image"},
                                on_message=on_message)
            player = Player(node, input_bag, PlayOptions(), on_publish=on_publish)
            spinner.start()
            deadline = time.monotonic() + timeout_s
            # Ready when the node subscribes to what we play and publishes what we record.
            while not all(node.count_publishers(t) > 0 for t in OUTPUTS):
                if process.poll() is not None:
                    raise RuntimeError(f"depth_node exited with code {process.returncode} before it was ready")
                if time.monotonic() > deadline:
                    raise TimeoutError("depth_node did not come up on DDS in time")
                time.sleep(0.05)
            # A generous settle: the node's side of each match must complete too (best effort loses what
            # is sent before), and it skips frames whose outputs nobody subscribes to yet.
            if not player.wait_for_subscribers(max(1.0, deadline - time.monotonic()), settle_s=1.5):
                raise TimeoutError("depth_node did not subscribe to the played topics in time")
            player.play()
            end = time.monotonic() + 5.0
            while time.monotonic() < end and recorder.counts[f"{CAMERA_NS}/points"] < result.frames_in:
                time.sleep(0.05)
            recorder.close()
            result.counts = {t: n for t, n in recorder.counts.items() if t in OUTPUTS}
    finally:
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.shutdown()
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    return result, last


def render_cloud(xyz: np.ndarray, colours: np.ndarray, width: int, height: int,
                 yaw_deg: float = 35.0, pitch_deg: float = -25.0) -> np.ndarray:
    """Render points seen from an oblique virtual camera (z-buffered splats), BGR uint8."""
    points = xyz.reshape(-1, 3)
    cols = colours.reshape(-1, 3)
    keep = np.isfinite(points).all(axis=1)
    points, cols = points[keep], cols[keep]
    canvas = np.full((height, width, 3), 30, np.uint8)
    if len(points) == 0:
        return canvas
    centre = np.median(points, axis=0)
    yaw, pitch = np.radians(yaw_deg), np.radians(pitch_deg)
    rot_y = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    rot_x = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    distance = float(np.percentile(np.linalg.norm(points - centre, axis=1), 90)) * 3.5 + 1e-3
    view = (points - centre) @ (rot_x @ rot_y).T + np.array([0.0, 0.0, distance])
    front = view[:, 2] > 1e-3
    view, cols = view[front], cols[front]
    focal = 0.9 * width
    u = (focal * view[:, 0] / view[:, 2] + width / 2).astype(np.int64)
    v = (focal * view[:, 1] / view[:, 2] + height / 2).astype(np.int64)
    inside = (u >= 0) & (u < width - 1) & (v >= 0) & (v < height - 1)
    u, v, z, cols = u[inside], v[inside], view[inside, 2], cols[inside]
    order = np.argsort(-z)  # far first, so nearer points overwrite them
    for du in (0, 1):
        for dv in (0, 1):
            canvas[v[order] + dv, u[order] + du] = cols[order]
    return canvas


def write_preview(path: Path, rgb: np.ndarray, depth: np.ndarray, xyz: np.ndarray) -> None:
    height, width = rgb.shape[:2]
    depth_view = cv2.resize(colorize_depth(depth), (width, height), interpolation=cv2.INTER_NEAREST)
    colours = cv2.resize(rgb, (xyz.shape[1], xyz.shape[0]), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    panels = [np.ascontiguousarray(rgb[:, :, ::-1]), depth_view, render_cloud(xyz, colours, width, height)]
    titles = ("input", "depth (metres, colour by 1/depth)", "point cloud (oblique view)")
    for panel, title in zip(panels, titles, strict=True):
        cv2.putText(panel, title, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
    cv2.imwrite(str(path), np.hstack(panels))


def print_summary(result: DemoResult, out_dir: Path) -> None:
    lat = np.array(result.latency_ms) if result.latency_ms else np.array([np.nan])
    print(f"demo: {result.frames_in} frames in, {result.counts.get(f'{CAMERA_NS}/depth', 0)} depth frames out; "
          f"outputs {result.counts}")
    print(f"demo: depth {result.depth_range[0]:.2f}..{result.depth_range[1]:.2f} m, "
          f"{100 * result.valid_fraction:.1f}% valid, {result.points_per_frame} points per frame")
    print(f"demo: end-to-end latency (publish -> depth received) median {np.median(lat):.1f} ms, "
          f"max {np.max(lat):.1f} ms over {len(result.latency_ms)} frames")
    print(f"demo: wrote {out_dir / 'outputs'} (rosbag2, MCAP) and {out_dir / 'preview.png'}")
