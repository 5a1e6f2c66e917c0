"""End-to-end benchmark through DDS: publisher -> depth_node (its own process) -> subscriber(s).

Measures what a robot sees: per-frame latency from publishing an image to receiving its depth
(and cloud), throughput, frames lost, and — for soak runs — the node process's resident memory,
threads and open file descriptors over time. Everything stays on this machine (local_ros_env).

The node always runs on its shipped QoS (config/depth.yaml: best-effort input, reliable keep-last-1
outputs, REP-2003); the bench's image publisher is reliable, as a camera driver is. "Reliable" and
"best effort" in a measurement are the SUBSCRIBER's reliability:

- e2e and soak: one subscriber in this process (``E2EConfig.reliable``);
- delivery (``measured_processes``): one reliable and one best-effort subscriber, each its own process
  (``python -m depth_ros.cli.bench_e2e subscribe``), plus optionally a third, reliable, deliberately slow
  one (``slow_subscriber``: ``slow`` = ``slow_callback_s`` per message in its callback; ``stopped`` = the
  same process SIGSTOPped during the stream, gone but still matched). The subscriber processes
  take the serialised message (raw) and read its stamp from the CDR header, so Python
  deserialisation of multi-MB clouds in the bench stays out of the numbers; arrival times are
  CLOCK_MONOTONIC, the same clock the publisher stamps its send times with.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from depth_ros.resources import package_file
from depth_ros.ros.dds import local_ros_env

SLOW_MODES = ("none", "slow", "stopped")
# output name -> (message type name in sensor_msgs.msg, topic relative to the node's namespace)
TOPICS = {"depth": ("Image", "depth"), "points": ("PointCloud2", "points"), "colored": ("Image", "depth/colored"),
          "camera_info": ("CameraInfo", "depth/camera_info")}


@dataclass
class E2EConfig:
    model: str
    width: int = 640
    height: int = 480
    rate_hz: float = 30.0
    frames: int = 300
    reliable: bool = False  # the in-process subscriber's reliability (the node keeps its shipped QoS)
    cloud_color: bool = False
    use_profile: bool = True  # the shipped Fast DDS large-data profile
    outputs: tuple[str, ...] = ("depth", "points")  # what the subscribers ask for
    domain_id: int = 0
    sample_process_every: int = 0  # frames between /proc samples of the node (0 = never)
    # delivery: a reliable and a best-effort subscriber process instead of the in-process subscriber
    measured_processes: bool = False
    slow_subscriber: str = "none"  # none | slow | stopped: one more reliable subscriber process
    slow_callback_s: float = 0.5  # time the slow subscriber spends in its callback, per message
    subscriber_depth: int = 5  # keep-last depth of every bench subscription


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
    shutdown_s: float = float("nan")  # SIGINT -> the node's process has exited
    exit_code: int | None = None
    # measured_processes: per subscriber process ("reliable", "best_effort", "slow"):
    # {"reliability", "callback_s", "received": {output: n}, "latency_ms": {output: percentiles}}
    subscribers: dict[str, dict[str, Any]] = field(default_factory=dict)
    slow_stopped_at_frame: int | None = None  # the frame index at which the slow subscriber was SIGSTOPped
    # The node's output rate while frames were streaming: frames_published between the first and the
    # last /diagnostics message of the stream over their time apart, and its own output_rate_hz (5 s window).
    node_output_rate_hz: float = float("nan")
    node_output_rate_diag_hz: float = float("nan")
    # CPU cores used while the frames streamed: the whole machine (/proc/stat), and per process of the run
    # ("node", "bench", each subscriber); "other" = machine - ours: load from outside the run (a shared VM).
    cpu_cores: dict[str, float] = field(default_factory=dict)
    # [seconds since the first frame was sent, frames_published] of every /diagnostics message of the node
    node_published_timeline: list[list[float]] = field(default_factory=list)

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


def _machine_busy_s() -> float:
    """CPU seconds the machine has been busy since boot (all cores; /proc/stat: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a live process has used; NaN once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_snapshot(pids: dict[str, int]) -> tuple[float, float, dict[str, float]]:
    return _now(), _machine_busy_s(), {name: _process_cpu_s(pid) for name, pid in pids.items()}


def _cpu_cores(before: tuple[float, float, dict[str, float]],
               after: tuple[float, float, dict[str, float]]) -> dict[str, float]:
    span = after[0] - before[0]
    if span <= 0:
        return {}
    cores = {name: (after[2][name] - seconds) / span for name, seconds in before[2].items()}
    cores["machine"] = (after[1] - before[1]) / span
    cores["other"] = cores["machine"] - sum(v for k, v in cores.items() if k != "machine")
    return cores


def _now() -> float:
    """CLOCK_MONOTONIC seconds: one clock for every process on this machine (send and arrival times)."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def _stamp_key(sec: int, nanosec: int) -> int:
    return sec * 10**9 + nanosec


def _cdr_stamp_key(data: bytes) -> int:
    """The header stamp of a serialised message whose first field is std_msgs/Header (after the 4-byte
    CDR encapsulation: int32 sec, uint32 nanosec, in the byte order the encapsulation names)."""
    order = "<" if data[1] & 1 else ">"
    sec, nanosec = struct.unpack_from(order + "iI", data, 4)
    return _stamp_key(sec, nanosec)


@dataclass
class _SubscriberProcess:
    name: str
    reliable: bool
    callback_s: float
    process: subprocess.Popen[bytes]
    result_path: Path
    log_path: Path

    @property
    def ready_path(self) -> Path:
        return self.result_path.with_suffix(".ready")

    def ready(self) -> bool:
        return self.ready_path.exists()

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"bench subscriber '{self.name}' exited with {self.process.returncode}:\n"
                               f"{self.log_path.read_text()}")

    def finish(self, timeout_s: float = 15.0) -> dict[str, list[list[float]]]:
        """Stop it (SIGCONT first, in case it was stopped) and read what it received."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self.result_path.exists():
            raise RuntimeError(f"bench subscriber '{self.name}' wrote no result (exit {self.process.returncode}):\n"
                               f"{self.log_path.read_text()}")
        return json.loads(self.result_path.read_text())["arrivals"]


def _start_subscriber(name: str, reliable: bool, callback_s: float, namespace: str, config: E2EConfig,
                      env: dict[str, str], directory: Path) -> _SubscriberProcess:
    result = directory / f"{name}.json"
    log = directory / f"{name}.log"
    command = [sys.executable, "-m", "depth_ros.cli.bench_e2e", "subscribe", "--namespace", namespace,
               "--reliability", "reliable" if reliable else "best_effort", "--outputs", ",".join(config.outputs),
               "--callback-s", str(callback_s), "--depth", str(config.subscriber_depth), "--result", str(result),
               "--name", name]
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    return _SubscriberProcess(name, reliable, callback_s, process, result, log)


def run_e2e(config: E2EConfig) -> E2EResult:
    """Start a node (and, for delivery, subscriber processes), stream synthetic frames at ``rate_hz``,
    collect outputs by stamp."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs import msg as sensor_msgs
    from sensor_msgs.msg import CameraInfo, Image

    if config.slow_subscriber not in SLOW_MODES:
        raise ValueError(f"slow_subscriber must be one of {SLOW_MODES}, got {config.slow_subscriber!r}")
    if config.slow_subscriber != "none" and not config.measured_processes:
        raise ValueError("a slow subscriber is measured against the subscriber processes (measured_processes)")
    env = local_ros_env(config.domain_id)
    if not config.use_profile:
        # Fast DDS's default transports; discovery stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE).
        # The node and the subscriber processes start without the profile. This process's participant
        # keeps whatever the first run in it had (Fast DDS reads its profiles once): only its image
        # publisher, not the measured node -> subscriber path.
        env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
        os.environ.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("ROS_", "RMW_", "FASTDDS_"))})
    params = package_file("config/depth.yaml")
    namespace = f"/bench{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="depth_bench_"))
    log = work / "node.log"
    # The node on its shipped QoS (config/depth.yaml): best-effort input, reliable keep-last-1 outputs.
    command = [sys.executable, "-m", "depth_ros.ros.node", "--ros-args", "--params-file", str(params),
               "-r", f"__ns:={namespace}", "-p", f"model:={config.model}",
               "-p", f"cloud_color:={str(config.cloud_color).lower()}", "--log-level", "warn"]
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    subscribers: list[_SubscriberProcess] = []
    if config.measured_processes:
        subscribers += [_start_subscriber("reliable", True, 0.0, namespace, config, env, work),
                        _start_subscriber("best_effort", False, 0.0, namespace, config, env, work)]
        if config.slow_subscriber != "none":
            subscribers.append(_start_subscriber("slow", True, config.slow_callback_s, namespace, config, env, work))
    result = E2EResult(config=asdict(config))
    rclpy.init()
    node = rclpy.create_node("depth_ros_bench")
    # The image publisher is reliable, as a camera driver is (REP-2003); the node's input is best effort.
    pub_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, durability=DurabilityPolicy.VOLATILE,
                         reliability=ReliabilityPolicy.RELIABLE)
    sub_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=config.subscriber_depth,
                         durability=DurabilityPolicy.VOLATILE,
                         reliability=ReliabilityPolicy.RELIABLE if config.reliable else ReliabilityPolicy.BEST_EFFORT)
    pub_image = node.create_publisher(Image, f"{namespace}/image", pub_qos)
    pub_info = node.create_publisher(CameraInfo, f"{namespace}/camera_info", pub_qos)
    sent_at: dict[int, float] = {}
    latencies: dict[str, list[float]] = {name: [] for name in config.outputs}
    last_diag: list[DiagnosticArray] = []
    diag_samples: list[tuple[float, dict[str, str]]] = []  # (arrival, values) of every status of our node

    def on_output(name: str):  # noqa: ANN202 - closure factory
        def callback(msg: Any) -> None:
            now = _now()
            start = sent_at.get(_stamp_key(msg.header.stamp.sec, msg.header.stamp.nanosec))
            if start is not None:
                latencies[name].append((now - start) * 1e3)
        return callback

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(namespace + "/"):
                last_diag.append(msg)
                diag_samples.append((_now(), {kv.key: kv.value for kv in status.values}))
                return

    if not config.measured_processes:
        for name in config.outputs:
            type_name, topic = TOPICS[name]
            node.create_subscription(getattr(sensor_msgs, type_name), f"{namespace}/{topic}", on_output(name),
                                     sub_qos)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    image, info = synthetic_frame(config.width, config.height)
    slow = next((s for s in subscribers if s.name == "slow"), None)
    stream_start = stream_end = float("nan")
    try:
        deadline = time.monotonic() + 90.0
        while (pub_image.get_subscription_count() == 0 or pub_info.get_subscription_count() == 0
               or any(node.count_publishers(f"{namespace}/{TOPICS[n][1]}") == 0 for n in config.outputs)
               or not all(s.ready() for s in subscribers)):
            if process.poll() is not None:
                raise RuntimeError(f"depth_node exited with {process.returncode}:\n{log.read_text()}")
            for subscriber in subscribers:
                subscriber.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError("depth_node or the bench subscribers did not come up on DDS")
            rclpy.spin_once(node, timeout_sec=0.05)
        _spin_for(node, 0.5)
        pub_info.publish(info)
        period = 1.0 / config.rate_hz
        stop_at = config.frames // 5 if config.slow_subscriber == "stopped" else -1
        cpu_pids = {"node": process.pid, "bench": os.getpid(), **{s.name: s.process.pid for s in subscribers}}
        cpu_before = _cpu_snapshot(cpu_pids)
        start = time.perf_counter()
        stream_start = _now()
        for i in range(config.frames):
            target = start + i * period
            while True:
                remaining = target - time.perf_counter()
                if remaining <= 0:
                    break
                rclpy.spin_once(node, timeout_sec=min(remaining, 0.005))
            if i == stop_at and slow is not None:
                # Gone but not unmatched: its participant stays alive for DDS until its lease (20 s) expires.
                slow.process.send_signal(signal.SIGSTOP)
                result.slow_stopped_at_frame = i
            stamp = 10**9 + i * 1000
            image.header.stamp.sec, image.header.stamp.nanosec = divmod(stamp, 10**9)
            if i % 30 == 0:
                info.header.stamp = image.header.stamp
                pub_info.publish(info)
            sent_at[stamp] = _now()
            pub_image.publish(image)
            result.sent += 1
            if config.sample_process_every and i % config.sample_process_every == 0:
                result.process_samples.append({"frame": float(i), **process_sample(process.pid)})
        stream_end = _now()
        result.cpu_cores = _cpu_cores(cpu_before, _cpu_snapshot(cpu_pids))
        _spin_for(node, 1.0)
        elapsed = time.perf_counter() - start
        last_diag.clear()
        _spin_for(node, 1.5)
        if last_diag:
            status = next(s for s in last_diag[-1].status if s.name.startswith(namespace + "/"))
            result.node_diagnostics = {kv.key: kv.value for kv in status.values}
        if config.sample_process_every:
            result.process_samples.append({"frame": float(config.frames), **process_sample(process.pid)})
        arrivals = {s.name: s.finish() for s in subscribers}
    finally:
        for subscriber in subscribers:
            if subscriber.process.poll() is None:
                subscriber.process.send_signal(signal.SIGCONT)
                subscriber.process.kill()
                subscriber.process.wait()
        node.destroy_node()
        rclpy.shutdown()
        signalled = time.perf_counter()
        process.send_signal(signal.SIGINT)
        try:
            result.exit_code = process.wait(timeout=10)
            result.shutdown_s = time.perf_counter() - signalled
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(work, ignore_errors=True)
    result.node_published_timeline = [[round(t - stream_start, 3), float(values.get("frames_published", 0))]
                                      for t, values in diag_samples if t >= stream_start - 1.0]
    result.node_output_rate_hz, result.node_output_rate_diag_hz = _stream_output_rate(
        diag_samples, stream_start, stream_end, int(result.node_diagnostics.get("frames_published", 0)))
    for subscriber in subscribers:
        received: dict[str, int] = {}
        latency: dict[str, dict[str, float]] = {}
        for name in config.outputs:
            values = [(arrival - sent_at[int(key)]) * 1e3 for key, arrival in arrivals[subscriber.name][name]
                      if int(key) in sent_at]
            received[name], latency[name] = len(values), percentiles(values)
        result.subscribers[subscriber.name] = {"reliability": "reliable" if subscriber.reliable else "best_effort",
                                               "callback_s": subscriber.callback_s, "received": received,
                                               "latency_ms": latency}
    if config.measured_processes:  # the headline fields: the reliable subscriber process
        result.received = dict(result.subscribers["reliable"]["received"])
        result.latency_ms = dict(result.subscribers["reliable"]["latency_ms"])
    else:
        result.received = {name: len(values) for name, values in latencies.items()}
        result.latency_ms = {name: percentiles(values) for name, values in latencies.items()}
    first = config.outputs[0]
    result.throughput_hz = result.received[first] / elapsed if elapsed > 0 else 0.0
    result.delivered_fraction = result.received[first] / max(1, result.sent)
    return result


def _stream_output_rate(samples: list[tuple[float, dict[str, str]]], start: float, end: float,
                        published: int) -> tuple[float, float]:
    """(frames published per second while the frames streamed, the node's own output_rate_hz then).

    Counted between the first and the last /diagnostics message of the stream when they are at least
    2 s apart; for shorter streams, all frames published over the stream's duration. The node's own
    rate (a 5 s window) is that of the last /diagnostics message of the stream, NaN if none arrived.
    """
    during = [(t, values) for t, values in samples if start <= t <= end + 0.05]
    own = float(during[-1][1]["output_rate_hz"]) if during else float("nan")
    if len(during) >= 2 and during[-1][0] - during[0][0] >= 2.0:
        (t0, first), (t1, last) = during[0], during[-1]
        return (int(last["frames_published"]) - int(first["frames_published"])) / (t1 - t0), own
    return (published / (end - start) if end > start else float("nan")), own


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


def subscribe_main(argv: list[str] | None = None) -> int:
    """A subscriber process of the delivery measurement: records (stamp, CLOCK_MONOTONIC arrival) of every
    message it takes per output, optionally sleeping ``--callback-s`` in each callback; touches
    RESULT.ready once every subscription has matched a publisher and writes RESULT on SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m depth_ros.cli.bench_e2e subscribe")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--reliability", choices=("reliable", "best_effort"), required=True)
    parser.add_argument("--outputs", default="depth,points")
    parser.add_argument("--callback-s", type=float, default=0.0)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--result", required=True)
    parser.add_argument("--name", default="subscriber")
    args = parser.parse_args(argv)

    import rclpy
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs import msg as sensor_msgs

    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node(f"depth_ros_bench_{args.name}")
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=args.depth, durability=DurabilityPolicy.VOLATILE,
                     reliability=(ReliabilityPolicy.RELIABLE if args.reliability == "reliable"
                                  else ReliabilityPolicy.BEST_EFFORT))
    outputs = [name for name in args.outputs.split(",") if name]
    arrivals: dict[str, list[tuple[int, float]]] = {name: [] for name in outputs}

    def on_message(name: str):  # noqa: ANN202 - closure factory
        def callback(data: bytes) -> None:
            arrivals[name].append((_cdr_stamp_key(data), _now()))
            if args.callback_s > 0:
                time.sleep(args.callback_s)  # a deliberately slow consumer
        return callback

    subscriptions = []
    for name in outputs:
        type_name, topic = TOPICS[name]
        subscriptions.append(node.create_subscription(getattr(sensor_msgs, type_name), f"{args.namespace}/{topic}",
                                                      on_message(name), qos, raw=True))
    result = Path(args.result)
    try:
        while not stopping and any(s.get_publisher_count() == 0 for s in subscriptions):
            rclpy.spin_once(node, timeout_sec=0.05)
        result.with_suffix(".ready").touch()
        while not stopping:
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        result.write_text(json.dumps({"arrivals": arrivals}))
        node.destroy_node()
        rclpy.shutdown()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["subscribe"]:
        sys.exit("usage: python -m depth_ros.cli.bench_e2e subscribe --namespace NS --reliability R --result PATH ...")
    sys.exit(subscribe_main(sys.argv[2:]))
