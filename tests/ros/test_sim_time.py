"""Replay on simulated time: `depth-ros bag play --clock` -> depth_node (use_sim_time) -> `depth-ros bag record`.

Real processes over Fast DDS, a real bag built from the RealSense D435 colour frame (60 copies 0.1 s
apart, each with its own header stamp). The node's time-dependent state must follow the bag's clock:
its diagnostics are stamped with bag time, its input rate is the bag's 10 Hz however fast the bag
plays (here at twice real time) and stays 10 Hz while the bag is paused (wall-time rates would fall to
0 over the pause); a looped bag (the clock jumps back) keeps it publishing sane values. The outputs,
recorded to a bag, carry exactly the input frames' stamps.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import rclpy
from rclpy.node import Node
from ros_harness import RUN_DIR, Client, NodeProcess, node_env, start_node
from std_srvs.srv import Trigger

from depth_ros.bags.io import read_raw
from depth_ros.cli.demo import write_frame_sequence

REPO = Path(__file__).resolve().parents[2]
D435_BAG = REPO / "data" / "realsense_d435" / "d435_rosbag2"
COLOR = "/device_0/sensor_1/Color_0/image/data"
COLOR_INFO = "/device_0/sensor_1/Color_0/info/camera_info"
PLAYER_SERVICES = "/depth_ros_bag_play"
PERIOD_S = 0.1  # the bag's frame period: 10 Hz in bag time


_logs = itertools.count()


def cli(*args: str, log_name: str) -> tuple[subprocess.Popen, Path]:
    log = RUN_DIR / f"{log_name}_{next(_logs)}.log"  # removed with the run's directory
    env = node_env()
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "depth_ros.cli", *args], env=env, cwd=REPO,
                                   stdout=out, stderr=subprocess.STDOUT)
    return process, log


def finish(process: subprocess.Popen, log: Path, interrupt: bool = True, timeout: float = 60.0) -> str:
    if interrupt and process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    text = log.read_text(errors="replace")
    assert process.returncode == 0, text
    return text


@pytest.fixture
def sequence_bag(tmp_path: Path) -> tuple[Path, list[int], list[int]]:
    """(bag, image header stamps, recorded times) of 60 copies of the real colour frame, 0.1 s apart."""
    raw = {m.topic: m for m in read_raw(D435_BAG, [COLOR, COLOR_INFO])}
    bag = tmp_path / "sequence"
    stamps = write_frame_sequence(bag, raw[COLOR], raw[COLOR_INFO], 60, PERIOD_S)
    recorded = sorted(m.timestamp_ns for m in read_raw(bag, [COLOR]))
    return bag, stamps, recorded


@pytest.fixture
def sim_node(ros_context: Node) -> Iterator[tuple[NodeProcess, Client]]:
    process = start_node({"use_sim_time": True, "diagnostics_period": 0.25},
                         remaps={"image": COLOR, "camera_info": COLOR_INFO})
    client = Client(ros_context, process.namespace)
    deadline = time.monotonic() + 60.0
    while ros_context.count_publishers(f"{process.namespace}/depth") == 0:
        assert process.process.poll() is None and time.monotonic() < deadline, process.output()
        rclpy.spin_once(ros_context, timeout_sec=0.05)
    yield process, client
    client.close()
    assert process.stop() == 0, process.output()


def call(node: Node, service: str) -> str:
    client = node.create_client(Trigger, f"{PLAYER_SERVICES}/{service}")
    try:
        assert client.wait_for_service(timeout_sec=30.0), f"{service} not offered"
        future = client.call_async(Trigger.Request())
        deadline = time.monotonic() + 30.0
        while not future.done() and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.02)
        result = future.result()
        assert result is not None and result.success, (service, result)
        return str(result.message)
    finally:
        node.destroy_client(client)


def diagnostics(client: Client) -> tuple[dict[str, str], int]:
    """(key/values, header stamp in ns) of the node's next /diagnostics message."""
    values = client.latest_diagnostics(timeout=10.0)
    stamp = client.diagnostics[-1].header.stamp
    return values, stamp.sec * 10**9 + stamp.nanosec


