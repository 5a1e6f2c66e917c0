"""`depth-ros bench --cameras N`: one depth_node serving N cameras against N depth_nodes of one camera each,
in one run, through DDS on this machine (prints numbers).

Both setups get the same input: N cameras (640x480 by default, each its own intrinsics) triggered together at
``rate`` Hz by this process's reliable publishers, every node on the shipped QoS (config/depth.yaml). This
process subscribes to every camera's depth and points best effort, as Nav2 does, taking the serialised
messages (raw) and reading the stamp from the CDR header, so Python deserialisation stays out of the numbers.

Per camera: the fraction of frames delivered (depth and points), latency publish -> received (p50/p95); per
setup: the nodes' resident memory (RSS and PSS: shared library pages counted once per process in RSS, split
between the processes sharing them in PSS) and CPU cores used. With ``--batch-model`` (a dynamic-batch export of
the same network, `depth-ros export --batch dynamic`) the one-process setup runs again with it: what batching buys.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from depth_ros.cli.bench_e2e import _cdr_stamp_key, _cpu_cores, _cpu_snapshot, _now, percentiles, process_sample
from depth_ros.resources import package_file, resolve_model_path
from depth_ros.ros.dds import local_ros_env


@dataclass
class CamerasConfig:
    model: str
    cameras: int = 3
    width: int = 640
    height: int = 480
    rate_hz: float = 15.0
    frames: int = 150  # per camera
    cloud_color: bool = False
    domain_id: int = 0
    extra_params: dict[str, Any] = field(default_factory=dict)


def camera_names(count: int) -> list[str]:
    return [f"cam{i}" for i in range(count)]


def _pss_mib(pid: int) -> float:
    """Proportional set size (MiB): shared pages split between the processes that map them."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def _frames(config: CamerasConfig) -> list[tuple[Any, Any]]:
    """Per camera a textured image and its CameraInfo; focal lengths 0.6-1.0 x width (different cameras)."""
    from sensor_msgs.msg import CameraInfo, Image

    out = []
    for index in range(config.cameras):
        rng = np.random.default_rng(index)
        w, h = config.width, config.height
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        image = Image(height=h, width=w, encoding="rgb8", step=w * 3, is_bigendian=False)
        image.header.frame_id = f"cam{index}_optical"
        image.data = rgb.tobytes()
        f = w * (0.6 + 0.4 * index / max(1, config.cameras - 1))
        info = CameraInfo(width=w, height=h, distortion_model="plumb_bob")
        info.header.frame_id = image.header.frame_id
        info.d = [0.0] * 5
        info.k = [f, 0.0, w / 2 - 0.5 + index, 0.0, f, h / 2 - 0.5, 0.0, 0.0, 1.0]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [f, 0.0, w / 2 - 0.5 + index, 0.0, 0.0, f, h / 2 - 0.5, 0.0, 0.0, 0.0, 1.0, 0.0]
        out.append((image, info))
    return out


