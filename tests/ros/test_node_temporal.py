"""The temporal filter through a live depth_node, against the filter's definition in message time: the first
frame is published as estimated, a noise-sized change is blended with alpha = 1 - exp(-dt / time_constant)
(in log depth), a new CameraInfo and time going back restart it, and turning it off gives per-frame depth."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from oracles import camera_info, make_contract
from ros_harness import depth_array
from test_node_geometry import save_model, scene_image, scene_model, set_ok

W, H = 320, 240
T0 = 1_700_000_000_000_000_000
NEAR, FARTHER = 2.0, 2.02  # 1 % apart: noise-sized, below the settle band


def test_temporal_filter_live(depth_node: Any, tmp_path: Path) -> None:
    maps = [np.full((24, 32), NEAR, np.float32), np.full((24, 32), FARTHER, np.float32)]
    model = save_model(scene_model(maps, make_contract("metric_depth", 24, 32), (24, 32)), tmp_path, "two.onnx")
    _, client = depth_node({"model": str(model), "temporal_filter": True, "temporal_time_constant": 0.2})
    info = camera_info(W, H, 250.0, 250.0, 159.5, 119.5)

    def depth_of(scene: int, stamp_ns: int, camera: Any = info) -> np.ndarray:
        return depth_array(client.send(scene_image(W, H, scene, 2), camera, stamp_ns).depth)

    np.testing.assert_array_equal(depth_of(0, T0), np.float32(NEAR))  # the first frame: as estimated
    alpha = 1.0 - math.exp(-0.1 / 0.2)
    blended = depth_of(1, T0 + 100_000_000)  # 0.1 s later, 1 % farther
    np.testing.assert_allclose(blended, NEAR * (FARTHER / NEAR) ** alpha, rtol=1e-6)
    diagnostics = client.latest_diagnostics()
    assert diagnostics["temporal_resets"].endswith("of 2 frames") and diagnostics["temporal_resets"].startswith("1 ")

    other_camera = camera_info(W, H, 260.0, 260.0, 159.5, 119.5)  # a new calibration: the state restarts
    np.testing.assert_array_equal(depth_of(1, T0 + 200_000_000, other_camera), np.float32(FARTHER))
    # time went back: restart
    np.testing.assert_array_equal(depth_of(0, T0 + 50_000_000, other_camera), np.float32(NEAR))

    set_ok(client, temporal_filter=False)
    np.testing.assert_array_equal(depth_of(1, T0 + 150_000_000, other_camera), np.float32(FARTHER))  # per frame again


def test_a_new_image_size_restarts_the_temporal_filter_live(depth_node: Any, tmp_path: Path) -> None:
    """Half the size (its CameraInfo with it): the state describes other pixels, so the frame is published as
    estimated, and the next frame at that size is blended again."""
    maps = [np.full((24, 32), NEAR, np.float32), np.full((24, 32), FARTHER, np.float32)]
    model = save_model(scene_model(maps, make_contract("metric_depth", 24, 32), (24, 32)), tmp_path, "two.onnx")
    _, client = depth_node({"model": str(model), "temporal_filter": True, "temporal_time_constant": 0.2})
    full = camera_info(W, H, 250.0, 250.0, 159.5, 119.5)
    half = camera_info(W // 2, H // 2, 125.0, 125.0, 79.5, 59.5)
    np.testing.assert_array_equal(depth_array(client.send(scene_image(W, H, 0, 2), full, T0).depth), np.float32(NEAR))
    small = depth_array(client.send(scene_image(W // 2, H // 2, 1, 2), half, T0 + 100_000_000).depth)
    assert small.shape == (H // 2, W // 2)
    np.testing.assert_array_equal(small, np.float32(FARTHER))  # restarted: as estimated, not blended
    blended = depth_array(client.send(scene_image(W // 2, H // 2, 0, 2), half, T0 + 200_000_000).depth)
    alpha = 1.0 - math.exp(-0.1 / 0.2)
    np.testing.assert_allclose(blended, FARTHER * (NEAR / FARTHER) ** alpha, rtol=1e-6)
    diagnostics = client.latest_diagnostics()
    assert diagnostics["temporal_resets"].startswith("2 ") and diagnostics["temporal_resets"].endswith("of 3 frames")
