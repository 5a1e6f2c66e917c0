"""`depth-ros bench`: where the time goes, in numbers (medians and percentiles, never pass/fail).

- stages: the node's own per-frame code (FrameProcessor) in this process, per stage, plus the CDR
  serialisation of each output, at 640x480 and 1280x720, for a null model (pure overhead), the
  embedded default and any given model;
- e2e: publisher -> depth_node process -> subscriber through Fast DDS (latency, throughput, drops);
- delivery: the node on its shipped QoS (best-effort input, reliable keep-last-1 outputs) fed by a
  reliable publisher (a driver); the fraction of its frames reaching a reliable and a best-effort
  subscriber process (measured together), their latency and the node's output rate, with the shipped
  Fast DDS profile and without it, and with a third, reliable subscriber process that is slow (0.5 s
  per message) or stopped (SIGSTOP: gone but still matched) -- the slow-subscriber comparison;
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

from depth_ros.cli.bench_e2e import SLOW_MODES, E2EConfig, E2EResult, percentiles, run_e2e, synthetic_frame
from depth_ros.core.contract import ModelContract
from depth_ros.resources import resolve_model_path
from depth_ros.ros.memory import tune_malloc_for_large_messages
from depth_ros.ros.parameters import PARAMETERS

SIZES = {"640x480": (640, 480), "1280x720": (1280, 720)}
DELIVERY_RATE_HZ = 30.0


def null_model(directory: Path) -> Path:
    """A model whose network does nothing (32x32 input, constant 2 m): measures pure overhead."""
    import onnx

    from depth_ros.backends.graph_models import map_model

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

    from depth_ros.pipeline import DepthEstimator
    from depth_ros.ros.frame_processor import CAMERA_INFO, COLORED, DEPTH, POINTS, FrameProcessor, Wanted

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


def delivery_runs(delivery: bool, slow_subscriber: bool | str) -> list[tuple[str, bool]]:
    """(slow subscriber mode, shipped profile) of each delivery run.

    ``--delivery``: every slow-subscriber mode with the profile, and the plain run without it;
    ``--slow-subscriber`` alone: the modes it names (True or "all" = none, slow and stopped; else a comma list).
    """
    if delivery:
        return [(mode, True) for mode in SLOW_MODES] + [("none", False)]
    if not slow_subscriber:
        return []
    modes = list(SLOW_MODES) if slow_subscriber is True or slow_subscriber == "all" else slow_subscriber.split(",")
    unknown = [mode for mode in modes if mode not in SLOW_MODES]
    if unknown:
        raise ValueError(f"--slow-subscriber: unknown mode(s) {unknown}; use {', '.join(SLOW_MODES)} or all")
    return [(mode, True) for mode in modes]


def run(models: list[str], sizes: list[str], frames: int, e2e: bool, delivery: bool, soak: int,
        rate: float, json_path: str | None, domain_id: int | None,
        slow_subscriber: bool | str = False) -> dict[str, Any]:
    if domain_id is None:
        from depth_ros.ros.dds import reserve_domain_id

        domain_id = reserve_domain_id()
    tune_malloc_for_large_messages()  # as depth_node does: the stage numbers are the node's
    report: dict[str, Any] = {"machine": machine(), "stages": {}, "e2e": {}, "delivery": {}, "slow_subscriber": {},
                              "soak": None}
    runs = delivery_runs(delivery, slow_subscriber)
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
        model = str(paths["null"] if "null" in paths else paths[models[0]])
        for size in sizes if runs else ():
            width, height = SIZES[size]
            colour = size != "640x480"
            baseline: dict[str, Any] | None = None
            for slow, profile in runs:
                config = E2EConfig(model=model, width=width, height=height, rate_hz=DELIVERY_RATE_HZ, frames=frames,
                                   cloud_color=colour, use_profile=profile, domain_id=domain_id,
                                   measured_processes=True, slow_subscriber=slow)
                key = delivery_key(size, colour, slow, profile)
                entry = delivery_entry(run_e2e(config))
                report["delivery"][key] = entry
                _print_delivery(key, entry)
                if slow == "none" and profile:
                    baseline = entry
                elif baseline is not None and profile:
                    report["slow_subscriber"][key] = compare_to_baseline(baseline, entry)
                    _print_comparison(key, report["slow_subscriber"][key])
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


def delivery_key(size: str, colour: bool, slow: str, profile: bool) -> str:
    return (f"{size} {'xyzrgb' if colour else 'xyz'} @ {DELIVERY_RATE_HZ:g} Hz, slow subscriber {slow}, "
            f"{'with' if profile else 'without'} profile")


def delivery_entry(result: E2EResult) -> dict[str, Any]:
    """One delivery run: per subscriber process what it received, of the frames sent (the node may drop
    frames it cannot keep up with: newest wins) and of the frames the node published (what DDS delivered),
    its latency publish -> received; the node's output rate and its own per-stage latency."""
    diag = result.node_diagnostics
    published = int(diag.get("frames_published", 0))
    subscribers: dict[str, Any] = {}
    for name, sub in result.subscribers.items():
        subscribers[name] = {
            "reliability": sub["reliability"], "callback_s": sub["callback_s"], "received": dict(sub["received"]),
            "of_sent": {out: n / max(1, result.sent) for out, n in sub["received"].items()},
            "of_published": {out: n / max(1, published) for out, n in sub["received"].items()},
            "latency_ms": {out: {k: p[k] for k in ("p50", "p95", "n")} for out, p in sub["latency_ms"].items()},
        }
    node_latency = {stage: {q: float(diag[f"latency_{stage}_{q}_ms"]) for q in ("p50", "p95")}
                    for stage in ("publish_depth", "cloud", "total") if f"latency_{stage}_p50_ms" in diag}
    return {
        "config": {k: result.config[k] for k in ("width", "height", "rate_hz", "frames", "cloud_color", "use_profile",
                                                 "slow_subscriber", "slow_callback_s", "subscriber_depth")},
        "sent": result.sent, "node_published": published, "node_published_of_sent": published / max(1, result.sent),
        "node_dropped": int(diag.get("frames_dropped", 0)),
        "node_output_rate_hz": result.node_output_rate_hz,
        "node_output_rate_diag_hz": result.node_output_rate_diag_hz,
        "node_received": int(diag.get("frames_received", 0)),
        "node_latency_ms": node_latency,  # the node's own stages over the run (/diagnostics, last 200 frames)
        "slow_stopped_at_frame": result.slow_stopped_at_frame,
        # [seconds since the first frame, frames/s over the second before]: where a stall begins and ends
        "node_output_rate_timeline": rate_timeline(result.node_published_timeline),
        "cpu_cores": result.cpu_cores,  # while streaming; "other" = load on the machine from outside the run
        "subscribers": subscribers,
    }