def run_setup(config: CamerasConfig, one_process: bool) -> dict[str, Any]:
    """Start the node(s), stream every camera at ``rate_hz``, collect every camera's outputs by stamp."""
    import rclpy
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    env = local_ros_env(config.domain_id)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("ROS_", "RMW_", "FASTDDS_"))})
    params = package_file("config/depth.yaml")
    names = camera_names(config.cameras)
    base = f"/benchcam{os.getpid()}{'one' if one_process else 'many'}"
    work = Path(tempfile.mkdtemp(prefix="depth_bench_cameras_"))
    common = ["-p", f"model:={config.model}", "-p", f"cloud_color:={str(config.cloud_color).lower()}",
              *(arg for key, value in config.extra_params.items() for arg in ("-p", f"{key}:={value}"))]
    # Topics of camera i: <base>/cam_i/... in both setups (one node in <base> with cameras, or a node per camera
    # in <base>/cam_i), so the publishers and subscribers below are the same.
    commands = ([[*_node(params, base), *common, "-p", f"cameras:={names}"]] if one_process
                else [[*_node(params, f"{base}/{name}"), *common] for name in names])
    processes = []
    for index, command in enumerate(commands):
        log = (work / f"node{index}.log").open("w")
        processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
    rclpy.init()
    node = rclpy.create_node("depth_ros_bench_cameras")
    reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, durability=DurabilityPolicy.VOLATILE,
                          reliability=ReliabilityPolicy.RELIABLE)
    best_effort = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, durability=DurabilityPolicy.VOLATILE,
                             reliability=ReliabilityPolicy.BEST_EFFORT)
    frames = _frames(config)
    sent_at: dict[tuple[int, int], float] = {}
    arrivals: dict[str, dict[str, list[tuple[int, float]]]] = {n: {"depth": [], "points": []} for n in names}
    pubs = []
    for name in names:
        pubs.append((node.create_publisher(Image, f"{base}/{name}/image", reliable),
                     node.create_publisher(CameraInfo, f"{base}/{name}/camera_info", reliable)))
        for output, msg_type, topic in (("depth", Image, "depth"), ("points", PointCloud2, "points")):
            def callback(data: bytes, name: str = name, output: str = output) -> None:
                arrivals[name][output].append((_cdr_stamp_key(data), _now()))
            node.create_subscription(msg_type, f"{base}/{name}/{topic}", callback, best_effort, raw=True)
    result: dict[str, Any] = {"setup": "one process" if one_process else f"{config.cameras} processes"}
    try:
        deadline = time.monotonic() + 120.0
        while not all(p.get_subscription_count() > 0 for pair in pubs for p in pair) or any(
                node.count_publishers(f"{base}/{name}/points") == 0 for name in names):
            for process in processes:
                if process.poll() is not None:
                    raise RuntimeError(f"depth_node exited with {process.returncode}:\n"
                                       + "\n".join(p.read_text() for p in work.glob("node*.log")))
            if time.monotonic() > deadline:
                raise TimeoutError("the depth_node(s) did not come up on DDS")
            rclpy.spin_once(node, timeout_sec=0.05)
        _spin(node, 1.0)
        for (_, pub_info), (_, info) in zip(pubs, frames, strict=True):
            pub_info.publish(info)
        _spin(node, 0.5)
        memory_before = [process_sample(p.pid)["rss_mib"] for p in processes]
        pids = {f"node{i}": p.pid for i, p in enumerate(processes)}
        cpu_before = _cpu_snapshot(pids)
        period = 1.0 / config.rate_hz
        start = time.perf_counter()
        for i in range(config.frames):
            target = start + i * period
            while (remaining := target - time.perf_counter()) > 0:
                rclpy.spin_once(node, timeout_sec=min(remaining, 0.004))
            stamp = 10**9 + i * 1000
            for index, ((pub_image, pub_info), (image, info)) in enumerate(zip(pubs, frames, strict=True)):
                image.header.stamp.sec, image.header.stamp.nanosec = divmod(stamp, 10**9)
                if i % 30 == 0:
                    info.header.stamp = image.header.stamp
                    pub_info.publish(info)
                sent_at[(index, stamp)] = _now()
                pub_image.publish(image)
        cores = _cpu_cores(cpu_before, _cpu_snapshot(pids))
        _spin(node, 2.0)
        rss = [process_sample(p.pid)["rss_mib"] for p in processes]
        pss = [_pss_mib(p.pid) for p in processes]
    finally:
        node.destroy_node()
        rclpy.shutdown()
        for process in processes:
            process.send_signal(signal.SIGINT)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(work, ignore_errors=True)
    per_camera = {}
    for index, name in enumerate(names):
        entry: dict[str, Any] = {}
        for output in ("depth", "points"):
            latencies = [(arrival - sent_at[(index, key)]) * 1e3 for key, arrival in arrivals[name][output]
                         if (index, key) in sent_at]
            entry[output] = {"delivered": len(latencies) / config.frames, "latency_ms": percentiles(latencies)}
        per_camera[name] = entry
    result.update(per_camera=per_camera, rss_mib=float(sum(rss)), pss_mib=float(sum(pss)),
                  rss_at_start_mib=float(sum(memory_before)),
                  node_cores=float(sum(v for k, v in cores.items() if k.startswith("node"))),
                  machine_cores=float(cores.get("machine", float("nan"))))
    return result


def _node(params: str, namespace: str) -> list[str]:
    return [sys.executable, "-m", "depth_ros.ros.node", "--ros-args", "--params-file", params,
            "-r", f"__ns:={namespace}", "--log-level", "warn"]


def _spin(node: Any, seconds: float) -> None:
    import rclpy

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.01)


def print_setup(result: dict[str, Any]) -> None:
    print(f"\n{result['setup']}: RSS {result['rss_mib']:.0f} MiB, PSS {result['pss_mib']:.0f} MiB, "
          f"node CPU {result['node_cores']:.2f} cores (machine {result['machine_cores']:.2f})")
    print(f"  {'camera':<8}{'depth %':>9}{'points %':>10}{'depth p50':>11}{'p95 ms':>8}{'points p50':>12}{'p95 ms':>8}")
    for name, entry in result["per_camera"].items():
        d, p = entry["depth"], entry["points"]
        print(f"  {name:<8}{100 * d['delivered']:>9.1f}{100 * p['delivered']:>10.1f}"
              f"{d['latency_ms']['p50']:>11.1f}{d['latency_ms']['p95']:>8.1f}"
              f"{p['latency_ms']['p50']:>12.1f}{p['latency_ms']['p95']:>8.1f}")


