"""FrameProcessor without DDS: the camera registry and one frame's messages, with an oracle model on real ONNX
Runtime. Expected values come from the geometry (a fronto-parallel plane) and the CameraInfo given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from oracles import camera_info, make_contract, save_oracle
from sensor_msgs.msg import Image

from depth_ros.pipeline import DepthEstimator
from depth_ros.ros.codecs import image_msg_to_array
from depth_ros.ros.frame_processor import CAMERA_INFO, DEPTH, CameraRegistry, FrameProcessor
from depth_ros.ros.parameters import PARAMETERS

W, H = 320, 240
FX = 250.0


def image_msg() -> Image:
    msg = Image(height=H, width=W, encoding="rgb8", step=W * 3)
    msg.data = np.random.default_rng(0).integers(0, 256, H * W * 3, dtype=np.uint8).tobytes()
    msg.header.frame_id = "camera_optical"
    return msg


def test_an_unchanged_calibration_keeps_its_camera_model_and_a_changed_one_replaces_it() -> None:
    registry = CameraRegistry()
    first = registry.update(camera_info(W, H, FX, FX, 159.5, 119.5), None)
    again = registry.update(camera_info(W, H, FX, FX, 159.5, 119.5), None)
    assert again is first and registry.lookup((W, H), "camera_info") is first
    changed = registry.update(camera_info(W, H, 2 * FX, 2 * FX, 159.5, 119.5), None)
    assert changed is not first and registry.lookup((W, H), "camera_info").fx == 2 * FX


def test_a_changed_calibration_applies_to_the_next_frame(tmp_path: Path) -> None:
    # Canonical inverse depth C = (fx / W) / Z: the oracle outputs C for a 2 m plane at fx = 250, so with the
    # camera's focal length doubled the same output is a 4 m plane, and the CameraInfo published is the new one.
    contract = make_contract("canonical_inverse_depth", 24, 32, "stretch")
    model = save_oracle(tmp_path, np.full((24, 32), (FX / W) / 2.0, np.float32), contract, (24, 32))
    values: dict[str, Any] = {spec.name: spec.default for spec in PARAMETERS}
    values.update(model=str(model), output_scale=0.5)
    processor = FrameProcessor(DepthEstimator.from_path(model, "onnxruntime"), values)
    for fx, metres in ((FX, 2.0), (FX, 2.0), (2 * FX, 4.0)):
        processor.camera_info(camera_info(W, H, fx, fx, 159.5, 119.5))
        out: dict[str, Any] = {}
        processor.process(image_msg(), out.__setitem__)
        np.testing.assert_array_equal(image_msg_to_array(out[DEPTH]), metres)
        info = out[CAMERA_INFO]
        assert (info.width, info.height) == (W // 2, H // 2)
        # Half-pixel centres under the resize (cv2's convention): c' = (c + 0.5) * 0.5 - 0.5.
        assert list(info.k) == [fx / 2, 0.0, 79.5, 0.0, fx / 2, 59.5, 0.0, 0.0, 1.0]
