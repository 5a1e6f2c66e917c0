"""Bag workflows on the real D435 capture: `depth-ros bag process` (offline, no DDS), its failure
modes, and `bag play` -> depth_node -> `bag record` over DDS.

Ground truth: an oracle model outputs the canonical inverse depth of the sensor's own depth frame
(data/realsense_d435/depth_in_color_mm.png), so the written depth must be that frame in metres and
the cloud its pinhole back-projection with the colour intrinsics from the data's README.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from oracles import make_contract, save_oracle
from rclpy.serialization import deserialize_message, serialize_message
from ros_harness import PARAMS_FILE, ros_env
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from depth_ros.bags.io import BagWriter, RawMessage, read_raw
from depth_ros.bags.process import camera_namespace, output_topics, pair_camera_info, process_bag
from depth_ros.cli import main as cli_main
from depth_ros.cli.demo import write_frame_sequence
from depth_ros.ros import codecs

REPO = Path(__file__).resolve().parents[2]
D435 = REPO / "data" / "realsense_d435"
ROS2_BAG = D435 / "d435_rosbag2"
ROS1_BAG = D435 / "single_depth_color_640x480.bag"
IMAGE_TOPIC = "/device_0/sensor_1/Color_0/image/data"
INFO_TOPIC = "/device_0/sensor_1/Color_0/info/camera_info"
OUT_NS = "/device_0/sensor_1/Color_0"  # the camera namespace of INFO_TOPIC
FX, FY, CX, CY = 613.2037, 613.4193, 319.9388, 239.1830  # colour intrinsics (data/realsense_d435/README.md)
IMAGE_BAG_TIME_NS, IMAGE_STAMP_NS = 54_424_400, 360_713_523_000
RANGE = ["min_depth:=0.1", "max_depth:=20.0"]


# ----------------------------------------------------------------------------- helpers

def truth_m() -> np.ndarray:
    mm = cv2.imread(str(D435 / "depth_in_color_mm.png"), cv2.IMREAD_UNCHANGED)
    assert mm is not None and mm.dtype == np.uint16 and mm.shape == (480, 640)
    return (mm.astype(np.float64) / 1000.0).astype(np.float32)  # 0 = no data


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """C = (fx/W) / D_gt: only the right CameraInfo (fx) turns it back into the sensor's depth."""
    truth = truth_m()
    canonical = np.zeros(truth.shape, np.float64)
    canonical[truth > 0] = (FX / 640.0) / truth[truth > 0].astype(np.float64)
    contract = make_contract("canonical_inverse_depth", 480, 640, "stretch")
    return save_oracle(tmp_path_factory.mktemp("oracle"), canonical.astype(np.float32), contract, (480, 640))


def by_topic(bag: Path) -> dict[str, list[RawMessage]]:
    found: dict[str, list[RawMessage]] = {}
    for message in read_raw(bag):
        found.setdefault(message.topic, []).append(message)
    return found


def sample() -> dict[str, RawMessage]:
    return {m.topic: m for m in read_raw(ROS2_BAG, [IMAGE_TOPIC, INFO_TOPIC])}