def batching_gain(model: str, cameras: int, repeats: int = 60) -> dict[str, Any]:
    """What one forward pass of ``cameras`` frames costs against ``cameras`` passes of one, per backend that can
    run the model here (in-process, no DDS): medians in ms and their ratio."""
    from depth_ros.pipeline import DepthEstimator

    results: dict[str, Any] = {}
    for backend in ("onnxruntime", "torch"):
        try:
            estimator = DepthEstimator.from_path(model, backend)
        except Exception as exc:  # torch runs checkpoints only; TensorRT needs a GPU
            results[backend] = {"skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"}
            continue
        spec = estimator.contract.input
        if estimator.max_batch < cameras:
            results[backend] = {"skipped": f"max_batch {estimator.max_batch}: the model runs one frame at a time"}
            continue
        rng = np.random.default_rng(0)
        batch = rng.standard_normal((cameras, 3, spec.height, spec.width)).astype(np.float32)
        singles, together = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for i in range(cameras):
                estimator.backend.infer(batch[i:i + 1])
            t1 = time.perf_counter()
            estimator.backend.infer(batch)
            t2 = time.perf_counter()
            singles.append((t1 - t0) * 1e3)
            together.append((t2 - t1) * 1e3)
        one_by_one, batched = float(np.median(singles)), float(np.median(together))
        results[backend] = {"one_by_one_ms": one_by_one, "batched_ms": batched, "ratio": batched / one_by_one}
    return results


def print_batching(cameras: int, results: dict[str, Any]) -> None:
    print(f"\ninference of {cameras} frames (in-process, medians): one pass of {cameras} vs {cameras} passes of 1")
    for backend, entry in results.items():
        if "skipped" in entry:
            print(f"  {backend:<12} skipped: {entry['skipped']}")
        else:
            print(f"  {backend:<12} {entry['batched_ms']:.2f} ms vs {entry['one_by_one_ms']:.2f} ms "
                  f"(x{entry['ratio']:.2f})")


def run(model: str = "default", cameras: int = 3, rate: float = 15.0, frames: int = 150, width: int = 640,
        height: int = 480, domain_id: int | None = None, batch_model: str | None = None) -> dict[str, Any]:
    """Both setups in one run (and the one-process setup with ``batch_model``, a dynamic-batch export)."""
    if domain_id is None:
        from depth_ros.ros.dds import reserve_domain_id

        domain_id = reserve_domain_id()
    with tempfile.TemporaryDirectory() as tmp:
        if model == "null":  # a model that does nothing: the node's own cost
            from depth_ros.cli.bench import null_model

            model = str(null_model(Path(tmp)))
        return _run(model, cameras, rate, frames, width, height, domain_id, batch_model)


def _run(model: str, cameras: int, rate: float, frames: int, width: int, height: int, domain_id: int,
         batch_model: str | None) -> dict[str, Any]:
    path = str(resolve_model_path(model))
    config = CamerasConfig(path, cameras, width, height, rate, frames, domain_id=domain_id)
    print(f"{cameras} cameras {width}x{height} at {rate:g} Hz, {frames} frames each, model {path}")
    results: dict[str, Any] = {"config": asdict(config)}
    results["batching"] = batching_gain(str(resolve_model_path(batch_model or model)), cameras)
    print_batching(cameras, results["batching"])
    results["one_process"] = run_setup(config, True)
    print_setup(results["one_process"])
    results["processes"] = run_setup(config, False)
    print_setup(results["processes"])
    if batch_model:
        batched = CamerasConfig(str(resolve_model_path(batch_model)), cameras, width, height, rate, frames,
                                domain_id=domain_id)
        results["one_process_batched"] = run_setup(batched, True)
        results["one_process_batched"]["setup"] = "one process, batched model"
        print_setup(results["one_process_batched"])
    one, many = results["one_process"], results["processes"]
    print(f"\none process / {cameras} processes: RSS {one['rss_mib'] / many['rss_mib']:.2f}, "
          f"PSS {one['pss_mib'] / many['pss_mib']:.2f}; depth delivered (min over cameras) "
          f"{100 * min(e['depth']['delivered'] for e in one['per_camera'].values()):.1f} % vs "
          f"{100 * min(e['depth']['delivered'] for e in many['per_camera'].values()):.1f} %")
    return results
