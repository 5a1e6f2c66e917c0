"""`depth-ros bench` runs and reports what it measured (numbers are printed, never asserted as time limits)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ros_harness import ros_env

REPO = Path(__file__).resolve().parents[2]


def test_bench_stages_e2e_and_soak_report(tmp_path: Path, own_domain: int) -> None:
    out = tmp_path / "bench.json"
    domain = own_domain  # its own: the bench's topics are not namespaced per run
    result = subprocess.run(
        [sys.executable, "-m", "depth_ros.cli", "bench", "--model", "null", "--size", "640x480", "--frames", "40",
         "--e2e", "--soak", "120", "--rate", "30", "--domain-id", str(domain), "--json", str(out)],
        env=ros_env(domain), capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    stages = report["stages"]["null 640x480 depth+xyz"]
    for stage in ("decode", "preprocess", "inference", "postprocess", "cloud", "serialise", "node_total"):
        assert stages[stage]["n"] == 40 and stages[stage]["p50"] > 0, stage
        assert stages[stage]["p50"] <= stages[stage]["p95"] <= stages[stage]["p99"]
    for output in ("depth", "depth/camera_info", "points"):
        assert stages[f"serialise {output}"]["n"] == 40 and stages[f"serialise {output}"]["p50"] > 0
    # Serialisation is reported apart from the stages that pay it: they add up to the node's total.
    stage_sum = sum(stages[s]["mean"] for s in ("decode", "preprocess", "inference", "postprocess",
                                                   "publish_depth", "cloud"))
    assert 0.5 * stages["node_total"]["mean"] <= stage_sum <= stages["node_total"]["mean"] + 1e-6
    e2e = report["e2e"]["null 640x480 @ 30 Hz"]
    assert e2e["sent"] == 40
    # Every frame the node received is accounted for: published, dropped (newest wins) or skipped.
    diag = e2e["node_diagnostics"]
    assert int(diag["frames_received"]) == sum(int(diag[k]) for k in
                                               ("frames_published", "frames_dropped", "frames_skipped"))
    assert e2e["exit_code"] == 0 and e2e["shutdown_s"] > 0  # SIGINT: a clean exit (its time is printed)
    assert "SIGINT -> node exited (code 0)" in result.stdout
    assert e2e["received"]["depth"] > 0 and e2e["latency_ms"]["depth"]["n"] == e2e["received"]["depth"]
    soak = report["soak"]
    assert soak["frames_sent"] == 120 and soak["all_accounted"], soak
    assert soak["threads"][1] >= 1 and soak["fds"][1] >= 1
    assert "p50" in result.stdout  # the printed table


def test_bench_slow_subscriber_delivery_report(tmp_path: Path, own_domain: int) -> None:
    """The measured reliable and best-effort subscriber processes beside a reliable one that takes 0.5 s per
    message, then beside the same one SIGSTOPped: what each received is reported per output, counted against
    what the node published; the slow one gets fewer, and the node is not held to the slow one's pace."""
    out = tmp_path / "bench.json"
    frames = 45
    result = subprocess.run(
        [sys.executable, "-m", "depth_ros.cli", "bench", "--model", "null", "--size", "640x480", "--frames",
         str(frames), "--slow-subscriber", "slow,stopped", "--domain-id", str(own_domain), "--json", str(out)],
        env=ros_env(own_domain), capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    for mode in ("slow", "stopped"):
        entry = report["delivery"][f"640x480 xyz @ 30 Hz, slow subscriber {mode}, with profile"]
        assert entry["config"]["slow_subscriber"] == mode and entry["config"]["slow_callback_s"] == 0.5
        assert entry["sent"] == frames
        assert 0 < entry["node_published"] <= entry["node_received"] <= entry["sent"]
        assert entry["node_output_rate_hz"] > 0 and entry["cpu_cores"]["node"] > 0
        subscribers = entry["subscribers"]
        assert set(subscribers) == {"reliable", "best_effort", "slow"}
        assert [subscribers[n]["reliability"] for n in ("reliable", "best_effort", "slow")] == [
            "reliable", "best_effort", "reliable"]
        for name, sub in subscribers.items():
            for output in ("depth", "points"):
                n = sub["received"][output]
                assert n <= entry["node_published"], (mode, name, output, entry)
                assert sub["latency_ms"][output]["n"] == n
                assert sub["of_published"][output] == n / entry["node_published"]
                if n:
                    assert 0 < sub["latency_ms"][output]["p50"] <= sub["latency_ms"][output]["p95"]
        for output in ("depth", "points"):
            assert subscribers["reliable"]["received"][output] > 0, (mode, entry)
            # The slow (or stopped) consumer gets fewer than the measured ones: keep-last replaces what it
            # has not taken instead of holding the node to its pace.
            assert subscribers["slow"]["received"][output] < subscribers["reliable"]["received"][output], entry
        if mode == "slow":
            # Held to a 0.5 s consumer, the node would publish ~3 of these 45 frames (1.5 s at 30 Hz).
            assert entry["node_published_of_sent"] >= 0.5, entry
        else:
            assert entry["slow_stopped_at_frame"] == frames // 5
    assert "slow         (reliable, 0.5 s per message)" in result.stdout  # the printed lines


def test_bench_cameras_reports_both_setups(tmp_path: Path, own_domain: int) -> None:
    """`bench --cameras 2`: one node serving two cameras and two nodes of one, each camera's delivery and latency,
    the nodes' memory; one process holds less resident memory than two (a fact, not a timing)."""
    out = tmp_path / "cameras.json"
    result = subprocess.run(
        [sys.executable, "-m", "depth_ros.cli", "bench", "--cameras", "2", "--model", "null", "--frames", "20",
         "--rate", "10", "--domain-id", str(own_domain), "--json", str(out)],
        env=ros_env(own_domain), capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    for setup in ("one_process", "processes"):
        entry = report[setup]
        assert set(entry["per_camera"]) == {"cam0", "cam1"}
        for camera in entry["per_camera"].values():
            for output in ("depth", "points"):
                assert 0 < camera[output]["delivered"] <= 1.0
                assert camera[output]["latency_ms"]["n"] == round(camera[output]["delivered"] * 20)
        assert 0 < entry["pss_mib"] <= entry["rss_mib"]
    assert report["one_process"]["rss_mib"] < report["processes"]["rss_mib"]
    assert "onnxruntime" in report["batching"]
    assert "one process / 2 processes: RSS" in result.stdout
