"""End-to-end benchmark through DDS: publisher -> depth_node (its own process) -> subscriber.

Measures what a robot sees: per-frame latency from publishing an image to receiving its depth
(and cloud), throughput, frames lost, and — for soak runs — the node process's resident memory,
threads and open file descriptors over time. Everything stays on this machine (local_ros_env).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from depth_ros.dds import local_ros_env
from depth_ros.models import package_file


@dataclass
class E2EConfig:
    model: str
    width: int = 640
    height: int = 480
    rate_hz: float = 30.0
    frames: int = 300
    reliable: bool = False  # the measuring subscriber's reliability (the node runs its shipped QoS defaults)
    driver_reliable: bool = True  # the image publisher's reliability (camera drivers publish reliable, REP-2003)
    slow_subscriber: str = ""  # "" | "slow" (a reliable subscriber taking SLOW_CALLBACK_S per message) | "stopped"
    cloud_color: bool = False
    use_profile: bool = True  # the shipped Fast DDS large-data profile
    outputs: tuple[str, ...] = ("depth", "points")  # what the subscriber asks for
    domain_id: int = 0
    sample_process_every: int = 0  # frames between /proc samples of the node (0 = never)


@dataclass
class E2EResult:
    config: dict[str, Any]
    sent: int = 0
    received: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    throughput_hz: float = 0.0
    delivered_fraction: float = 0.0
    node_diagnostics: dict[str, str] = field(default_factory=dict)
    process_samples: list[dict[str, float]] = field(default_factory=list)
    slow_received: dict[str, int] = field(default_factory=dict)  # what the slow subscriber took, per output
    shutdown_s: float = float("nan")  # SIGINT -> the node's process has exited
    exit_code: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentiles(values_ms: list[float]) -> dict[str, float]:
    if not values_ms:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "mean": float("nan"), "n": 0}
    p50, p95, p99 = np.percentile(values_ms, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(np.mean(values_ms)),
            "n": len(values_ms)}


def process_sample(pid: int) -> dict[str, float]:
    """Resident memory (MiB), threads and open file descriptors of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_kib = float(fields["VmRSS"].split()[0])
    return {
        "rss_mib": rss_kib / 1024.0,
        "threads": float(fields["Threads"].strip()),
        "fds": float(len(os.listdir(f"/proc/{pid}/fd"))),
    }


