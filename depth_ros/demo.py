"""The demo (`make demo`): the bundled RealSense D435 sample played into a live depth_node over DDS.

It starts `depth_node` as its own process (params file + remaps, as a user would), publishes the
bag's colour image and CameraInfo on live topics, records the node's outputs into a rosbag2 and
writes a preview PNG (input | coloured depth | point cloud from an oblique viewpoint).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from depth_ros import codecs
from depth_ros.bagio import BagWriter, read_raw
from depth_ros.colorize import colorize_depth
from depth_ros.dds import local_ros_env
from depth_ros.models import package_file

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
    """depth_node as a user runs it: params file + remaps + namespace."""
    args = [sys.executable, "-m", "depth_ros.node", "--ros-args", "--params-file", str(params_file),
            "-r", f"__ns:={CAMERA_NS}",
            "-r", f"image:={CAMERA_NS}/color/image_raw", "-r", f"camera_info:={CAMERA_NS}/color/camera_info"]
    if model is not None:
        args += ["-p", f"model:={model}"]
    return args + (extra or [])


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
    domain_id = domain_id if domain_id is not None else 40 + os.getpid() % 50
    env = local_ros_env(domain_id)
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY", "ROS_DOMAIN_ID",
                                           "RMW_IMPLEMENTATION", "FASTDDS_DEFAULT_PROFILES_FILE")})
    params = package_file("config/depth.yaml")
    if params is None:
        raise FileNotFoundError("config/depth.yaml is not installed with depth_ros")

    messages = {m.topic: m for m in read_raw(sample_bag(), [SAMPLE_IMAGE_TOPIC, SAMPLE_INFO_TOPIC])}
    bag_path = out_dir / "outputs"
    if bag_path.exists():
        import shutil

        shutil.rmtree(bag_path)

    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    process = subprocess.Popen(node_command(params, model), env=env)
    result = DemoResult()
    rclpy.init()
    player = rclpy.create_node("depth_demo")
    image_msg = deserialize_message(messages[SAMPLE_IMAGE_TOPIC].data, Image)
    info_msg = deserialize_message(messages[SAMPLE_INFO_TOPIC].data, CameraInfo)
    pub_image = player.create_publisher(Image, f"{CAMERA_NS}/color/image_raw", qos_profile_sensor_data)
    pub_info = player.create_publisher(CameraInfo, f"{CAMERA_NS}/color/camera_info", qos_profile_sensor_data)
    received: dict[str, list[tuple[int, bytes]]] = {topic: [] for topic in OUTPUTS}
    sent_at: dict[int, float] = {}
    types = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CameraInfo": CameraInfo,
             "sensor_msgs/msg/PointCloud2": PointCloud2}

    def recorder(topic: str):  # noqa: ANN202 - closure factory
        def on_message(data: bytes) -> None:
            received[topic].append((time.time_ns(), bytes(data)))
            if topic.endswith("/depth"):
                msg = deserialize_message(data, Image)
                stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
                if stamp in sent_at:
                    result.latency_ms.append((time.perf_counter() - sent_at.pop(stamp)) * 1e3)
        return on_message

    for topic, msgtype in OUTPUTS.items():
        player.create_subscription(types[msgtype], topic, recorder(topic), qos_profile_sensor_data, raw=True)
    try:
        deadline = time.monotonic() + timeout_s
        while pub_image.get_subscription_count() == 0 or pub_info.get_subscription_count() == 0 or \
                any(player.count_publishers(t) == 0 for t in OUTPUTS):
            if process.poll() is not None:
                raise RuntimeError(f"depth_node exited with code {process.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise TimeoutError("depth_node did not come up on DDS in time")
            rclpy.spin_once(player, timeout_sec=0.1)
        time.sleep(0.5)  # let the node's subscriptions match ours in both directions
        base = image_msg.header.stamp.sec * 10**9 + image_msg.header.stamp.nanosec
        period = 1.0 / rate_hz
        for i in range(loops):
            # Like `ros2 bag play --loop`, but each loop gets its own stamp so outputs stay distinct.
            stamp = base + int(i * period * 1e9)
            image_msg.header.stamp.sec, image_msg.header.stamp.nanosec = divmod(stamp, 10**9)
            info_msg.header.stamp = image_msg.header.stamp
            pub_info.publish(info_msg)
            sent_at[stamp] = time.perf_counter()
            pub_image.publish(image_msg)
            result.frames_in += 1
            end = time.monotonic() + period
            while time.monotonic() < end:
                rclpy.spin_once(player, timeout_sec=0.01)
        end = time.monotonic() + 5.0
        while time.monotonic() < end and len(received[f"{CAMERA_NS}/points"]) < loops:
            rclpy.spin_once(player, timeout_sec=0.05)
    finally:
        player.destroy_node()
        rclpy.shutdown()
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()

    with BagWriter(bag_path) as writer:
        writer.write(SAMPLE_IMAGE_TOPIC, "sensor_msgs/msg/Image", messages[SAMPLE_IMAGE_TOPIC].timestamp_ns,
                     messages[SAMPLE_IMAGE_TOPIC].data)
        for topic, msgtype in OUTPUTS.items():
            for timestamp, data in received[topic]:
                writer.write(topic, msgtype, timestamp, data)
    result.counts = {topic: len(items) for topic, items in received.items()}
    if not received[f"{CAMERA_NS}/depth"] or not received[f"{CAMERA_NS}/points"]:
        raise RuntimeError(f"depth_node published nothing usable: {result.counts}")

    depth = codecs.image_msg_to_array(deserialize_message(received[f"{CAMERA_NS}/depth"][-1][1], Image))
    cloud = deserialize_message(received[f"{CAMERA_NS}/points"][-1][1], PointCloud2)
    xyz, _ = codecs.cloud_msg_to_arrays(cloud)
    valid = np.isfinite(depth)
    result.valid_fraction = float(valid.mean())
    if valid.any():
        result.depth_range = (float(depth[valid].min()), float(depth[valid].max()))
    result.points_per_frame = int(np.isfinite(xyz[:, :, 2]).sum())
    rgb = codecs.image_to_rgb(image_msg)
    write_preview(out_dir / "preview.png", rgb, depth, xyz)
    return result


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
    print(f"demo: {result.frames_in} frames in; outputs {result.counts}")
    print(f"demo: depth {result.depth_range[0]:.2f}..{result.depth_range[1]:.2f} m, "
          f"{100 * result.valid_fraction:.1f}% valid, {result.points_per_frame} points per frame")
    print(f"demo: end-to-end latency (publish -> depth received) median {np.median(lat):.1f} ms, "
          f"max {np.max(lat):.1f} ms over {len(result.latency_ms)} frames")
    print(f"demo: wrote {out_dir / 'outputs'} (rosbag2, MCAP) and {out_dir / 'preview.png'}")
