"""`depth-ros bench` runs and reports what it measured (numbers are printed, never asserted as time limits)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from depth_ros.dds import local_ros_env, reserve_domain_id

REPO = Path(__file__).resolve().parent.parent


def test_bench_stages_e2e_and_soak_report(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    domain = reserve_domain_id()  # its own: the bench's topics are not namespaced per run
    result = subprocess.run(
        [sys.executable, "-m", "depth_ros.cli", "bench", "--model", "null", "--size", "640x480", "--frames", "40",
         "--e2e", "--soak", "120", "--rate", "30", "--domain-id", str(domain), "--json", str(out)],
        env=local_ros_env(domain), capture_output=True, text=True, timeout=300, cwd=REPO)
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


def test_bench_slow_subscriber_never_slows_the_node(tmp_path: Path) -> None:
    """A reliable subscriber that takes 0.5 s per message (and one that is stopped) beside the measured ones:
    keep-last-1 reliable outputs keep the node publishing every frame it gets; the slow one just gets fewer."""
    out = tmp_path / "bench.json"
    domain = reserve_domain_id()
    result = subprocess.run(
        [sys.executable, "-m", "depth_ros.cli", "bench", "--model", "null", "--size", "640x480", "--frames", "45",
         "--slow-subscriber", "--domain-id", str(domain), "--json", str(out)],
        env=local_ros_env(domain), capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    delivery = json.loads(out.read_text())["delivery"]
    for subscriber in ("best_effort", "reliable"):
        for slow in ("", ", slow reliable subscriber", ", stopped reliable subscriber"):
            entry = delivery[f"640x480 {subscriber} subscriber with profile{slow}"]
            assert entry["sent"] == 45
            assert 0 < entry["node_published"] <= entry["sent"]
            for name in ("depth", "points"):
                assert entry["received"][name] <= entry["node_published"]
            # Blocked on a 0.5 s consumer, the node would publish ~3 of these 45 frames (1.5 s at 30 Hz).
            assert entry["node_published_of_sent"] >= 0.5, (subscriber, slow, entry)
            if slow == ", slow reliable subscriber":
                assert 0 < entry["slow_received"]["depth"] < entry["received"]["depth"], entry
            if slow == ", stopped reliable subscriber":
                assert entry["slow_received"] == {"depth": 0, "points": 0}, entry