def test_play_clock_node_record_follow_bag_time_through_a_pause(
        sim_node: tuple[NodeProcess, Client], sequence_bag: tuple[Path, list[int], list[int]],
        tmp_path: Path) -> None:
    process, client = sim_node
    bag, stamps, recorded = sequence_bag
    out = tmp_path / "recorded"
    recorder, recorder_log = cli("bag", "record", str(out), "--topics", f"{process.namespace}/depth",
                                 log_name="record")
    # The recorder subscribes once the node's depth topic is in the graph; then play at twice real time.
    deadline = time.monotonic() + 60.0
    while client.node.count_subscribers(f"{process.namespace}/depth") == 0:
        assert time.monotonic() < deadline, recorder_log.read_text()
        rclpy.spin_once(client.node, timeout_sec=0.05)
    player, player_log = cli("bag", "play", str(bag), "--clock", "--rate", "2", "--reliable",
                             "--topics", COLOR, COLOR_INFO, "--wait-for-subscribers", "60", log_name="play")
    try:
        values, stamp = diagnostics(client)
        deadline = time.monotonic() + 60.0
        while int(values["frames_published"]) < 20:  # 2 s of bag time
            assert time.monotonic() < deadline, f"{values}\n{process.output()}\n{player_log.read_text()}"
            values, stamp = diagnostics(client)
        # Stamped with the bag's clock (recorded times), not the wall clock; the rate is the bag's 10 Hz
        # (20 Hz of wall time at --rate 2).
        assert recorded[0] - 10**9 <= stamp <= recorded[-1] + 10**9, (stamp, recorded[0], recorded[-1])
        assert 7.0 <= float(values["input_rate_hz"]) <= 13.0, values

        assert call(client.node, "pause").startswith("paused")
        time.sleep(6.0)  # longer than the 5 s rate window: a wall-time rate would now read 0
        values, stamp = diagnostics(client)
        assert 7.0 <= float(values["input_rate_hz"]) <= 13.0, values
        paused_stamp = stamp
        values, stamp = diagnostics(client)
        assert stamp == paused_stamp or abs(stamp - paused_stamp) < 10**8, "the bag clock moved while paused"
        assert call(client.node, "resume").startswith("playing")
        finish(player, player_log, interrupt=False, timeout=120.0)
        deadline = time.monotonic() + 30.0
        while int(values["frames_published"]) + int(values["frames_dropped"]) + int(values["frames_skipped"]) < 60:
            assert time.monotonic() < deadline, values
            values, _ = diagnostics(client)
    finally:
        if player.poll() is None:
            finish(player, player_log)
        time.sleep(1.0)  # the recorder takes the last outputs
        finish(recorder, recorder_log)
    assert int(values["frames_received"]) == 60, values
    assert int(values["frames_skipped"]) == 0, values
    depth_stamps = []
    for raw in read_raw(out, [f"{process.namespace}/depth"]):
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import Image

        msg = deserialize_message(raw.data, Image)
        depth_stamps.append(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
    assert depth_stamps, "nothing recorded"
    assert len(depth_stamps) == int(values["frames_published"]), (len(depth_stamps), values)
    assert set(depth_stamps) <= set(stamps) and depth_stamps == sorted(depth_stamps)


def test_looped_bag_keeps_diagnostics_and_rates_sane(
        sim_node: tuple[NodeProcess, Client], sequence_bag: tuple[Path, list[int], list[int]]) -> None:
    """--loop: the clock jumps back at every pass; diagnostics keep coming (a wall-time timer), stamped in bag
    time, with a non-negative rate no higher than the bag's."""
    process, client = sim_node
    bag, _, recorded = sequence_bag
    player, player_log = cli("bag", "play", str(bag), "--clock", "--rate", "4", "--loop", "--reliable",
                             "--topics", COLOR, COLOR_INFO, "--wait-for-subscribers", "60", log_name="play")
    try:
        values, _ = diagnostics(client)
        deadline = time.monotonic() + 90.0
        while int(values["frames_received"]) < 150:  # two and a half passes
            assert time.monotonic() < deadline, f"{values}\n{player_log.read_text()}"
            values, stamp = diagnostics(client)
            if int(values["frames_received"]) > 0:  # the bag's clock is running
                assert recorded[0] - 10**9 <= stamp <= recorded[-1] + 10**9, (stamp, recorded[0], recorded[-1])
            assert 0.0 <= float(values["input_rate_hz"]) <= 13.0, values
        assert int(values["frames_skipped"]) == 0, values
    finally:
        finish(player, player_log)
