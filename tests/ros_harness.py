"""Test harness: a real depth_node process over Fast DDS, driven by a real rclpy client node.

- `start_node(...)` runs `python -m depth_ros.ros.node --ros-args --params-file config/depth.yaml ...`
  in its own process, in a namespace of its own, with DDS kept on this machine.
- `Client` publishes Image/CompressedImage + CameraInfo and collects the node's outputs by stamp.
No ROS piece is mocked.

Each run has a ROS domain of its own (`reserve_domain_id`), and everything the harness writes (node logs, the
localhost Fast DDS profile) lies in one temporary directory of the run's own, removed when the run exits.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
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
from rcl_interfaces.srv import GetParameters
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from depth_ros.ros.dds import local_ros_env, reserve_domain_id

REPO = Path(__file__).resolve().parent.parent
PARAMS_FILE = REPO / "config" / "depth.yaml"
# A domain of this test run's own (an flock held until the run exits): concurrent runs on one machine, the
# demo and the benchmarks never hear each other. DEPTH_ROS_TEST_DOMAIN forces one.
DOMAIN_ID = int(os.environ.get("DEPTH_ROS_TEST_DOMAIN") or reserve_domain_id())
RUN_DIR = Path(tempfile.mkdtemp(prefix="depth_ros_tests_"))
atexit.register(shutil.rmtree, RUN_DIR, True)  # after the nodes and tools it started have exited
_namespaces = itertools.count()


def _dds_env() -> dict[str, str]:
    """The DDS variables of `local_ros_env`, with its profile copy moved into RUN_DIR (made once per run)."""
    env = local_ros_env(DOMAIN_ID, base={})
    profile = RUN_DIR / "fastdds_localhost.xml"
    shutil.move(env["FASTDDS_DEFAULT_PROFILES_FILE"], profile)
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    return env


# The nodes and tools the tests start run with the shipped profile (bound to localhost).
DDS_ENV = _dds_env()


def _client_dds_env() -> dict[str, str]:
    """For this process (the tests' client): the same profile, its writers sending a heartbeat every 20 ms
    unless `local_ros_env`'s profile sets its writers' timing already.

    A reliable reader acknowledges a sample when the writer's next heartbeat asks it to, and Fast DDS's
    default period is 3 s: `Publisher.wait_for_all_acked` would take up to 3 s per message."""
    source = Path(DDS_ENV["FASTDDS_DEFAULT_PROFILES_FILE"])
    writer = ("    <data_writer profile_name=\"depth_ros_tests_client\" is_default_profile=\"true\">\n"
              "      <times><heartbeat_period><sec>0</sec><nanosec>20000000</nanosec></heartbeat_period></times>\n"
              "    </data_writer>\n  </profiles>")
    text = source.read_text()
    if "<data_writer" in text:  # the shipped profile sets its writers' timing itself
        return dict(DDS_ENV)
    if text.count("</profiles>") != 1:
        raise ValueError(f"{source}: expected one </profiles>")
    profile = RUN_DIR / "fastdds_localhost_client.xml"
    profile.write_text(text.replace("  </profiles>", writer) if "  </profiles>" in text
                       else text.replace("</profiles>", writer))
    return {**DDS_ENV, "FASTDDS_DEFAULT_PROFILES_FILE": str(profile)}


CLIENT_DDS_ENV = _client_dds_env()


def ros_env(domain_id: int = DOMAIN_ID) -> dict[str, str]:
    """This process's environment with DDS kept on this machine, in ``domain_id`` (a tool's own domain)."""
    return {**os.environ, **DDS_ENV, "ROS_DOMAIN_ID": str(domain_id)}


def node_env() -> dict[str, str]:
    env = ros_env()
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
    command = (executable or [sys.executable, "-m", "depth_ros.ros.node"])
    command = command + node_args(params, params_file, remaps, namespace)
    log = RUN_DIR / f"depth_node{namespace.replace('/', '_')}.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, env=node_env(), stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    return NodeProcess(namespace, process, log)


def run_node_to_exit(params: dict[str, Any] | None = None, params_file: Path | None = PARAMS_FILE,
                     timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run depth_node expecting it to exit by itself (configuration errors)."""
    command = [sys.executable, "-m", "depth_ros.ros.node", *node_args(params, params_file)]
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
    # More inputs of the node, name -> message type (e.g. {"reference_depth": Image}); their publishers are
    # `pubs[name]`, made here with the others, i.e. before the node's subscriptions exist, which then match
    # them when they are created (a publisher made later may not be matched on the node's side yet).
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[int, Outputs] = field(default_factory=dict)
    diagnostics: list[DiagnosticArray] = field(default_factory=list)
    # A camera of a node with `cameras`: its topics are <namespace>/<camera>/image, ..., the node is still
    # <namespace>/depth_node, and its diagnostics status is the one named "... (<camera>)".
    camera: str = ""
    _extra_topics: list[str] = field(default_factory=list, init=False, repr=False)

    @property
    def topics(self) -> str:
        return f"{self.namespace}/{self.camera}" if self.camera else self.namespace

    def __post_init__(self) -> None:
        q = qos(self.reliable)
        ns = self.topics
        image_type = CompressedImage if self.compressed else Image
        image_topic = f"{ns}/image/compressed" if self.compressed else f"{ns}/image"
        self.pub_image = self.node.create_publisher(image_type, image_topic, q)
        self.pub_info = self.node.create_publisher(CameraInfo, f"{ns}/camera_info", q)
        self.pubs = {name: self.node.create_publisher(msg_type, f"{ns}/{name}", q)
                     for name, msg_type in self.inputs.items()}
        self._subs = [
            self.node.create_subscription(Image, f"{ns}/depth", self._store("depth"), q),
            self.node.create_subscription(CameraInfo, f"{ns}/depth/camera_info", self._store("camera_info"), q),
            self.node.create_subscription(PointCloud2, f"{ns}/points", self._store("points"), q),
            self.node.create_subscription(Image, f"{ns}/depth/colored", self._store("colored"), q),
            self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10),
        ]

    def add_subscription(self, msg_type: Any, name: str, callback: Any, qos_profile: QoSProfile | None = None) -> Any:
        """Subscribe to another output ``<namespace>/<name>`` (e.g. 'scan'); call `wait_ready` again before
        sending, so that the node's writer is known to match it."""
        topic = f"{self.topics}/{name}"
        sub = self.node.create_subscription(msg_type, topic, callback, qos_profile or qos(self.reliable))
        self._subs.append(sub)
        self._extra_topics.append(topic)
        return sub

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

    def wait_ready(self, process: NodeProcess, timeout: float = 30.0, node_name: str = "depth_node") -> None:
        """Until both directions are matched on DDS (or the node died), checked, never slept on:

        (a) the node's image, CameraInfo (and `inputs`) subscriptions matched our publishers
            (``get_subscription_count``);
        (b) the node's output publishers are advertised, and (c) each has a QoS our subscription matches
            (``get_publishers_info_by_topic``: Humble's Subscription has no ``get_publisher_count``);
        (d) a real round trip, `_round_trip`: proof that the node's writers have matched our readers.
        The node's subscriptions are created after it discovered our (earlier) publishers, so they match
        them at creation; the first `send` then confirms the whole data path."""
        deadline = time.monotonic() + timeout
        outputs = [f"{self.topics}/{t}" for t in ("depth", "depth/camera_info", "points", "depth/colored")]
        outputs += self._extra_topics
        inputs = known = False
        while time.monotonic() < deadline:
            self._check_alive(process)
            inputs = all(pub.get_subscription_count() > 0
                         for pub in (self.pub_image, self.pub_info, *self.pubs.values()))
            known = all(self._matched_publishers(topic) for topic in outputs)
            if inputs and known:
                self._round_trip(process, node_name, deadline)
                return
            rclpy.spin_once(self.node, timeout_sec=0.05)
        raise AssertionError(f"depth_node never matched on DDS within {timeout}s (inputs matched: {inputs}, "
                             f"outputs known: {known}):\n{process.output()}")

    def _round_trip(self, process: NodeProcess, node_name: str, deadline: float) -> None:
        """Ask the node for a parameter through a service client made now, after all our subscriptions.

        DDS announces a participant's readers in creation order over one reliable discovery channel, and the
        node matches them in that order: an answer on this client's (newest) reply reader proves that the node
        has matched every reader we created before it, i.e. its output writers send to us. A request lost
        while the node's request reader is still matching ours is asked again."""
        client = self.node.create_client(GetParameters, f"{self.namespace}/{node_name}/get_parameters")
        try:
            pending: list[Any] = []
            asked = -1.0
            while time.monotonic() < deadline:
                self._check_alive(process)
                if any(future.done() and future.result() is not None for future in pending):
                    return
                if client.service_is_ready() and time.monotonic() - asked > 0.5:
                    pending.append(client.call_async(GetParameters.Request(names=["model"])))
                    asked = time.monotonic()
                rclpy.spin_once(self.node, timeout_sec=0.02)
        finally:
            self.node.destroy_client(client)
        raise AssertionError(f"{self.namespace}/{node_name} never answered a parameter request:\n{process.output()}")

    @staticmethod
    def _check_alive(process: NodeProcess) -> None:
        if process.process.poll() is not None:
            raise AssertionError(f"depth_node exited with {process.process.returncode}:\n{process.output()}")

    def publish_acked(self, publisher: Any, msg: Any, timeout: float = 10.0) -> None:
        """Publish ``msg`` and, for a reliable publisher, wait until every matched reader acknowledged it (a
        reference depth or cloud that must be in the node before the frame that uses it)."""
        publisher.publish(msg)
        self._acked(publisher, timeout)

    def _acked(self, publisher: Any, timeout: float = 10.0) -> None:
        """Wait until every matched reliable reader acknowledged what ``publisher`` wrote (no-op for best effort:
        then nothing acknowledges, and `send` repeats instead)."""
        if publisher.qos_profile.reliability != ReliabilityPolicy.RELIABLE:
            return
        if not publisher.wait_for_all_acked(Duration(seconds=timeout)):
            raise AssertionError(f"{publisher.topic_name}: not acknowledged by its readers within {timeout}s")

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
        statuses = self.diagnostics[-1].status
        status = next((st for st in statuses if st.name.endswith(f"({self.camera})")), None) if self.camera \
            else statuses[0]
        if status is None:
            raise AssertionError(f"no diagnostics status of camera {self.camera!r}: {[st.name for st in statuses]}")
        values = {kv.key: kv.value for kv in status.values}
        level = status.level
        values["_level"] = str(int.from_bytes(level, "little") if isinstance(level, bytes) else level)
        values["_message"] = status.message
        return values

    def close(self) -> None:
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        for pub in (self.pub_image, self.pub_info, *self.pubs.values()):
            self.node.destroy_publisher(pub)


def depth_array(msg: Image) -> np.ndarray:
    from depth_ros.ros.codecs import image_msg_to_array

    return image_msg_to_array(msg)