def run_e2e(config: E2EConfig) -> E2EResult:
    """Start a node, stream synthetic frames at ``rate_hz``, collect outputs by stamp."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    env = local_ros_env(config.domain_id)
    if not config.use_profile:
        # Fast DDS's default transports; discovery stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE).
        env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
        os.environ.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("ROS_", "RMW_", "FASTDDS_"))})
    params = package_file("config/depth.yaml")
    namespace = f"/bench{os.getpid()}"
    log = Path(tempfile.mkstemp(prefix="depth_bench_node_", suffix=".log")[1])
    # The node on its shipped QoS (best-effort inputs, reliable keep-last-1 outputs): what a user runs.
    command = [sys.executable, "-m", "depth_ros.node", "--ros-args", "--params-file", str(params),
               "-r", f"__ns:={namespace}", "-p", f"model:={config.model}",
               "-p", f"cloud_color:={str(config.cloud_color).lower()}", "--log-level", "warn"]
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    result = E2EResult(config=asdict(config))
    rclpy.init()
    node = rclpy.create_node("depth_ros_bench")
    def profile(reliable: bool) -> QoSProfile:
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, durability=DurabilityPolicy.VOLATILE,
                          reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)

    qos = profile(config.reliable)
    pub_image = node.create_publisher(Image, f"{namespace}/image", profile(config.driver_reliable))
    pub_info = node.create_publisher(CameraInfo, f"{namespace}/camera_info", profile(config.driver_reliable))
    slow: subprocess.Popen | None = None
    slow_log = Path(tempfile.mkstemp(prefix="depth_bench_slow_", suffix=".log")[1])
    if config.slow_subscriber:
        with slow_log.open("w") as out:
            slow = subprocess.Popen([sys.executable, "-m", "depth_ros.bench_e2e", "slow-subscriber", namespace,
                                     str(SLOW_CALLBACK_S)], env=env, stdout=out, stderr=subprocess.STDOUT)
    sent_at: dict[int, float] = {}
    latencies: dict[str, list[float]] = {name: [] for name in config.outputs}
    topics = {"depth": (Image, "depth"), "points": (PointCloud2, "points"), "colored": (Image, "depth/colored"),
              "camera_info": (CameraInfo, "depth/camera_info")}
    last_diag: list[DiagnosticArray] = []

    def on_output(name: str):  # noqa: ANN202 - closure factory
        def callback(msg: Any) -> None:
            now = time.perf_counter()
            key = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            start = sent_at.get(key)
            if start is not None:
                latencies[name].append((now - start) * 1e3)
        return callback

    for name in config.outputs:
        msg_type, topic = topics[name]
        node.create_subscription(msg_type, f"{namespace}/{topic}", on_output(name), qos)
    node.create_subscription(DiagnosticArray, "/diagnostics",
                             lambda m: last_diag.append(m) if any(s.name.startswith(namespace + "/")
                                                                  for s in m.status) else None, 10)
    image, info = synthetic_frame(config.width, config.height)
    try:
        deadline = time.monotonic() + 60.0
        while (pub_image.get_subscription_count() == 0 or pub_info.get_subscription_count() == 0
               or any(node.count_publishers(f"{namespace}/{topics[n][1]}") == 0 for n in config.outputs)):
            if process.poll() is not None:
                raise RuntimeError(f"depth_node exited with {process.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError("depth_node did not come up on DDS")
            rclpy.spin_once(node, timeout_sec=0.05)
        if slow is not None:  # the slow subscriber is attached (both its subscriptions) before the first frame
            while any(node.count_subscribers(f"{namespace}/{t}") < 2 for t in ("depth", "points")):
                if slow.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the slow subscriber did not come up:\n{slow_log.read_text()}")
                rclpy.spin_once(node, timeout_sec=0.05)
            _spin_for(node, 0.5)
            if config.slow_subscriber == "stopped":
                slow.send_signal(signal.SIGSTOP)  # gone, but still matched: its reader never acknowledges
        _spin_for(node, 0.5)
        pub_info.publish(info)
        period = 1.0 / config.rate_hz
        start = time.perf_counter()
        for i in range(config.frames):
            target = start + i * period
            while True:
                remaining = target - time.perf_counter()
                if remaining <= 0:
                    break
                rclpy.spin_once(node, timeout_sec=min(remaining, 0.005))
            stamp = 10**9 + i * 1000
            image.header.stamp.sec, image.header.stamp.nanosec = divmod(stamp, 10**9)
            if i % 30 == 0:
                info.header.stamp = image.header.stamp
                pub_info.publish(info)
            sent_at[stamp] = time.perf_counter()
            pub_image.publish(image)
            result.sent += 1
            if config.sample_process_every and i % config.sample_process_every == 0:
                result.process_samples.append({"frame": float(i), **process_sample(process.pid)})
        _spin_for(node, 1.0)
        elapsed = time.perf_counter() - start
        last_diag.clear()
        _spin_for(node, 1.5)
        if last_diag:
            status = last_diag[-1].status[0]
            result.node_diagnostics = {kv.key: kv.value for kv in status.values}
        if config.sample_process_every:
            result.process_samples.append({"frame": float(config.frames), **process_sample(process.pid)})
    finally:
        if slow is not None:
            slow.send_signal(signal.SIGCONT)
            slow.send_signal(signal.SIGINT)
            try:
                slow.wait(timeout=20)
            except subprocess.TimeoutExpired:
                slow.kill()
                slow.wait()
            for line in slow_log.read_text().splitlines():
                if line.startswith("slow subscriber received"):
                    result.slow_received = {k: int(v) for k, v in
                                            (item.split("=") for item in line.split(":", 1)[1].split())}
        node.destroy_node()
        rclpy.shutdown()
        signalled = time.perf_counter()
        process.send_signal(signal.SIGINT)
        try:
            result.exit_code = process.wait(timeout=10)
            result.shutdown_s = time.perf_counter() - signalled
        except subprocess.TimeoutExpired:
            process.kill()
    result.received = {name: len(values) for name, values in latencies.items()}
    result.latency_ms = {name: percentiles(values) for name, values in latencies.items()}
    first = config.outputs[0]
    result.throughput_hz = result.received[first] / elapsed if elapsed > 0 else 0.0
    result.delivered_fraction = result.received[first] / max(1, result.sent)
    return result


SLOW_CALLBACK_S = 0.5  # the slow subscriber's time per message: 15 x a 30 Hz frame period


def slow_subscriber_main(namespace: str, callback_s: float) -> int:
    """A reliable subscriber of ``namespace``/depth and /points that takes ``callback_s`` per message (a consumer
    that cannot keep up); prints what it took when interrupted."""
    import rclpy
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, PointCloud2

    rclpy.init()
    node = rclpy.create_node("depth_ros_bench_slow_subscriber")
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, durability=DurabilityPolicy.VOLATILE,
                     reliability=ReliabilityPolicy.RELIABLE)  # RViz2's default reliability
    counts = {"depth": 0, "points": 0}

    def slow(name: str) -> Any:
        def callback(msg: Any) -> None:
            counts[name] += 1
            time.sleep(callback_s)
        return callback

    node.create_subscription(Image, f"{namespace}/depth", slow("depth"), qos)
    node.create_subscription(PointCloud2, f"{namespace}/points", slow("points"), qos)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        print("slow subscriber received: " + " ".join(f"{k}={v}" for k, v in counts.items()), flush=True)
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


def _spin_for(node: Any, seconds: float) -> None:
    import rclpy

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.01)


def synthetic_frame(width: int, height: int) -> tuple[Any, Any]:
    """A textured rgb8 Image and a matching CameraInfo (fx = 0.8 * width)."""
    from sensor_msgs.msg import CameraInfo, Image

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image(height=height, width=width, encoding="rgb8", step=width * 3, is_bigendian=False)
    image.header.frame_id = "camera_optical"
    image.data = rgb.tobytes()
    f = 0.8 * width
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    info.header.frame_id = "camera_optical"
    info.d = [0.0] * 5
    info.k = [f, 0.0, width / 2 - 0.5, 0.0, f, height / 2 - 0.5, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [f, 0.0, width / 2 - 0.5, 0.0, 0.0, f, height / 2 - 0.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    return image, info


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "slow-subscriber":
        sys.exit(slow_subscriber_main(sys.argv[2], float(sys.argv[3])))
    sys.exit(f"usage: python -m depth_ros.bench_e2e slow-subscriber NAMESPACE CALLBACK_S (got {sys.argv[1:]})")
