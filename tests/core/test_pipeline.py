"""Tests for depth_ros.pipeline (DepthEstimator with oracle models run by real ONNX Runtime)
and depth_ros.backends (backend selection and load errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper
from oracles import camera_info, make_contract, network_pixel_positions, plane_inverse_depth, save_oracle

from depth_ros.backends import (
    BackendOptions,
    BackendUnavailable,
    ModelLoadError,
    backend_names,
    create_backend,
)
from depth_ros.core.camera import CameraModel
from depth_ros.core.contract import METADATA_KEY, ContractError, ModelContract
from depth_ros.pipeline import DepthEstimator, PipelineSettings, output_size

W, H = 640, 480
FX, FY, CX, CY = 500.0, 500.0, 319.5, 239.5
F_OVER_W = FX / W  # 0.78125

HAS_CUDA = "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def camera() -> CameraModel:
    return CameraModel.from_camera_info(camera_info(W, H, FX, FY, CX, CY))


def rgb(height: int = H, width: int = W) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def estimator(tmp_path: Path, output: np.ndarray, kind: str, input_size: tuple[int, int] | None,
              resize: str = "stretch", settings: PipelineSettings | None = None,
              contract_size: tuple[int, int] | None = None, **extra: Any) -> DepthEstimator:
    size = contract_size or input_size or output.shape
    contract = make_contract(kind, size[0], size[1], resize, **extra)
    path = save_oracle(tmp_path, output, contract, input_size)
    return DepthEstimator.from_path(path, "onnxruntime", settings=settings)


# ----------------------------------------------------------------------------- planes through ONNX Runtime


def test_fronto_parallel_plane_exact_metres(tmp_path: Path) -> None:
    # C = (f/W) / Z = 0.78125 / 2 = 0.390625 (exact) -> D = 2 m at every pixel, exactly.
    est = estimator(tmp_path, np.full((48, 64), F_OVER_W / 2.0, np.float32), "canonical_inverse_depth", (48, 64))
    assert est.backend.name == "onnxruntime" and est.backend.fixed_input_size == (48, 64)
    frame = est.estimate(rgb(), camera())
    assert frame.depth.shape == (H, W) and frame.depth.dtype == np.float32
    np.testing.assert_array_equal(frame.depth, 2.0)
    assert frame.camera == camera()
    assert {"preprocess", "inference", "postprocess"} <= set(frame.timings)
    assert all(t >= 0 for t in frame.timings.values())


def test_tilted_plane_interior_exact(tmp_path: Path) -> None:
    """1/Z of a plane is affine in (u, v): bilinear resampling of the oracle reproduces it exactly."""
    net_h, net_w = 48, 64
    u_net, v_net = network_pixel_positions(net_h, net_w, H, W)
    normal, distance = (0.2, -0.3, 1.0), 3.0
    inv = plane_inverse_depth(u_net, v_net, FX, FY, CX, CY, normal, distance)
    est = estimator(tmp_path, (F_OVER_W * inv).astype(np.float32), "canonical_inverse_depth", (net_h, net_w))
    depth = est.estimate(rgb(), camera()).depth
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    truth = 1.0 / plane_inverse_depth(u, v, FX, FY, CX, CY, normal, distance)
    # Interior: pixels whose network position (u + 0.5) / 10 - 0.5 lies inside [0, 63] x [0, 47].
    interior = (slice(5, H - 5), slice(5, W - 5))
    np.testing.assert_allclose(depth[interior], truth[interior], rtol=2e-6)
    assert np.isfinite(depth).all()


def test_letterboxed_metric_map(tmp_path: Path) -> None:
    """keep_aspect into a static 96x160 input: only the content region (left 16, 128 wide) is used."""
    net_h, net_w = 96, 160
    u_net, v_net = network_pixel_positions(net_h, net_w, H, W, top=0, left=16, content_h=96, content_w=128)
    depth_map = (2.0 + 0.001 * u_net + 0.002 * v_net).astype(np.float32)  # affine in (u, v)
    depth_map[:, :16] = -1.0  # padding columns: a wrong crop would show up as NaN
    depth_map[:, 144:] = -1.0
    est = estimator(tmp_path, depth_map, "metric_depth", (net_h, net_w), "keep_aspect")
    depth = est.estimate(rgb(), camera()).depth
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    truth = 2.0 + 0.001 * u + 0.002 * v
    assert np.isfinite(depth).all()
    interior = (slice(3, H - 3), slice(3, W - 3))  # 5x upsampling: 2.5 px of border clamping
    np.testing.assert_allclose(depth[interior], truth[interior], rtol=1e-6)


def test_dynamic_input_keep_aspect_multiple_of_14(tmp_path: Path) -> None:
    """A dynamic-size model (Depth Anything style): shorter side 518, sides rounded to multiples of 14."""
    contract = ModelContract.from_dict({
        "output_kind": "metric_depth",
        "input": {"height": 518, "width": 518, "resize": "keep_aspect", "channels": "rgb", "scale": 1 / 255,
                  "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "multiple_of": 14},
    })
    path = save_oracle(tmp_path, np.full((37, 49), 1.5, np.float32), contract, None)
    est = DepthEstimator.from_path(path, "onnxruntime")
    assert est.backend.fixed_input_size is None
    g = est.geometry(H, W)
    assert (g.net_height, g.net_width, g.top, g.left) == (518, 686, 0, 0)  # 640*518/480 = 690.67 -> 49*14
    frame = est.estimate(rgb(), camera())
    np.testing.assert_array_equal(frame.depth, 1.5)



def test_the_frame_plan_is_kept_for_one_camera_and_settings_and_remade_for_new_ones(tmp_path: Path) -> None:
    # C = (f/W) / Z = 0.78125 / 2 -> D = 2 m exactly. Halving f halves f/W: the same output is then 1 m.
    est = estimator(tmp_path, np.full((48, 64), F_OVER_W / 2.0, np.float32), "canonical_inverse_depth", (48, 64))
    cam, settings = camera(), PipelineSettings()
    assert est.plan(cam, settings) is est.plan(cam, settings)
    np.testing.assert_array_equal(est.estimate(rgb(), cam, settings=settings).depth, 2.0)
    half_focal = CameraModel.from_camera_info(camera_info(W, H, FX / 2, FY / 2, CX, CY))
    np.testing.assert_array_equal(est.estimate(rgb(), half_focal, settings=settings).depth, 1.0)
    np.testing.assert_array_equal(est.estimate(rgb(), cam, settings=settings).depth, 2.0)
    # New settings apply to the very next frame: a range that excludes 2 m, a smaller depth image.
    assert np.isnan(est.estimate(rgb(), cam, settings=PipelineSettings(max_depth=1.5)).depth).all()
    frame = est.estimate(rgb(), cam, settings=PipelineSettings(output_scale=0.5))
    assert frame.depth.shape == (H // 2, W // 2) and frame.camera.fx == FX / 2
    np.testing.assert_array_equal(frame.depth, 2.0)

# ----------------------------------------------------------------------------- conversions via settings


def test_output_scale_resizes_depth_and_camera(tmp_path: Path) -> None:
    est = estimator(tmp_path, np.full((48, 64), F_OVER_W / 2.0, np.float32), "canonical_inverse_depth", (48, 64),
                    settings=PipelineSettings(output_scale=0.5))
    frame = est.estimate(rgb(), camera())
    assert frame.depth.shape == (240, 320)
    np.testing.assert_array_equal(frame.depth, 2.0)
    assert frame.camera.size == (320, 240)
    # Half-pixel centres: fx' = fx/2, cx' = (cx + 0.5)/2 - 0.5.
    assert (frame.camera.fx, frame.camera.fy) == (250.0, 250.0)
    assert (frame.camera.cx, frame.camera.cy) == (159.5, 119.5)
    assert output_size(W, H, 0.25) == (160, 120) and output_size(3, 3, 0.05) == (1, 1)


def test_canonical_metric_depth_focal_at_network_input(tmp_path: Path) -> None:
    # Stretch 640 -> 64: fx at input = 500 * 0.1 = 50; D = 40 * 50 / 1000 = 2 m.
    est = estimator(tmp_path, np.full((48, 64), 40.0, np.float32), "canonical_metric_depth", (48, 64),
                    canonical_focal=1000.0)
    np.testing.assert_allclose(est.estimate(rgb(), camera()).depth, 2.0, rtol=1e-6)


def test_metric_depth_focal_rescale_setting(tmp_path: Path) -> None:
    # Trained at f/W 0.5; camera 0.78125 -> factor 1.5625: 1.28 m -> 2 m; focal_rescale off keeps 1.28.
    est = estimator(tmp_path, np.full((48, 64), 1.28, np.float32), "metric_depth", (48, 64), focal_ratio=0.5)
    np.testing.assert_allclose(est.estimate(rgb(), camera()).depth, 2.0, rtol=1e-6)
    est.settings = PipelineSettings(focal_rescale=False)
    np.testing.assert_allclose(est.estimate(rgb(), camera()).depth, 1.28, rtol=1e-6)


def test_relative_disparity_scale_shift_settings(tmp_path: Path) -> None:
    # 1/D = 2 * 0.75 + 0.5 = 2 -> 0.5 m.
    est = estimator(tmp_path, np.full((48, 64), 0.75, np.float32), "relative_disparity", (48, 64),
                    settings=PipelineSettings(disparity_scale=2.0, disparity_shift=0.5))
    np.testing.assert_array_equal(est.estimate(rgb(), camera()).depth, 0.5)


# ----------------------------------------------------------------------------- depth range


def _plane(tmp_path: Path, metres: float, settings: PipelineSettings | None = None, **extra: Any) -> DepthEstimator:
    return estimator(tmp_path, np.full((48, 64), metres, np.float32), "metric_depth", (48, 64),
                     settings=settings, **extra)


def test_depth_range_intersects_contract_and_settings(tmp_path: Path) -> None:
    est = _plane(tmp_path, 2.0, min_depth=1.0, max_depth=3.0)
    assert est.depth_range() == (1.0, 3.0)  # default settings 0.1..50 are wider
    est.settings = PipelineSettings(min_depth=2.0, max_depth=2.5)
    assert est.depth_range() == (2.0, 2.5)
    est.settings = PipelineSettings(min_depth=0.5, max_depth=2.5)
    assert est.depth_range() == (1.0, 2.5)
    est.settings = PipelineSettings(min_depth=2.0, max_depth=2.5)
    np.testing.assert_array_equal(est.estimate(rgb(), camera()).depth, 2.0)  # inclusive lower bound


def test_depth_beyond_contract_max_is_nan(tmp_path: Path) -> None:
    est = _plane(tmp_path, 4.0, min_depth=1.0, max_depth=3.0)
    assert np.isnan(est.estimate(rgb(), camera()).depth).all()
    est = _plane(tmp_path, 0.5, settings=PipelineSettings(min_depth=0.6, max_depth=10.0))
    assert np.isnan(est.estimate(rgb(), camera()).depth).all()
    est = _plane(tmp_path, 10.0, settings=PipelineSettings(min_depth=0.6, max_depth=10.0))
    np.testing.assert_array_equal(est.estimate(rgb(), camera()).depth, 10.0)  # inclusive upper bound


def test_estimate_rejects_image_of_other_size(tmp_path: Path) -> None:
    est = _plane(tmp_path, 2.0)
    with pytest.raises(ValueError, match="640x480.*320x240"):
        est.estimate(rgb(), camera().scaled_to(320, 240))
    with pytest.raises(ValueError, match="480x640"):
        est.estimate(rgb(640, 480), camera())


def test_model_without_contract(tmp_path: Path) -> None:
    path = save_oracle(tmp_path, np.ones((4, 4), np.float32), make_contract("metric_depth", 4, 4), (4, 4))
    model = onnx.load(str(path))
    for prop in list(model.metadata_props):
        if prop.key == METADATA_KEY:
            model.metadata_props.remove(prop)
    onnx.save(model, str(path))
    with pytest.raises(ContractError, match="carries no depth_ros contract.*depth-ros contract"):
        DepthEstimator.from_path(path, "onnxruntime")


# ----------------------------------------------------------------------------- backends


def test_backend_names() -> None:
    assert backend_names()[0] == "auto"
    assert {"onnxruntime", "tensorrt", "torch"} <= set(backend_names())


def test_missing_model_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.onnx"
    for name in ("auto", "onnxruntime"):
        with pytest.raises(ModelLoadError) as info:
            create_backend(missing, name)
        assert str(missing) in str(info.value) and "does not exist" in str(info.value)
        assert "'model' parameter" in str(info.value)


def test_corrupt_model_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(np.random.default_rng(5).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    for name in ("auto", "onnxruntime"):
        with pytest.raises(ModelLoadError) as info:
            create_backend(path, name)
        assert not isinstance(info.value, BackendUnavailable)
        assert "onnxruntime could not load" in str(info.value) and str(path) in str(info.value)


def test_onnxruntime_runs_an_oracle(tmp_path: Path) -> None:
    contract = make_contract("metric_depth", 6, 8)
    path = save_oracle(tmp_path, np.full((6, 8), 3.0, np.float32), contract, (6, 8))
    backend = create_backend(path, "onnxruntime", BackendOptions(num_threads=1))
    assert backend.name == "onnxruntime"
    assert backend.device == ("cuda" if HAS_CUDA else "cpu")
    assert backend.fixed_input_size == (6, 8)
    assert backend.metadata()[METADATA_KEY] == contract.to_json()
    out = np.asarray(backend.infer(np.zeros((1, 3, 6, 8), np.float32)))
    assert out.shape == (1, 1, 6, 8)
    np.testing.assert_array_equal(out, 3.0)


def test_dynamic_input_has_no_fixed_size(tmp_path: Path) -> None:
    path = save_oracle(tmp_path, np.ones((3, 3), np.float32), make_contract("metric_depth", 3, 3), None)
    assert create_backend(path, "onnxruntime").fixed_input_size is None


def test_unknown_backend(tmp_path: Path) -> None:
    path = save_oracle(tmp_path, np.ones((3, 3), np.float32), make_contract("metric_depth", 3, 3), (3, 3))
    with pytest.raises(BackendUnavailable) as info:
        create_backend(path, "openvino")
    assert "unknown backend 'openvino'" in str(info.value)
    assert "onnxruntime" in str(info.value) and "auto" in str(info.value)


def test_tensorrt_and_torch_backends_say_why_they_cannot_run(tmp_path: Path) -> None:
    path = save_oracle(tmp_path, np.ones((3, 3), np.float32), make_contract("metric_depth", 3, 3), (3, 3))
    from depth_ros.backends.tensorrt_backend import probe

    if probe() is not None:  # no TensorRT/CUDA here: the reason is named
        with pytest.raises(BackendUnavailable, match="backend 'tensorrt' is not usable here: .*(tensorrt|CUDA)"):
            create_backend(path, "tensorrt")
    with pytest.raises(ModelLoadError, match="backend 'torch' runs checkpoints"):
        create_backend(path, "torch")  # an .onnx file is not a torch checkpoint


@pytest.mark.skipif(HAS_CUDA, reason="onnxruntime has a CUDA provider here")
def test_cuda_requested_without_provider(tmp_path: Path) -> None:
    path = save_oracle(tmp_path, np.ones((3, 3), np.float32), make_contract("metric_depth", 3, 3), (3, 3))
    with pytest.raises(ModelLoadError, match="device 'cuda'.*onnxruntime-gpu"):
        create_backend(path, "onnxruntime", BackendOptions(device="cuda"))
    assert create_backend(path, "onnxruntime", BackendOptions(device="cpu")).device == "cpu"


def _identity_model(path: Path, elem_type: int, shape: list[int]) -> Path:
    x = helper.make_tensor_value_info("x", elem_type, shape)
    y = helper.make_tensor_value_info("y", elem_type, shape)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_non_float_input_rejected(tmp_path: Path) -> None:
    path = _identity_model(tmp_path / "int.onnx", TensorProto.INT64, [1, 3, 4, 4])
    with pytest.raises(ModelLoadError, match="expected float32"):
        create_backend(path, "onnxruntime")


def test_non_nchw_input_rejected(tmp_path: Path) -> None:
    path = _identity_model(tmp_path / "rank3.onnx", TensorProto.FLOAT, [3, 4, 4])
    with pytest.raises(ModelLoadError, match="expected NCHW"):
        create_backend(path, "onnxruntime")