def pinhole(depth: np.ndarray, fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    v, u = np.mgrid[0:depth.shape[0], 0:depth.shape[1]].astype(np.float64)
    return np.stack([(u - cx) / fx * depth, (v - cy) / fy * depth, depth], axis=-1)


def check_against_truth(depth: np.ndarray, xyz: np.ndarray, fx: float = FX, scale: float = 1.0) -> None:
    truth = truth_m().astype(np.float64) * scale
    valid = truth > 0
    assert np.isnan(depth[~valid]).all() and np.isfinite(depth[valid]).all()
    np.testing.assert_allclose(depth[valid], truth[valid], rtol=2e-6)
    expected = pinhole(np.where(valid, truth, np.nan), fx, fx / FX * FY, CX, CY)
    np.testing.assert_allclose(xyz[valid], expected[valid], rtol=1e-5, atol=1e-6)
    assert np.isnan(xyz[~valid]).all()


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli_main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ----------------------------------------------------------------------------- topic rules

def test_camera_pairing_and_output_naming_rules() -> None:
    infos = ["/camera/color/camera_info", "/camera/depth/camera_info", "/device_0/sensor_1/Color_0/info/camera_info",
             "/device_0/sensor_0/Depth_0/info/camera_info", "/camera_info"]
    assert camera_namespace("/device_0/sensor_1/Color_0/info/camera_info") == "/device_0/sensor_1/Color_0"
    assert camera_namespace("/camera/color/camera_info") == "/camera/color"
    assert pair_camera_info("/camera/color/image_raw", infos) == "/camera/color/camera_info"
    assert pair_camera_info("/camera/color/image_raw/compressed", infos) == "/camera/color/camera_info"
    assert pair_camera_info("/camera/depth/image_rect_raw", infos) == "/camera/depth/camera_info"
    assert pair_camera_info(IMAGE_TOPIC, infos) == INFO_TOPIC
    assert pair_camera_info("/device_0/sensor_0/Depth_0/image/data", infos) == \
        "/device_0/sensor_0/Depth_0/info/camera_info"
    assert pair_camera_info("/image", infos) == "/camera_info"  # root namespace: the last resort
    assert pair_camera_info("/image", infos[:-1]) is None
    assert pair_camera_info("/cameraX/image", ["/camera/camera_info"]) is None  # namespaces, not string prefixes
    assert output_topics("/cam/") == {"depth": "/cam/depth", "depth/camera_info": "/cam/depth/camera_info",
                                      "depth/colored": "/cam/depth/colored", "points": "/cam/points",
                                      "depth/confidence": "/cam/depth/confidence"}
    assert output_topics("/")["points"] == "/points"


# ----------------------------------------------------------------------------- bag process

def test_ros1_and_ros2_d435_bags_give_identical_outputs_matching_ground_truth(oracle: Path, tmp_path: Path) -> None:
    results = {}
    for name, bag in (("ros1", ROS1_BAG), ("ros2", ROS2_BAG)):
        result = process_bag(bag, tmp_path / name, overrides=[f"model:={oracle}", "backend:=onnxruntime", *RANGE],
                             progress=False,
                             log=lambda line: None)
        assert [(c.image, c.info, c.processed) for c in result.cameras] == [(IMAGE_TOPIC, INFO_TOPIC, 1)]
        results[name] = by_topic(tmp_path / name)

    outputs = {f"{OUT_NS}/depth": Image, f"{OUT_NS}/depth/camera_info": CameraInfo,
               f"{OUT_NS}/depth/colored": Image, f"{OUT_NS}/points": PointCloud2}
    source = by_topic(ROS2_BAG)
    for name, written in results.items():
        # Every input topic is carried over; the sensor_msgs ones byte-identical to the ROS 2 bag
        # (for the ROS 1 bag that checks its conversion to CDR).
        assert set(source) <= set(written), name
        for topic in (IMAGE_TOPIC, INFO_TOPIC, "/device_0/sensor_0/Depth_0/image/data"):
            assert [m.data for m in written[topic]] == [m.data for m in source[topic]], (name, topic)
        for topic, cls in outputs.items():
            assert len(written[topic]) == 1, (name, topic)
            message = written[topic][0]
            assert message.timestamp_ns == IMAGE_BAG_TIME_NS  # the image's own record time
            header = deserialize_message(message.data, cls).header
            assert (header.stamp.sec * 10**9 + header.stamp.nanosec, header.frame_id) == (IMAGE_STAMP_NS, "0")
    assert len(results["ros1"]) > len(results["ros2"])  # the ROS 1 bag's RealSense extras (options, ...) too

    decoded = {}
    for name, written in results.items():
        depth_msg = deserialize_message(written[f"{OUT_NS}/depth"][0].data, Image)
        cloud_msg = deserialize_message(written[f"{OUT_NS}/points"][0].data, PointCloud2)
        info = deserialize_message(written[f"{OUT_NS}/depth/camera_info"][0].data, CameraInfo)
        colored = deserialize_message(written[f"{OUT_NS}/depth/colored"][0].data, Image)
        decoded[name] = (depth_msg, cloud_msg, info, colored)
        depth = codecs.image_msg_to_array(depth_msg)
        xyz, _ = codecs.cloud_msg_to_arrays(cloud_msg)
        check_against_truth(depth, xyz)
        np.testing.assert_allclose(np.asarray(info.k)[[0, 2, 4, 5]], [FX, CX, FY, CY], rtol=1e-6)
    # Same input content -> the same outputs. Messages are compared field by field (and the pixel and
    # point buffers byte by byte): rclpy leaves CDR alignment padding uninitialised, so whole
    # serialized messages can differ in padding bytes only.
    (d1, c1, i1, k1), (d2, c2, i2, k2) = decoded["ros1"], decoded["ros2"]
    assert bytes(d1.data) == bytes(d2.data) and bytes(c1.data) == bytes(c2.data) and bytes(k1.data) == bytes(k2.data)
    assert d1 == d2 and c1 == c2 and i1 == i2 and k1 == k2


def test_written_bag_round_trips_through_rosbags(oracle: Path, tmp_path: Path) -> None:
    """An independent reader (rosbags' own typestore, not rclpy) sees a complete MCAP rosbag2."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    out = tmp_path / "out"
    process_bag(ROS2_BAG, out, overrides=[f"model:={oracle}", "backend:=onnxruntime", *RANGE], progress=False,
                log=lambda line: None)
    assert sorted(p.name for p in out.iterdir()) == ["metadata.yaml", "out.mcap"]
    assert not list(tmp_path.glob("*.partial-*"))
    with AnyReader([out], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts[f"{OUT_NS}/depth"] == counts[f"{OUT_NS}/points"] == 1
        for connection, _, data in reader.messages():
            if connection.topic == f"{OUT_NS}/depth":
                msg = reader.deserialize(data, connection.msgtype)
                assert (msg.encoding, msg.height, msg.width, msg.step) == ("32FC1", 480, 640, 640 * 4)
                depth = np.frombuffer(msg.data.tobytes(), "<f4").reshape(480, 640)
            if connection.topic == f"{OUT_NS}/points":
                cloud = reader.deserialize(data, connection.msgtype)
                assert [(f.name, f.offset) for f in cloud.fields][:3] == [("x", 0), ("y", 4), ("z", 8)]
                xyz = np.frombuffer(cloud.data.tobytes(), "<f4").reshape(480, 640, cloud.point_step // 4)[..., :3]
    check_against_truth(depth, xyz)


def test_two_cameras_sqlite3_compressed_each_with_its_own_camera_info(oracle: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """sqlite3 storage, a raw and a PNG-compressed camera whose CameraInfo differ (fx x2): each image
    pairs with its own camera's CameraInfo, so the right camera's depth is exactly twice the left's."""
    raw = sample()
    image = deserialize_message(raw[IMAGE_TOPIC].data, Image)
    info = deserialize_message(raw[INFO_TOPIC].data, CameraInfo)
    wide = deserialize_message(raw[INFO_TOPIC].data, CameraInfo)
    wide.k = [2 * info.k[0], 0.0, info.k[2], 0.0, 2 * info.k[4], info.k[5], 0.0, 0.0, 1.0]
    png = CompressedImage(header=image.header, format="rgb8; png compressed bgr8")
    ok, encoded = cv2.imencode(".png", codecs.image_to_rgb(image)[:, :, ::-1])
    assert ok
    png.data = encoded.tobytes()
    bag = tmp_path / "two_cameras"
    with BagWriter(bag, storage="sqlite3") as writer:
        def put(topic: str, msg: object, at: int) -> None:
            writer.write(topic, f"sensor_msgs/msg/{type(msg).__name__}", at, serialize_message(msg))
        put("/left/color/image_raw", image, 1_000)  # before any CameraInfo: skipped, counted
        put("/left/color/camera_info", info, 2_000)
        put("/right/color/camera_info", wide, 2_000)
        put("/right/depth/camera_info", info, 2_000)  # another camera of the same rig: must not be used
        put("/left/color/image_raw", image, 3_000)
        put("/right/color/image_raw/compressed", png, 3_000)

    # Two candidate cameras: auto-detection refuses to guess and names both.
    code, _, err = run_cli(["bag", "process", str(bag), str(tmp_path / "auto")], capsys)
    assert code == 1 and "/left/color/image_raw" in err and "/right/color/image_raw/compressed" in err
    assert "Traceback" not in err and not (tmp_path / "auto").exists()

    out = tmp_path / "out"
    code, stdout, err = run_cli(["bag", "process", str(bag), str(out), "--image-topic", "/left/color/image_raw",
                                 "--image-topic", "/right/color/image_raw/compressed", "-p", f"model:={oracle}",
                                 "-p", "backend:=onnxruntime", *[a for r in RANGE for a in ("-p", r)]], capsys)
    assert code == 0, err
    assert "/left/color/image_raw: 1 frames, skipped 1 no_camera_info" in stdout
    written = by_topic(out)
    arrays = {}
    for side, fx in (("left", FX), ("right", 2 * FX)):
        assert len(written[f"/{side}/color/depth"]) == 1 and written[f"/{side}/color/depth"][0].timestamp_ns == 3_000
        published = deserialize_message(written[f"/{side}/color/depth/camera_info"][0].data, CameraInfo)
        assert published.k[0] == (info.k[0] if side == "left" else 2 * info.k[0])
        depth = codecs.image_msg_to_array(deserialize_message(written[f"/{side}/color/depth"][0].data, Image))
        xyz, _ = codecs.cloud_msg_to_arrays(deserialize_message(written[f"/{side}/color/points"][0].data, PointCloud2))
        arrays[side] = depth
        check_against_truth(depth, xyz, fx=fx, scale=fx / FX)
    valid = np.isfinite(arrays["left"])
    np.testing.assert_allclose(arrays["right"][valid], 2 * arrays["left"][valid], rtol=1e-6)


def test_bad_bags_and_arguments_give_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = sample()
    cases: list[tuple[list[str], int, list[str]]] = []

    truncated = tmp_path / "truncated"
    write_frame_sequence(truncated, raw[IMAGE_TOPIC], raw[INFO_TOPIC], 10, 0.1)
    mcap = truncated / "truncated.mcap"
    with mcap.open("r+b") as handle:
        handle.truncate(mcap.stat().st_size // 2)
    cases.append(([str(truncated)], 1, [str(truncated), "truncated"]))
    truncated_ros1 = tmp_path / "truncated.bag"
    truncated_ros1.write_bytes(ROS1_BAG.read_bytes()[:500_000])
    cases.append(([str(truncated_ros1)], 1, [str(truncated_ros1), "truncated"]))

    cases.append(([str(ROS2_BAG), "--image-topic", "/nope/image"], 1, ["/nope/image"]))
    cases.append(([str(ROS2_BAG), "--image-topic", INFO_TOPIC], 1, [INFO_TOPIC, "CameraInfo"]))

    weird = tmp_path / "weird"
    image = deserialize_message(raw[IMAGE_TOPIC].data, Image)
    image.encoding = "weird8"
    with BagWriter(weird) as writer:
        writer.write(INFO_TOPIC, "sensor_msgs/msg/CameraInfo", 1, raw[INFO_TOPIC].data)
        writer.write(IMAGE_TOPIC, "sensor_msgs/msg/Image", 2, serialize_message(image))
    cases.append(([str(weird), "--image-topic", IMAGE_TOPIC], 1, [IMAGE_TOPIC, "weird8"]))

    cases.append(([str(ROS2_BAG), "-p", "max_depth:=-1.0"], 2, ["max_depth"]))
    cases.append(([str(ROS2_BAG), "-p", "no_such:=1"], 2, ["no_such"]))
    cases.append(([str(ROS2_BAG), "-p", "model:=/nonexistent/model.onnx"], 2, ["/nonexistent/model.onnx"]))

    for index, (args, expected_code, needles) in enumerate(cases):
        out = tmp_path / f"out{index}"
        code, _, err = run_cli(["bag", "process", *args[:1], str(out), *args[1:], "-q"], capsys)
        assert code == expected_code, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        for needle in needles:
            assert needle in err, (needle, err)
        assert not out.exists() and not list(tmp_path.glob("*.partial-*")), args

    # An existing OUT is never replaced without --overwrite, and replaced only by a complete run.
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep").write_text("x")
    code, _, err = run_cli(["bag", "process", str(ROS2_BAG), str(existing), "-q"], capsys)
    assert code == 1 and "--overwrite" in err and (existing / "keep").exists()
    code, _, err = run_cli(["bag", "process", str(weird), str(existing), "--overwrite", "-q",
                            "--image-topic", IMAGE_TOPIC], capsys)
    assert code == 1 and (existing / "keep").exists()


def test_interrupted_run_leaves_no_output(tmp_path: Path) -> None:
    """SIGINT mid-run (seen on the progress bar, which shows on a terminal): exit 130, no OUT, no partial."""
    raw = sample()
    bag = tmp_path / "long"
    write_frame_sequence(bag, raw[IMAGE_TOPIC], raw[INFO_TOPIC], 200, 1 / 30)
    out = tmp_path / "out"
    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "depth_ros.cli", "bag", "process", str(bag), str(out)],
                               stdout=subprocess.DEVNULL, stderr=slave, cwd=REPO)
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
            # The bar shows done/total frames, frames/s and ETA; interrupt once a few frames are written.
            done = [int(x.split(b"/")[0]) for x in seen.split(b"] ")[1:] if b"/200 frames" in x]
            if done and done[-1] >= 3:
                break
        assert process.poll() is None, f"finished before it could be interrupted:\n{seen.decode(errors='replace')}"
        assert b"frames/s" in seen and b"ETA" in seen
        assert list(tmp_path.glob("out.partial-*")), "the run writes to a partial path"
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
        while select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    text = seen.decode(errors="replace")
    assert code == 130, text
    assert "interrupted" in text and "Traceback" not in text
    assert not out.exists() and not list(tmp_path.glob("out.partial-*"))


