"""A model's uncertainty output (the contract's ``confidence_output``) read by every backend this machine runs:
ONNX Runtime (a two-output graph) and torch (a network returning two tensors), through the host and the device
pipelines; a contract naming an output the model lacks fails at load with what to fix. (TensorRT:
tests/backends/test_tensorrt_gpu.py.)"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from oracles import camera_info, make_contract, save_oracle

from depth_ros.backends import ModelLoadError
from depth_ros.core.camera import CameraModel
from depth_ros.core.confidence import TOLERANCE
from depth_ros.pipeline import DepthEstimator

W, H = 128, 96


def expected(sigma: float) -> float:
    return 1.0 / (1.0 + (sigma / TOLERANCE) ** 2)


def two_output_oracle(tmp_path: Path, kind: str, values: tuple[float, float], index: int = 1) -> Path:
    depth = np.full((24, 32), 2.0, np.float32)
    second = np.where(np.arange(24)[:, None] < 12, values[0], values[1]).repeat(32, axis=1).astype(np.float32)
    contract = make_contract("metric_depth", 24, 32, confidence_output={"index": index, "kind": kind})
    return save_oracle(tmp_path, depth, contract, (24, 32), second_output=second)


@pytest.mark.parametrize(("kind", "values", "top", "bottom"), [
    ("sigma", (0.1, 0.02), expected(0.1), expected(0.02)),
    ("log_sigma", (math.log(0.1), math.log(0.02)), expected(0.1), expected(0.02)),
    ("confidence", (0.3, 0.9), 0.3, 0.9),
])
def test_onnxruntime_reads_the_uncertainty_output(tmp_path: Path, kind: str, values: tuple[float, float],
                                                  top: float, bottom: float) -> None:
    estimator = DepthEstimator.from_path(two_output_oracle(tmp_path, kind, values), "onnxruntime")
    assert estimator.backend.output_count == 2
    camera = CameraModel.from_camera_info(camera_info(W, H, 100.0, 100.0, 63.5, 47.5))
    rgb = np.zeros((H, W, 3), np.uint8)
    frame = estimator.estimate(rgb, camera, confidence=True)
    assert frame.confidence is not None and frame.confidence.shape == (H, W)
    np.testing.assert_allclose(frame.confidence[: H // 2 - 4], top, rtol=1e-5)  # flat depth: only the network's
    np.testing.assert_allclose(frame.confidence[H // 2 + 4:], bottom, rtol=1e-5)
    plain = estimator.estimate(rgb, camera)
    assert plain.confidence is None and "confidence" not in plain.timings
    np.testing.assert_array_equal(plain.depth, frame.depth)
    tensor = np.zeros((1, 3, 24, 32), np.float32)
    first, second = estimator.backend.infer(tensor, (1,))
    np.testing.assert_array_equal(first, estimator.backend.infer(tensor))
    assert second.reshape(24, 32)[0, 0] == pytest.approx(values[0], rel=1e-6)


def test_a_contract_naming_a_missing_output_fails_at_load(tmp_path: Path) -> None:
    path = two_output_oracle(tmp_path, "sigma", (0.1, 0.1), index=2)
    with pytest.raises(ModelLoadError, match="output 2 as its confidence output, but the model has 2"):
        DepthEstimator.from_path(path, "onnxruntime")


def test_torch_backend_reads_a_second_network_output(tmp_path: Path) -> None:
    """A network returning (depth, log sigma), through the torch backend on both pipelines."""
    torch = pytest.importorskip("torch")
    from depth_ros.backends.torch_backend import TorchBackend
    from depth_ros.core.contract import ModelContract

    class TwoHeads(torch.nn.Module):
        def forward(self, x):  # type: ignore[no-untyped-def]
            depth = torch.full_like(x[:, :1], 2.0) + 0.0 * x[:, :1]
            rows = torch.arange(x.shape[2], dtype=x.dtype)[None, None, :, None].expand_as(depth)
            log_sigma = torch.where(rows < x.shape[2] // 2, math.log(0.1), math.log(0.02))
            return depth[:, 0], log_sigma[:, 0]

    backend = TorchBackend.__new__(TorchBackend)  # the backend's code around a network of the test's own
    backend.device, backend._dtype, backend._model = "cpu", torch.float32, TwoHeads()
    backend.output_count = 2
    contract = ModelContract.from_dict({"output_kind": "metric_depth", "input": {
        "height": 24, "width": 32, "resize": "stretch", "channels": "rgb", "scale": 1 / 255, "mean": [0, 0, 0],
        "std": [1, 1, 1]}, "confidence_output": {"index": 1, "kind": "log_sigma"}})
    camera = CameraModel.from_camera_info(camera_info(W, H, 100.0, 100.0, 63.5, 47.5))
    rgb = np.zeros((H, W, 3), np.uint8)
    for device_pipeline in (True, False):
        estimator = DepthEstimator(backend, contract, device_pipeline=device_pipeline)
        frame = estimator.estimate(rgb, camera, confidence=True)
        assert frame.confidence is not None
        np.testing.assert_allclose(frame.confidence[: H // 2 - 4], expected(0.1), rtol=1e-5)
        np.testing.assert_allclose(frame.confidence[H // 2 + 4:], expected(0.02), rtol=1e-5)
