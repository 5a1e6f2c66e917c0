"""`make demo`'s main job: the real D435 sample through a live depth_node, recorded to a rosbag2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from rclpy.serialization import deserialize_message
from ros_harness import ros_env
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from depth_ros.bags.io import read_raw
from depth_ros.ros import codecs

REPO = Path(__file__).resolve().parents[2]


def test_demo_records_outputs_and_preview(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    # The demo reserves a domain of its own (run_demo without domain_id: reserve_domain_id()), distinct from
    # this run's and any other run's; its topics are not namespaced per test.
    env = ros_env()
    result = subprocess.run([sys.executable, "-m", "depth_ros.cli", "demo", "--out", str(out), "--loops", "4"],
                            env=env, capture_output=True, text=True, timeout=180, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 frames in" in result.stdout

    messages = list(read_raw(out / "outputs"))
    by_topic: dict[str, list] = {}
    for message in messages:
        by_topic.setdefault(message.topic, []).append(message)
    for topic in ("/camera/depth", "/camera/depth/camera_info", "/camera/points", "/camera/depth/colored"):
        assert len(by_topic.get(topic, [])) == 4, (topic, {t: len(v) for t, v in by_topic.items()})

    source = deserialize_message(by_topic["/device_0/sensor_1/Color_0/image/data"][0].data, Image)
    depth_msg = deserialize_message(by_topic["/camera/depth"][0].data, Image)
    info = deserialize_message(by_topic["/camera/depth/camera_info"][0].data, CameraInfo)
    cloud = deserialize_message(by_topic["/camera/points"][0].data, PointCloud2)
    # The bag's image: frame_id '0'; the outputs keep it, and its size.
    assert depth_msg.header.frame_id == source.header.frame_id == "0"
    assert (depth_msg.width, depth_msg.height) == (info.width, info.height) == (640, 480)
    assert depth_msg.encoding == "32FC1"
    # P was all zeros in the driver's CameraInfo: the published one carries the K the node used.
    np.testing.assert_allclose(np.array(info.k)[[0, 2, 4, 5]], [613.2037, 319.9388, 613.4193, 239.1830], rtol=1e-6)
    np.testing.assert_allclose(np.array(info.p)[[0, 2, 5, 6]], [613.2037, 319.9388, 613.4193, 239.1830], rtol=1e-6)
    depth = codecs.image_msg_to_array(depth_msg)
    valid = np.isfinite(depth)
    assert valid.mean() > 0.9 and np.all(depth[valid] > 0.1) and np.all(depth[valid] < 20.0)
    xyz, _ = codecs.cloud_msg_to_arrays(cloud)
    assert xyz.shape == (480, 640, 3)
    np.testing.assert_allclose(xyz[:, :, 2][valid], depth[valid], rtol=1e-6)
    u = np.arange(640)[None, :].repeat(480, 0)
    np.testing.assert_allclose(xyz[:, :, 0][valid], ((u - 319.9388) / 613.2037 * depth)[valid], rtol=1e-4, atol=1e-5)

    preview = cv2.imread(str(out / "preview.png"))
    assert preview is not None and preview.shape == (480, 3 * 640, 3)
    # Three distinct panels: the input on the left is the real colour frame.
    rgb = codecs.image_to_rgb(source)
    left = preview[40:, :640, ::-1].astype(int)  # below the title text
    assert np.abs(left - rgb[40:].astype(int)).mean() < 1.0
