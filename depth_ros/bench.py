"""`depth-ros bench`: where the time goes, in numbers (medians and percentiles, never pass/fail).

- stages: the node's own per-frame code (FrameProcessor) in this process, per stage, plus the CDR
  serialisation of each output, at 640x480 and 1280x720, for a null model (pure overhead), the
  embedded default and any given model;
- e2e: publisher -> depth_node process -> subscriber through Fast DDS (latency, throughput, drops);
- delivery: the fraction of frames reaching a separate subscriber for best-effort/reliable QoS,
  with and without the shipped Fast DDS profile;
- soak: many frames through a live node, sampling its memory, threads and file descriptors.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from depth_ros.bench_e2e import E2EConfig, E2EResult, percentiles, run_e2e, synthetic_frame
from depth_ros.contract import ModelContract
from depth_ros.memory import tune_malloc_for_large_messages
from depth_ros.models import resolve_model_path
from depth_ros.parameters import PARAMETERS

SIZES = {"640x480": (640, 480), "1280x720": (1280, 720)}


def null_model(directory: Path) -> Path:
    """A model whose network does nothing (32x32 input, constant 2 m): measures pure overhead."""
    import onnx

    from depth_ros.graph_models import map_model

    contract = ModelContract.from_dict({
        "output_kind": "metric_depth", "name": "null (constant 2 m)",
        "input": {"height": 32, "width": 32, "resize": "stretch", "channels": "rgb",
                  "scale": 1 / 255, "mean": [0, 0, 0], "std": [1, 1, 1]},
    })
    path = directory / "null.onnx"
    onnx.save(map_model(np.full((32, 32), 2.0, np.float32), contract, (32, 32)), str(path))
    return path


def bench_stages(model: Path, width: int, height: int, frames: int, cloud_color: bool) -> dict[str, dict[str, float]]:
    """Per-stage latency of the node's frame code on a synthetic frame (ms percentiles).

    Stages exclude the serialisation of the messages they emit (rclpy's copy in publish), reported as
    'serialise <output>' and in total as 'serialise'; 'overhead_excl_inference' is the node's own work.
    """
    from rclpy.serialization import serialize_message

    from depth_ros.frame_processor import CAMERA_INFO, COLORED, DEPTH, POINTS, FrameProcessor, Wanted
    from depth_ros.pipeline import DepthEstimator

    values: dict[str, Any] = {spec.name: spec.default for spec in PARAMETERS}
    values.update(model=str(model), cloud_color=cloud_color)
    processor = FrameProcessor(DepthEstimator.from_path(model), values)
    image, info = synthetic_frame(width, height)
    processor.camera_info(info)
    samples: dict[str, list[float]] = {}
    serialise_ms: dict[str, float] = {}  # output kind -> ms spent serialising it this frame

    def emit(kind: str, msg: Any) -> None:
        t0 = time.perf_counter()
        serialize_message(msg)  # what rclpy's publish pays: the message's copy into a CDR buffer
        serialise_ms[kind] = (time.perf_counter() - t0) * 1e3

    # The stage that emits each output, so its serialisation can be reported apart from its own work.
    emitted_in = {DEPTH: "publish_depth", CAMERA_INFO: "publish_depth", COLORED: "publish_depth", POINTS: "cloud"}
    for i in range(frames + 5):
        serialise_ms.clear()
        t0 = time.perf_counter()
        # What a navigation/SLAM consumer subscribes to: depth, its CameraInfo, the cloud (no RViz colour view).
        timings = processor.process(image, emit, Wanted(depth=True, colored=False, points=True))
        total = (time.perf_counter() - t0) * 1e3
        if i < 5:  # warm-up: first-touch allocations, ONNX Runtime's first runs
            continue
        stage_ms = {stage: seconds * 1e3 for stage, seconds in timings.items()}
        for kind, ms in serialise_ms.items():
            stage_ms[emitted_in[kind]] -= ms
            samples.setdefault(f"serialise {kind}", []).append(ms)
        for stage, ms in stage_ms.items():
            samples.setdefault(stage, []).append(ms)
        serialised = sum(serialise_ms.values())
        samples.setdefault("serialise", []).append(serialised)
        samples.setdefault("node_total", []).append(total - serialised)
        samples.setdefault("overhead_excl_inference", []).append(total - serialised - stage_ms["inference"])
    order = sorted(samples, key=lambda stage: stage.startswith("serialise "))  # stages first, then serialisation
    return {stage: percentiles(samples[stage]) for stage in order}


def machine() -> dict[str, Any]:
    import os

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "platform": platform.platform()}


def print_stage_table(name: str, stages: dict[str, dict[str, float]]) -> None:
    print(f"\n{name}")
    print(f"  {'stage':<26}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for stage, p in stages.items():
        print(f"  {stage:<26}{p['p50']:>9.2f}{p['p95']:>9.2f}{p['p99']:>9.2f}")


def run(models: list[str], sizes: list[str], frames: int, e2e: bool, delivery: bool, soak: int,
        rate: float, json_path: str | None, domain_id: int, slow_subscriber: bool = False) -> dict[str, Any]:
    tune_malloc_for_large_messages()  # as depth_node does: the stage numbers are the node's
    report: dict[str, Any] = {"machine": machine(), "stages": {}, "e2e": {}, "delivery": {}, "soak": None}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: (null_model(Path(tmp)) if name == "null" else resolve_model_path(name)) for name in models}
        for name, path in paths.items():
            for size in sizes:
                width, height = SIZES[size]
                colour = size != "640x480"  # the targets: xyz cloud at 640x480, colour cloud at 720p
                key = f"{name} {size} depth+{'xyzrgb' if colour else 'xyz'}"
                report["stages"][key] = bench_stages(path, width, height, frames, colour)
                print_stage_table(f"stages: {key}", report["stages"][key])
        if e2e:
            for size in sizes:
                width, height = SIZES[size]
                config = E2EConfig(model=str(paths[models[0]]), width=width, height=height, rate_hz=rate,
                                   frames=frames, cloud_color=size != "640x480", domain_id=domain_id)
                result = run_e2e(config)
                report["e2e"][f"{models[0]} {size} @ {rate:g} Hz"] = result.to_dict()
                _print_e2e(f"{models[0]} {size} @ {rate:g} Hz", result.to_dict())
        if delivery or slow_subscriber:
            model = str(paths["null"] if "null" in paths else paths[models[0]])
            for size in sizes:
                width, height = SIZES[size]
                runs = [(slow, reliable, True) for slow in ("", "slow", "stopped") for reliable in (False, True)]
                if delivery:  # and without the shipped Fast DDS profile, for comparison
                    runs += [("", reliable, False) for reliable in (False, True)]
                for slow, reliable, profile in runs:
                    config = E2EConfig(model=model, width=width, height=height, rate_hz=30.0,
                                       frames=min(frames, 150), reliable=reliable, use_profile=profile,
                                       cloud_color=size != "640x480", slow_subscriber=slow, domain_id=domain_id)
                    result = run_e2e(config)
                    key = (f"{size} {'reliable' if reliable else 'best_effort'} subscriber "
                           f"{'with' if profile else 'without'} profile"
                           + {"": "", "slow": ", slow reliable subscriber", "stopped": ", stopped reliable subscriber"}
                           [slow])
                    report["delivery"][key] = _delivery_entry(result)
                    _print_delivery(key, report["delivery"][key])
        if soak:
            config = E2EConfig(model=str(paths[models[0]]), rate_hz=rate, frames=soak, domain_id=domain_id,
                               sample_process_every=max(1, soak // 40))
            result = run_e2e(config)
            report["soak"] = _soak_summary(result.to_dict())
            print(json.dumps(report["soak"], indent=2))
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2))
        print(f"\nwrote {json_path}")
    return report


def _delivery_entry(result: E2EResult) -> dict[str, Any]:
    """Delivery of one run: of the frames sent (the node may drop frames it cannot keep up with: newest wins)
    and of the frames the node published (what DDS delivered to another process); the node's own rate."""
    diag = result.node_diagnostics
    published = int(diag.get("frames_published", 0))
    entry: dict[str, Any] = {name: n / max(1, result.sent) for name, n in result.received.items()}
    entry.update({f"{name}_of_published": n / max(1, published) for name, n in result.received.items()})
    entry.update({
        "sent": result.sent, "node_published": published, "node_published_of_sent": published / max(1, result.sent),
        "received": dict(result.received),
        "latency_ms": {name: {k: p[k] for k in ("p50", "p95")} for name, p in result.latency_ms.items()},
        "slow_received": dict(result.slow_received),
    })
    return entry


def _print_delivery(key: str, entry: dict[str, Any]) -> None:
    fractions = ", ".join(f"{n} {100 * entry[n]:.1f}% of sent, {100 * entry[n + '_of_published']:.1f}% of "
                          f"published (p50 {entry['latency_ms'][n]['p50']:.1f} ms, p95 "
                          f"{entry['latency_ms'][n]['p95']:.1f} ms)" for n in entry["received"])
    slow = f"; slow subscriber took {entry['slow_received']}" if entry["slow_received"] else ""
    print(f"delivery {key}: node published {entry['node_published']}/{entry['sent']}; {fractions}{slow}")


def _print_e2e(key: str, result: dict[str, Any]) -> None:
    print(f"\ne2e {key}: sent {result['sent']}, received {result['received']}, "
          f"throughput {result['throughput_hz']:.1f} Hz")
    for name, p in result["latency_ms"].items():
        print(f"  publish -> {name:<8} p50 {p['p50']:.2f} ms  p95 {p['p95']:.2f} ms  p99 {p['p99']:.2f} ms")
    diag = result["node_diagnostics"]
    if diag:
        keys = ("frames_received", "frames_published", "frames_dropped", "frames_skipped")
        print("  node: " + ", ".join(f"{k} {diag.get(k, '?')}" for k in keys))
    print(f"  SIGINT -> node exited (code {result['exit_code']}) in {result['shutdown_s']:.2f} s")


def _soak_summary(result: dict[str, Any]) -> dict[str, Any]:
    samples = result["process_samples"]
    warm = [s for s in samples if s["frame"] >= result["config"]["frames"] * 0.1] or samples
    diag = result["node_diagnostics"]
    received = int(diag.get("frames_received", -1))
    accounted = sum(int(diag.get(k, 0)) for k in ("frames_published", "frames_dropped", "frames_skipped"))
    return {
        "frames_sent": result["sent"],
        "node_received": received,
        "node_accounted": accounted,
        "all_accounted": received == accounted,
        "rss_mib_after_warmup": warm[0]["rss_mib"],
        "rss_mib_end": samples[-1]["rss_mib"],
        "rss_growth_pct": 100.0 * (samples[-1]["rss_mib"] / warm[0]["rss_mib"] - 1.0),
        "threads": [warm[0]["threads"], samples[-1]["threads"]],
        "fds": [warm[0]["fds"], samples[-1]["fds"]],
        "latency_ms": result["latency_ms"],
        "shutdown_s": result["shutdown_s"],
        "exit_code": result["exit_code"],
    }

