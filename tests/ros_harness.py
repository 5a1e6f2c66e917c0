"""Test harness: a real depth_node process over Fast DDS, driven by a real rclpy client node.

- `start_node(...)` runs `python -m depth_ros.node --ros-args --params-file config/depth.yaml ...`
  in its own process, in a namespace of its own, with DDS kept on this machine.
- `Client` publishes Image/CompressedImage + CameraInfo and collects the node's outputs by stamp.
No ROS piece is mocked.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from depth_ros.dds import local_ros_env, reserve_domain_id

REPO = Path(__file__).resolve().parent.parent
PARAMS_FILE = REPO / "config" / "depth.yaml"
# A domain of this test run's own (an flock held until the run exits): concurrent runs on one machine, the
# demo and the benchmarks never hear each other. DEPTH_ROS_TEST_DOMAIN forces one.
DOMAIN_ID = int(os.environ.get("DEPTH_ROS_TEST_DOMAIN") or reserve_domain_id())
_namespaces = itertools.count()


def node_env() -> dict[str, str]:
    env = local_ros_env(DOMAIN_ID)
    env["PYTHONUNBUFFERED"] = "1"
    env["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
    return env


@dataclass
class NodeProcess:
    namespace: str
    process: subprocess.Popen
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def node_args(params: dict[str, Any] | None = None, params_file: Path | None = PARAMS_FILE,
              remaps: dict[str, str] | None = None, namespace: str | None = None) -> list[str]:
    args = ["--ros-args"]
    if params_file is not None:
        args += ["--params-file", str(params_file)]
    if namespace is not None:
        args += ["-r", f"__ns:={namespace}"]
    for key, value in (remaps or {}).items():
        args += ["-r", f"{key}:={value}"]
    for key, value in (params or {}).items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        args += ["-p", f"{key}:={value}"]
    return args


def start_node(params: dict[str, Any] | None = None, params_file: Path | None = PARAMS_FILE,
               remaps: dict[str, str] | None = None, executable: list[str] | None = None) -> NodeProcess:
    """Start depth_node in a fresh namespace (so tests never hear each other's nodes)."""
    namespace = f"/t{os.getpid()}_{next(_namespaces)}"
    command = (executable or [sys.executable, "-m", "depth_ros.node"])
    command = command + node_args(params, params_file, remaps, namespace)
    log = Path(tempfile.mkstemp(prefix="depth_node_", suffix=".log")[1])
    with log.open("w") as out:
        process = subprocess.Popen(command, env=node_env(), stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    return NodeProcess(namespace, process, log)


def run_node_to_exit(params: dict[str, Any] | None = None, params_file: Path | None = PARAMS_FILE,
                     timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run depth_node expecting it to exit by itself (configuration errors)."""
    command = [sys.executable, "-m", "depth_ros.node", *node_args(params, params_file)]
    return subprocess.run(command, env=node_env(), capture_output=True, text=True, timeout=timeout, cwd=REPO)


def qos(reliable: bool = True, depth: int = 5) -> QoSProfile:
    """The tests' QoS: reliable by default (matches the node's inputs either way and its reliable outputs, and
    nothing is lost unless a test is about best effort)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, durability=DurabilityPolicy.VOLATILE,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)


@dataclass
class Outputs:
    depth: Image | None = None
    camera_info: CameraInfo | None = None
    points: PointCloud2 | None = None
    colored: Image | None = None

    def complete(self, wanted: tuple[str, ...]) -> bool:
        return all(getattr(self, name) is not None for name in wanted)


ALL_OUTPUTS = ("depth", "camera_info", "points", "colored")


@dataclass
class Client:
    """The test's own rclpy node, talking to one depth_node's namespace."""

    node: Node
    namespace: str
    reliable: bool = True
    compressed: bool = False
    outputs: dict[int, Outputs] = field(default_factory=dict)
    diagnostics: list[DiagnosticArray] = field(default_factory=list)

    def __post_init__(self) -> None:
        q = qos(self.reliable)
        ns = self.namespace
        image_type = CompressedImage if self.compressed else Image
        image_topic = f"{ns}/image/compressed" if self.compressed else f"{ns}/image"
        self.pub_image = self.node.create_publisher(image_type, image_topic, q)
        self.pub_info = self.node.create_publisher(CameraInfo, f"{ns}/camera_info", q)
        self._subs = [
            self.node.create_subscription(Image, f"{ns}/depth", self._store("depth"), q),
            self.node.create_subscription(CameraInfo, f"{ns}/depth/camera_info", self._store("camera_info"), q),
            self.node.create_subscription(PointCloud2, f"{ns}/points", self._store("points"), q),
            self.node.create_subscription(Image, f"{ns}/depth/colored", self._store("colored"), q),
            self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10),
        ]

    def _store(self, name: str):  # noqa: ANN202
        def callback(msg: Any) -> None:
            key = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            setattr(self.outputs.setdefault(key, Outputs()), name, msg)
        return callback

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        if any(status.name.startswith(self.namespace + "/") for status in msg.status):
            self.diagnostics.append(msg)

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.01)

    def _matched_publishers(self, topic: str) -> bool:
        """Whether this participant knows a publisher of ``topic`` its subscription can match (QoS-wise)."""
        mine = ReliabilityPolicy.RELIABLE if self.reliable else ReliabilityPolicy.BEST_EFFORT
        offered = [info.qos_profile.reliability for info in self.node.get_publishers_info_by_topic(topic)]
        return any(policy == ReliabilityPolicy.RELIABLE or mine == ReliabilityPolicy.BEST_EFFORT
                   for policy in offered)

    def _inputs_reliable(self) -> bool:
        """Whether the node's image subscription is reliable (then delivery is acknowledged, never repeated)."""
        topic = self.pub_image.topic_name
        infos = self.node.get_subscriptions_info_by_topic(topic)
        return self.reliable and bool(infos) and all(
            info.qos_profile.reliability == ReliabilityPolicy.RELIABLE for info in infos)

    def wait_ready(self, process: NodeProcess, timeout: float = 30.0) -> None:
        """Until the node's subscriptions matched our publishers and our subscriptions know the node's publishers
        (or it died). The node's writers are created after it discovered our (earlier) readers, so once we see
        them, they have matched us too: no settling sleep."""
        deadline = time.monotonic() + timeout
        outputs = ("depth", "depth/camera_info", "points", "depth/colored")
        while time.monotonic() < deadline:
            if process.process.poll() is not None:
                raise AssertionError(f"depth_node exited with {process.process.returncode}:\n{process.output()}")
            matched = (self.pub_image.get_subscription_count() > 0 and self.pub_info.get_subscription_count() > 0
                       and all(self._matched_publishers(f"{self.namespace}/{t}") for t in outputs))
            if matched:
                return
            rclpy.spin_once(self.node, timeout_sec=0.05)
        raise AssertionError(f"depth_node never matched on DDS within {timeout}s:\n{process.output()}")

    def _acked(self, publisher: Any, timeout: float = 10.0) -> None:
        """Wait until every matched reliable reader acknowledged what ``publisher`` wrote (no-op for best effort)."""
        if self.reliable:
            publisher.wait_for_all_acked(Duration(seconds=timeout))

    def publish(self, image: Image | CompressedImage, info: CameraInfo | None, stamp_ns: int) -> None:
        """Publish one frame stamped ``stamp_ns``, its CameraInfo (if any) first and acknowledged first: the node
        holds the CameraInfo before the image arrives."""
        image.header.stamp.sec, image.header.stamp.nanosec = divmod(stamp_ns, 10**9)
        if info is not None:
            info.header.stamp = image.header.stamp
            self.pub_info.publish(info)
            self._acked(self.pub_info)
        self.pub_image.publish(image)
        self._acked(self.pub_image)

    def send(self, image: Image | CompressedImage, info: CameraInfo | None, stamp_ns: int,
             wanted: tuple[str, ...] = ALL_OUTPUTS, timeout: float = 20.0, repeat_s: float = 1.0) -> Outputs:
        """Publish one frame (CameraInfo first) with ``stamp_ns`` and wait for the outputs with that stamp.

        When the node's inputs are best effort (its shipped default), the frame is published again (same stamp,
        CameraInfo first) every ``repeat_s`` until its outputs arrive: best effort may lose a sample. The node's
        counters (frames_received, dropped_superseded) may then count the repeats; tests that count frames use
        reliable inputs, where every frame is acknowledged and published exactly once."""
        repeat = not self._inputs_reliable()
        self.publish(image, info, stamp_ns)
        deadline = time.monotonic() + timeout
        again = time.monotonic() + repeat_s
        while time.monotonic() < deadline:
            got = self.outputs.get(stamp_ns)
            if got is not None and got.complete(wanted):
                return got
            if repeat and time.monotonic() > again:
                self.publish(image, info, stamp_ns)
                again = time.monotonic() + repeat_s
            rclpy.spin_once(self.node, timeout_sec=0.02)
        have = self.outputs.get(stamp_ns)
        raise AssertionError(f"no complete output for stamp {stamp_ns} within {timeout}s (have: {have})")

    def latest_diagnostics(self, timeout: float = 5.0) -> dict[str, str]:
        """Key/values of the next /diagnostics message from this node."""
        self.diagnostics.clear()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.diagnostics:
            rclpy.spin_once(self.node, timeout_sec=0.05)
        if not self.diagnostics:
            raise AssertionError("no /diagnostics from the node")
        status = self.diagnostics[-1].status[0]
        values = {kv.key: kv.value for kv in status.values}
        level = status.level
        values["_level"] = str(int.from_bytes(level, "little") if isinstance(level, bytes) else level)
        values["_message"] = status.message
        return values

    def close(self) -> None:
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        self.node.destroy_publisher(self.pub_image)
        self.node.destroy_publisher(self.pub_info)


def depth_array(msg: Image) -> np.ndarray:
    from depth_ros.codecs import image_msg_to_array

    return image_msg_to_array(msg)
