"""DepthEstimator.estimate_batch: several cameras' frames in one forward pass give each frame exactly what
estimate() gives it alone (its own intrinsics, size, settings, temporal state and scale hook), on real ONNX Runtime
and real torch; frames of different network input sizes, or beyond max_batch, run in separate passes; one frame's
failure is its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from oracles import camera_info, make_contract

torch = pytest.importorskip("torch")

from depth_ros.backends.export import export_onnx  # noqa: E402
from depth_ros.core.camera import CameraModel  # noqa: E402
from depth_ros.core.temporal import TemporalFilter, TemporalSettings  # noqa: E402
from depth_ros.nets import build  # noqa: E402
from depth_ros.pipeline import DepthEstimator, DepthFrame, FrameRequest, PipelineSettings  # noqa: E402

NET = (56, 84)


@pytest.fixture(scope="module")
def dynamic_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("batch_pipeline") / "student.onnx"
    export_onnx(build("student_cnn_xs").eval(), make_contract("canonical_inverse_depth", *NET, "stretch"), path,
                NET, batch=None)
    return path


def cameras() -> list[tuple[np.ndarray, CameraModel]]:
    rng = np.random.default_rng(3)
    out = []
    for w, h, fx, cx in ((160, 120, 150.0, 80.2), (160, 120, 95.0, 77.0), (128, 72, 90.0, 63.5)):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        out.append((rgb, CameraModel.from_camera_info(camera_info(w, h, fx, fx * 1.01, cx, h / 2 - 0.3))))
    return out


def torch_estimator() -> DepthEstimator:
    """The student on the torch backend, so frames run through the device (torch) pipeline."""
    from depth_ros.backends.torch_backend import TorchBackend

    torch.manual_seed(0)
    backend = TorchBackend.__new__(TorchBackend)  # TorchBackend loads Depth Anything V2 checkpoints itself
    backend.device, backend._dtype, backend._model = "cpu", torch.float32, build("student_cnn_xs").eval()
    return DepthEstimator(backend, make_contract("canonical_inverse_depth", *NET, "stretch"))


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_a_batch_equals_each_frame_alone(dynamic_model: Path, backend: str) -> None:
    estimator = DepthEstimator.from_path(dynamic_model, backend) if backend == "onnxruntime" else torch_estimator()
    assert estimator.max_batch > 1 and estimator.uses_device_pipeline == (backend == "torch")
    settings = [PipelineSettings(max_depth=1000.0), PipelineSettings(max_depth=1000.0, output_scale=0.5),
                PipelineSettings(max_depth=1000.0, edge_filter=True)]
    requests = [FrameRequest(rgb, camera, points_stride=stride, settings=s, stamp=1.0)
                for (rgb, camera), s, stride in zip(cameras(), settings, (1, 2, None), strict=True)]
    batch = estimator.estimate_batch(requests)
    for request, frame in zip(requests, batch, strict=True):
        assert isinstance(frame, DepthFrame)
        alone = estimator.estimate(request.rgb, request.camera, request.points_stride, request.settings)
        assert frame.camera == alone.camera  # its own intrinsics and size
        np.testing.assert_allclose(frame.depth, alone.depth, rtol=1e-5, equal_nan=True)
        assert (frame.points is None) == (alone.points is None)
        if alone.points is not None:
            np.testing.assert_allclose(np.asarray(frame.points), np.asarray(alone.points), rtol=1e-5, equal_nan=True)
        assert frame.timings["batch"] == 3  # one pass: every network input is 84x56 (stretch)


def test_batches_split_by_network_size_and_max_batch(tmp_path: Path, dynamic_model: Path) -> None:
    # A dynamic-input model keeps each image's aspect: two sizes, two passes.
    torch.manual_seed(0)
    dynamic_size = tmp_path / "dynamic_size.onnx"
    export_onnx(build("student_cnn_xs").eval(), make_contract("canonical_inverse_depth", *NET, "keep_aspect"),
                dynamic_size, None, batch=None)
    estimator = DepthEstimator.from_path(dynamic_size, "onnxruntime")
    frames = cameras()  # 4:3, 4:3 and 16:9
    sizes = [(estimator.plan(c).geometry.net_width, estimator.plan(c).geometry.net_height) for _, c in frames]
    assert sizes[0] == sizes[1] != sizes[2]
    batch = estimator.estimate_batch([FrameRequest(rgb, camera) for rgb, camera in frames])
    assert [f.timings.get("batch", 1) for f in batch] == [2, 2, 1]  # type: ignore[union-attr]
    for (rgb, camera), frame in zip(frames, batch, strict=True):
        np.testing.assert_allclose(frame.depth, estimator.estimate(rgb, camera).depth, rtol=1e-5,  # type: ignore[union-attr]
                                   equal_nan=True)
    fixed = DepthEstimator.from_path(dynamic_model, "onnxruntime")
    fixed.backend.max_batch = 2  # type: ignore[misc]  # as a backend with a batch range of 1..2
    split = fixed.estimate_batch([FrameRequest(rgb, camera) for rgb, camera in frames])
    assert [f.timings.get("batch", 1) for f in split] == [2, 2, 1]  # type: ignore[union-attr]


def test_temporal_state_and_errors_stay_with_their_frame(dynamic_model: Path) -> None:
    estimator = DepthEstimator.from_path(dynamic_model, "onnxruntime")
    (rgb_a, cam_a), (rgb_b, cam_b), _ = cameras()
    sequences = []
    for batched in (True, False):  # the same two camera sequences, batched and alone, each with its own filter
        filters = [TemporalFilter(TemporalSettings(time_constant=0.2)) for _ in range(2)]
        for step in range(3):
            shift = np.uint8(20 * step)
            requests = [FrameRequest(rgb_a + shift, cam_a, temporal=filters[0], stamp=step * 0.1),
                        FrameRequest(rgb_b - shift, cam_b, temporal=filters[1], stamp=step * 0.1)]
            if batched:
                last = estimator.estimate_batch(requests)
            else:
                last = [estimator.estimate(r.rgb, r.camera, temporal=r.temporal, stamp=r.stamp) for r in requests]
        sequences.append(last)
    for batched_frame, alone in zip(*sequences, strict=True):
        np.testing.assert_allclose(batched_frame.depth, alone.depth, rtol=1e-5, equal_nan=True)

    def failing_hook(prediction: np.ndarray, kind: str, camera: CameraModel) -> None:
        raise RuntimeError("this camera's reference is broken")

    results = estimator.estimate_batch([FrameRequest(rgb_a, cam_a, scale_hook=failing_hook),
                                        FrameRequest(rgb_b, cam_b)], return_errors=True)
    assert isinstance(results[0], RuntimeError) and isinstance(results[1], DepthFrame)
    with pytest.raises(RuntimeError, match="broken"):
        estimator.estimate_batch([FrameRequest(rgb_a, cam_a, scale_hook=failing_hook)])