def rate_timeline(timeline: list[list[float]]) -> list[list[float]]:
    """Frames published per second between consecutive /diagnostics messages, from [t, frames_published]."""
    return [[round(t1, 1), round((n1 - n0) / (t1 - t0), 1)]
            for (t0, n0), (t1, n1) in zip(timeline, timeline[1:], strict=False) if t1 > 0 and t1 > t0]


def compare_to_baseline(baseline: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """The run with a slow/stopped subscriber against the run without one: ratios (1.0 = unchanged)."""
    def ratio(a: float, b: float) -> float:
        return a / b if b else float("nan")

    out: dict[str, Any] = {
        "node_output_rate_ratio": ratio(entry["node_output_rate_hz"], baseline["node_output_rate_hz"]),
        "node_published_ratio": ratio(entry["node_published"], baseline["node_published"]),
    }
    for name in ("reliable", "best_effort"):
        for output, p in entry["subscribers"][name]["latency_ms"].items():
            base = baseline["subscribers"][name]["latency_ms"][output]
            out[f"{name} {output} latency_p50_ratio"] = ratio(p["p50"], base["p50"])
            out[f"{name} {output} latency_p95_ratio"] = ratio(p["p95"], base["p95"])
            delivered, before = (e["subscribers"][name]["of_published"][output] for e in (entry, baseline))
            out[f"{name} {output} delivered_of_published_delta"] = delivered - before
    return out


def _print_delivery(key: str, entry: dict[str, Any]) -> None:
    print(f"\ndelivery {key}: node received {entry['node_received']}/{entry['sent']}, published "
          f"{entry['node_published']} ({entry['node_dropped']} dropped), output {entry['node_output_rate_hz']:.1f} Hz "
          f"(node's own {entry['node_output_rate_diag_hz']:.1f} Hz)"
          + (f", slow subscriber SIGSTOPped at frame {entry['slow_stopped_at_frame']}"
             if entry["slow_stopped_at_frame"] is not None else ""))
    timeline = entry["node_output_rate_timeline"]
    if timeline:
        print("  node output per second: " + " ".join(f"{t:.0f}s {hz:.0f}" for t, hz in timeline))
    cpu = entry["cpu_cores"]
    if cpu:
        print("  CPU cores while streaming: " + ", ".join(f"{name} {cores:.2f}" for name, cores in cpu.items()))
    for stage, p in entry["node_latency_ms"].items():
        print(f"  node {stage:<14} p50 {p['p50']:.2f} ms  p95 {p['p95']:.2f} ms")
    for name, sub in entry["subscribers"].items():
        parts = []
        for output, n in sub["received"].items():
            lat = sub["latency_ms"][output]
            parts.append(f"{output} {n} ({100 * sub['of_published'][output]:.1f}% of published, "
                         f"{100 * sub['of_sent'][output]:.1f}% of sent) p50 {lat['p50']:.1f} p95 {lat['p95']:.1f} ms")
        slow = f", {sub['callback_s']:g} s per message" if sub["callback_s"] else ""
        print(f"  {name:<12} ({sub['reliability']}{slow}): " + "; ".join(parts))


def _print_comparison(key: str, comparison: dict[str, Any]) -> None:
    print(f"  vs no slow subscriber: output rate x{comparison['node_output_rate_ratio']:.2f}, "
          + ", ".join(f"{k.replace('latency_', '').replace('_ratio', '')} x{v:.2f}"
                      for k, v in comparison.items() if k.endswith("latency_p95_ratio")))


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

