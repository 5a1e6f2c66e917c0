"""The edge filter through a live depth_node: a step scene loses exactly its ramp in depth and cloud, the
removed fraction is in diagnostics, and turning the filter off at runtime gives the unfiltered depth back.
Expected pixels come from the resize convention (tests/core/test_edges.py's analytic ramp)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from oracles import camera_info, make_contract, save_oracle, step_ramp_depth
from ros_harness import depth_array
from sensor_msgs.msg import Image
from test_node_geometry import set_ok

from depth_ros.ros.codecs import cloud_msg_to_arrays

W, H = 640, 480
NET_W, NET_H = 256, 192
FX = 500.0
NEAR, FAR = 1.0, 2.0


def ramp_columns() -> np.ndarray:
    """Columns whose depth lies more than 5 % from both planes: the step's bilinear ramp."""
    depth = step_ramp_depth(W, NET_W, FX, NEAR, FAR)
    return (depth > NEAR * 1.05) & (depth < FAR / 1.05)


def test_edge_filter_removes_the_ramp_live_and_can_be_turned_off(depth_node: Any, tmp_path: Path) -> None:
    output = np.repeat(np.where(np.arange(NET_W)[None, :] < NET_W // 2, (FX / W) / NEAR, (FX / W) / FAR),
                       NET_H, axis=0).astype(np.float32)
    model = save_oracle(tmp_path, output, make_contract("canonical_inverse_depth", NET_H, NET_W), (NET_H, NET_W))
    _, client = depth_node({"model": str(model), "edge_filter": True})
    image = Image(height=H, width=W, encoding="rgb8", step=W * 3, data=bytes(H * W * 3))
    image.header.frame_id = "camera_optical"
    info = camera_info(W, H, FX, FX, 319.5, 239.5)
    ramp = ramp_columns()
    assert 1 <= ramp.sum() <= 3

    out = client.send(image, info, 1_700_000_000_000_000_000)
    depth = depth_array(out.depth)
    removed = np.isnan(depth)
    np.testing.assert_array_equal(removed, np.broadcast_to(ramp, (H, W)))
    np.testing.assert_allclose(depth[:, :300], NEAR, rtol=1e-5)
    np.testing.assert_allclose(depth[:, 340:], FAR, rtol=1e-5)
    xyz, _ = cloud_msg_to_arrays(out.points)
    assert np.isnan(xyz[..., 2][removed]).all() and np.isfinite(xyz[..., 2][~removed]).all()
    fraction = float(client.latest_diagnostics()["edge_filtered_fraction"])
    assert abs(fraction - removed.mean()) < 1e-4

    set_ok(client, edge_filter=False)  # runtime change: the next frame is unfiltered
    out = client.send(image, info, 1_700_000_000_000_000_001)
    depth = depth_array(out.depth)
    assert np.isfinite(depth).all()
    assert (depth[:, ramp] > NEAR * 1.05).all() and (depth[:, ramp] < FAR / 1.05).all()