# ----------------------------------------------------------------------------- over DDS

def test_play_into_node_and_record_matches_offline_processing(tmp_path: Path, own_domain: int) -> None:
    """bag play -> depth_node -> bag record (three processes over Fast DDS) gives exactly what
    `bag process` computes offline from the same bag: same depth and cloud, same header."""
    offline = tmp_path / "offline"
    process_bag(ROS2_BAG, offline, progress=False, log=lambda line: None)
    expected = by_topic(offline)

    env = ros_env(own_domain)  # a domain of its own: the bag's topics are global names
    env["PYTHONUNBUFFERED"] = "1"
    ns = "/bagtest"
    cli = [sys.executable, "-m", "depth_ros.cli", "bag"]
    node = subprocess.Popen([sys.executable, "-m", "depth_ros.ros.node", "--ros-args",
                             "--params-file", str(PARAMS_FILE),
                             "-r", f"__ns:={ns}", "-r", f"image:={IMAGE_TOPIC}", "-r", f"camera_info:={INFO_TOPIC}",
                             # Reliable: the bag holds ONE frame, and a best-effort first sample can be lost
                             # while the node's reader is still discovering the player (seen on a loaded machine).
                             "-p", "input_qos_reliability:=reliable"],
                            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    recorded = tmp_path / "recorded"
    recorder = subprocess.Popen([*cli, "record", str(recorded), "--topics", f"{ns}/depth", f"{ns}/points",
                                 f"{ns}/depth/camera_info"], env=env, cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    record_out = ""
    try:
        # The recorder learns the types from the graph: it starts once the node advertises its outputs.
        assert recorder.stdout is not None
        for line in recorder.stdout:
            record_out += line
            if "recording" in line:
                break
        assert recorder.poll() is None, record_out
        time.sleep(2.0)  # the node's publishers match the recorder's subscriptions (else: no subscribers)
        player = subprocess.run([*cli, "play", str(ROS2_BAG), "--topics", INFO_TOPIC, IMAGE_TOPIC,
                                 "--wait-for-subscribers", "60", "--reliable"],
                                env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert player.returncode == 0, player.stdout + player.stderr
        assert "published 2 messages" in player.stdout
        time.sleep(3.0)  # the frame's outputs reach the recorder
    finally:
        recorder.send_signal(signal.SIGINT)
        record_out += recorder.communicate(timeout=30)[0]
        node.send_signal(signal.SIGINT)
        node_out = node.communicate(timeout=30)[0]
    assert recorder.returncode == 0, record_out
    assert node.returncode == 0, node_out

    written = by_topic(recorded)
    for kind, cls in (("depth", Image), ("points", PointCloud2), ("depth/camera_info", CameraInfo)):
        live = written.get(f"{ns}/{kind}", [])
        assert len(live) == 1, f"{kind}: {len(live)} messages\nrecorder:\n{record_out}\nnode:\n{node_out}"
        got = deserialize_message(live[0].data, cls)
        want = deserialize_message(expected[f"{OUT_NS}/{kind}"][0].data, cls)
        assert got == want, kind  # header included: the live node stamps outputs with the bag's image header
        if kind != "depth/camera_info":
            assert bytes(got.data) == bytes(want.data)


def window_extremes(depth: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Farthest and nearest valid depth in each (2 radius + 1)^2 window, by shifting (edges replicated): a plain
    rewrite of the definitions in core.edges / core.confidence, not their code."""
    valid = np.isfinite(depth) & (depth > 0)
    far = np.pad(np.where(valid, depth, -np.inf), radius, mode="edge")
    near = np.pad(np.where(valid, depth, np.inf), radius, mode="edge")
    height, width = depth.shape
    farthest = np.full(depth.shape, -np.inf)
    nearest = np.full(depth.shape, np.inf)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            farthest = np.maximum(farthest, far[dy: dy + height, dx: dx + width])
            nearest = np.minimum(nearest, near[dy: dy + height, dx: dx + width])
    return farthest, nearest


def test_filters_and_confidence_in_bag_process_follow_their_definitions(tmp_path: Path) -> None:
    """`bag process` with the edge filter and --confidence on the real D435 frame, predicted as a network would
    (its true inverse depth area-averaged to 160x120, resized back up by the pipeline: window radius 2). Against
    the same run without them: exactly the pixels with depth more than 5 % nearer and farther in their window are
    removed, the rest is unchanged, and the confidence is 1 / (1 + (range / 2 / 0.05)^2) of the filtered depth."""
    from depth_ros.core.evaluation import network_like_inverse

    truth = truth_m()
    low = network_like_inverse(np.where(truth > 0, truth, np.nan).astype(np.float32), 160, 120)
    canonical = np.nan_to_num((FX / 640) * low, nan=0.0).astype(np.float32)
    model = save_oracle(tmp_path, canonical, make_contract("canonical_inverse_depth", 120, 160, "stretch"), (120, 160))
    overrides = [f"model:={model}", "backend:=onnxruntime", *RANGE]
    plain, filtered = tmp_path / "plain", tmp_path / "filtered"
    process_bag(ROS2_BAG, plain, overrides=[*overrides, "edge_filter:=false"], progress=False, log=lambda line: None)
    process_bag(ROS2_BAG, filtered, overrides=[*overrides, "edge_filter:=true", "edge_threshold:=0.05"],
                progress=False, log=lambda line: None, confidence=True)
    assert f"{OUT_NS}/depth/confidence" not in by_topic(plain)  # only when asked
    written = by_topic(filtered)

    def depth_of(bag: dict[str, list[RawMessage]]) -> np.ndarray:
        return codecs.image_msg_to_array(deserialize_message(bag[f"{OUT_NS}/depth"][0].data, Image)).astype(np.float64)

    unfiltered, depth = depth_of(by_topic(plain)), depth_of(written)
    farthest, nearest = window_extremes(unfiltered, 2)
    edge = np.isfinite(unfiltered) & (farthest > unfiltered * 1.05) & (nearest < unfiltered / 1.05)
    assert 1000 < edge.sum() < 0.1 * edge.size  # the frame has real occlusion edges
    np.testing.assert_array_equal(np.isnan(depth), np.isnan(unfiltered) | edge)
    np.testing.assert_array_equal(depth[~np.isnan(depth)], unfiltered[~np.isnan(depth)])

    [message] = written[f"{OUT_NS}/depth/confidence"]
    confidence_msg = deserialize_message(message.data, Image)
    assert confidence_msg.encoding == "32FC1" and (confidence_msg.height, confidence_msg.width) == (480, 640)
    assert confidence_msg.header == deserialize_message(written[f"{OUT_NS}/depth"][0].data, Image).header
    confidence = codecs.image_msg_to_array(confidence_msg)
    farthest, nearest = window_extremes(depth, 2)
    with np.errstate(invalid="ignore"):
        want = 1.0 / (1.0 + ((farthest / nearest - 1.0) / 2.0 / 0.05) ** 2)
    want[np.isnan(depth)] = 0.0
    np.testing.assert_allclose(confidence, want, rtol=1e-4, atol=1e-6)
