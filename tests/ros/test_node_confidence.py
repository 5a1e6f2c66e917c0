"""depth/confidence through a live depth_node, against the definition (core.confidence): 32FC1 in [0, 1], same
size and header as depth, published only to a subscriber; the model's declared uncertainty output (a second ONNX
output, read by ONNX Runtime here) sets it where the depth is smooth, the step's window lowers it, and with the
temporal filter on the second frame's noise terms are lowered by the filter's averaging
(sqrt(alpha / (2 - alpha))) while the first frame after a restart is not."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from oracles import camera_info, make_contract, save_oracle
from ros_harness import depth_array
from sensor_msgs.msg import Image

from depth_ros.core.confidence import TOLERANCE

W, H = 320, 240
NET_W, NET_H = 160, 120
FX = 250.0
NEAR, FAR = 1.0, 2.0
SIGMA_TOP, SIGMA_BOTTOM = 0.2, 0.01
T0 = 1_700_000_000_000_000_000


def expected(sigma: float) -> float:
    return 1.0 / (1.0 + (sigma / TOLERANCE) ** 2)


def oracle(tmp_path: Path) -> Path:
    """Metric depth NEAR | FAR (a vertical step in the middle) with a sigma output SIGMA_TOP above the middle
    row, SIGMA_BOTTOM below."""
    depth = np.where(np.arange(NET_W)[None, :] < NET_W // 2, NEAR, FAR).repeat(NET_H, axis=0).astype(np.float32)
    sigma = np.where(np.arange(NET_H)[:, None] < NET_H // 2, SIGMA_TOP, SIGMA_BOTTOM).repeat(NET_W, axis=1)
    contract = make_contract("metric_depth", NET_H, NET_W, confidence_output={"index": 1, "kind": "sigma"})
    return save_oracle(tmp_path, depth, contract, (NET_H, NET_W), second_output=sigma.astype(np.float32))


def test_confidence_live(depth_node: Any, tmp_path: Path) -> None:
    process, client = depth_node({"model": str(oracle(tmp_path)), "temporal_filter": True,
                                  "temporal_time_constant": 0.2, "edge_filter": False})
    image = Image(height=H, width=W, encoding="rgb8", step=W * 3, data=bytes(H * W * 3))
    image.header.frame_id = "camera_optical"
    info = camera_info(W, H, FX, FX, 159.5, 119.5)
    client.send(image, info, T0)
    # Nobody subscribes to depth/confidence yet: it is not computed (no confidence stage in the latencies).
    assert not any(key.startswith("latency_confidence") for key in client.latest_diagnostics())
    received: list[Image] = []
    client.add_subscription(Image, "depth/confidence", received.append)
    client.wait_ready(process)

    def confidence_of(stamp: int, camera: Any) -> tuple[np.ndarray, Image, Image]:
        out = client.send(image, camera, stamp)

        def mine() -> list[Image]:
            return [m for m in received if m.header.stamp.sec * 10**9 + m.header.stamp.nanosec == stamp]

        for _ in range(500):
            if mine():
                break
            client.spin(0.02)
        assert mine(), "no depth/confidence for the frame"
        msg = mine()[0]
        assert msg.encoding == "32FC1"
        return depth_array(msg), msg, out.depth

    # A new calibration restarts the temporal filter: this frame's confidence has no averaging.
    info = camera_info(W, H, FX + 1.0, FX + 1.0, 159.5, 119.5)
    first, msg, depth_msg = confidence_of(T0 + 1, info)
    assert (msg.header.frame_id, msg.header.stamp, msg.width, msg.height) == (
        depth_msg.header.frame_id, depth_msg.header.stamp, depth_msg.width, depth_msg.height)
    assert ((0.0 <= first) & (first <= 1.0)).all()
    top, bottom = first[: H // 2 - 4, : W // 2 - 8], first[H // 2 + 4:, : W // 2 - 8]
    np.testing.assert_allclose(top, expected(SIGMA_TOP), rtol=1e-5)
    np.testing.assert_allclose(bottom, expected(SIGMA_BOTTOM), rtol=1e-5)
    np.testing.assert_allclose(first[H // 2 + 4:, W // 2 + 8:], expected(SIGMA_BOTTOM), rtol=1e-5)
    # The step, resized 2x bilinearly (half-pixel centres): columns 159 and 160 are 1.25 and 1.75 m, and the
    # window (radius 1) of 159 holds 1.0 ... 1.75 (a 75 % range), that of 160 1.25 ... 2.0 (60 %).
    depth = depth_array(depth_msg)
    np.testing.assert_allclose(depth[:, W // 2 - 1: W // 2 + 1], np.broadcast_to([1.25, 1.75], (H, 2)), rtol=1e-6)
    rows = slice(H // 2 + 4, None)
    np.testing.assert_allclose(first[rows, W // 2 - 1], expected(math.hypot(0.75 / 2, SIGMA_BOTTOM)), rtol=1e-4)
    np.testing.assert_allclose(first[rows, W // 2], expected(math.hypot(0.6 / 2, SIGMA_BOTTOM)), rtol=1e-4)

    # 0.1 s later, the same depth: blended with alpha; the network's sigma is averaged down, the spread is 0.
    second, _, _ = confidence_of(T0 + 1 + 100_000_000, info)
    alpha = 1.0 - math.exp(-0.1 / 0.2)
    reduction = math.sqrt(alpha / (2.0 - alpha))
    np.testing.assert_allclose(second[: H // 2 - 4, : W // 2 - 8], expected(SIGMA_TOP * reduction), rtol=1e-5)
    np.testing.assert_allclose(second[H // 2 + 4:, : W // 2 - 8], expected(SIGMA_BOTTOM * reduction), rtol=1e-5)
    assert np.isfinite(depth_array(client.outputs[T0 + 1].depth)).all()
    assert any(key.startswith("latency_confidence") for key in client.latest_diagnostics())
