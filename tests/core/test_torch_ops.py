"""depth_ros.core.torch_ops (the device path of issue 3) against the numpy path it mirrors, on real torch.

CPU tests run the torch code on CPU tensors; the ``gpu`` tests run the same comparisons on CUDA against the
CPU results and skip with the reason where torch sees no CUDA device.

Tolerances, and why:
- preprocess: the torch path applies cv2's own filters (area when both sides shrink, bilinear otherwise)
  but does not round the resized image to 8 bits; cv2 rounds each resize step to uint8 (<= 0.5 grey level
  per step) and computes bilinear on 8-bit images in fixed point (11-bit weights: ~255 / 2048 per axis).
  So the difference, in grey levels of the input image, is <= 0.5 * steps + 0.3 (measured max 0.753 for one
  bilinear step), and 0 at the same size.
- postprocess: float32 bilinear in both (cv2 INTER_LINEAR on float32 == interpolate align_corners=False):
  <= 1e-5 relative.
- metric conversion and points: the same float32 operations in the same order: bit-identical, NaN masks equal.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from oracles import camera_info  # noqa: E402

from depth_ros.backends import BackendOptions  # noqa: E402
from depth_ros.core import metric, preprocess  # noqa: E402
from depth_ros.core import torch_ops as tp  # noqa: E402
from depth_ros.core.camera import CameraModel  # noqa: E402
from depth_ros.core.contract import OUTPUT_KINDS, InputSpec, ModelContract  # noqa: E402
from depth_ros.core.metric import MetricContext  # noqa: E402
from depth_ros.core.pointcloud import depth_to_points  # noqa: E402
from depth_ros.pipeline import DepthEstimator, PipelineSettings  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
COLOR = ROOT / "data" / "realsense_d435" / "color.png"
IMAGENET = {"scale": 1.0 / 255.0, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
FX, FY, CX, CY = 615.0, 612.0, 322.5, 241.25

# (image size, network input (h, w), resize, channels): identity, upscale, mixed (one side grows: bilinear),
# area shrinks (fractional, 2.5x, 5x, 5.4x), letterboxes (padding top/bottom and left/right).
GEOMETRIES = [
    ((480, 640), (480, 640), "stretch", "rgb"),
    ((480, 640), (518, 686), "stretch", "rgb"),
    ((480, 640), (560, 420), "stretch", "bgr"),
    ((480, 640), (364, 490), "keep_aspect", "rgb"),
    ((480, 640), (192, 256), "stretch", "bgr"),
    ((480, 640), (300, 300), "keep_aspect", "rgb"),
    ((480, 640), (96, 128), "stretch", "rgb"),
    ((960, 1280), (182, 238), "keep_aspect", "rgb"),
]


def real_rgb(height: int = 480, width: int = 640) -> np.ndarray:
    rgb = cv2.cvtColor(cv2.imread(str(COLOR), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert rgb.shape == (480, 640, 3)
    return rgb if (height, width) == rgb.shape[:2] else cv2.resize(rgb, (width, height), interpolation=cv2.INTER_CUBIC)


def spec_for(net: tuple[int, int], resize: str, channels: str) -> InputSpec:
    return InputSpec(net[0], net[1], resize, channels, **IMAGENET)  # type: ignore[arg-type]


def grey_levels(tensor: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Network-input values back in 8-bit grey levels (undo the normalisation), so errors read as levels."""
    std = np.asarray(spec.std, np.float64).reshape(1, 3, 1, 1)
    return tensor.astype(np.float64) * std / spec.scale


def resize_steps(image: tuple[int, int], content: tuple[int, int]) -> int:
    return 0 if tp.resize_mode(*image, *content) == "none" else 1


def camera(width: int = 640, height: int = 480, distorted: bool = False) -> CameraModel:
    d = [-0.28, 0.09, 0.0012, -0.0008, -0.012] if distorted else [0.0] * 5
    return CameraModel.from_camera_info(camera_info(width, height, FX, FY, CX, CY, d=d))


def contract(kind: str, **extra: Any) -> ModelContract:
    return ModelContract.from_dict({
        "output_kind": kind,
        "input": {"height": 48, "width": 64, "resize": "stretch", "channels": "rgb", "scale": 1.0 / 255.0,
                  "mean": [0, 0, 0], "std": [1, 1, 1]},
        **extra,
    })


KINDS: list[tuple[str, dict[str, Any]]] = [
    ("canonical_inverse_depth", {}),
    ("metric_depth", {}),
    ("metric_depth", {"focal_ratio": 0.71}),
    ("canonical_metric_depth", {"canonical_focal": 1000.0}),
    ("relative_disparity", {}),
]
CONTEXTS = [
    MetricContext(f_over_w=615.0 / 640, fx_at_input=123.4),
    MetricContext(f_over_w=0.3, fx_at_input=77.0, disparity_scale=0.37, disparity_shift=-0.05, focal_rescale=False),
    MetricContext(f_over_w=1.7, fx_at_input=1900.0, disparity_scale=2.5, disparity_shift=0.2),
]


def nasty_map(shape: tuple[int, int] = (60, 80), seed: int = 0) -> np.ndarray:
    """Positive predictions plus every special value the conversions must turn into NaN (or keep)."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.01, 5.0, shape).astype(np.float32)
    flat = values.reshape(-1)
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0, -1e-30, 1e-45, 1e-38, 3.0e38, 1e-6, 1e6,
                         np.float32(np.finfo(np.float32).max), np.float32(np.finfo(np.float32).tiny)], np.float32)
    positions = rng.choice(flat.size, size=(4, specials.size), replace=False)
    for row in positions:
        flat[row] = specials
    return values


def assert_same_depth(got: np.ndarray, expected: np.ndarray) -> None:
    """Bit-identical values with identical NaN masks."""
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(got, expected)


# ----------------------------------------------------------------------------- preprocess


@pytest.mark.parametrize(("image", "net", "resize", "channels"), GEOMETRIES,
                         ids=[f"{i[1]}x{i[0]}->{n[1]}x{n[0]}-{r}-{c}" for i, n, r, c in GEOMETRIES])
def test_preprocess_matches_numpy_on_a_real_image(image, net, resize, channels) -> None:
    rgb = real_rgb(*image)
    spec = spec_for(net, resize, channels)
    geometry = preprocess.plan_input(image[0], image[1], spec, net)
    expected = preprocess.preprocess(rgb, spec, geometry)
    got = tp.TorchPipeline("cpu", spec).preprocess(rgb, geometry).numpy()
    assert got.shape == expected.shape == (1, 3, *net) and got.dtype == np.float32
    assert got.flags.c_contiguous
    diff = np.abs(grey_levels(got, spec) - grey_levels(expected, spec))
    steps = resize_steps(image, (geometry.content_height, geometry.content_width))
    if steps == 0:
        assert diff.max() <= 1e-5  # the same size: only the normalisation, in float32 both
    else:
        assert diff.max() <= 0.5 * steps + 0.3, (steps, diff.max())
        assert diff.mean() <= 0.35, diff.mean()  # rounding errors average ~0.25 levels, not a filter change
    # The padding is exactly zero (after normalisation) and lies where the numpy path puts it.
    pad = np.ones(net, bool)
    pad[geometry.top:geometry.top + geometry.content_height, geometry.left:geometry.left + geometry.content_width] = 0
    assert (got[0][:, pad] == 0).all() and (expected[0][:, pad] == 0).all()


def test_area_taps_are_cv2_inter_area_on_float_images() -> None:
    """The taps reproduce cv2's float area filter (no 8-bit rounding) to float precision."""
    image = real_rgb().astype(np.float32)
    for height, width in ((192, 256), (364, 485), (75, 100)):
        assert tp.resize_mode(480, 640, height, width) == "area"
        expected = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        rows = tp.Taps.from_numpy(*tp.area_taps(480, height), torch.device("cpu"))
        cols = tp.Taps.from_numpy(*tp.area_taps(640, width), torch.device("cpu"))
        got = tp.area_resample(torch.from_numpy(image), rows, cols).numpy()
        np.testing.assert_allclose(got, expected, atol=2e-3)


@pytest.mark.filterwarnings("error")
def test_preprocess_of_read_only_and_strided_images() -> None:
    """Decoded ROS images are read-only buffers or strided views (bgr8 -> rgb): same result, no warning."""
    rgb = real_rgb()
    spec = spec_for((192, 256), "stretch", "rgb")
    geometry = preprocess.plan_input(480, 640, spec, (192, 256))
    pipeline = tp.TorchPipeline("cpu", spec)
    expected = pipeline.preprocess(rgb, geometry).numpy()
    read_only = np.frombuffer(rgb.tobytes(), np.uint8).reshape(rgb.shape)
    strided = np.ascontiguousarray(rgb[:, :, ::-1])[:, :, ::-1]
    for image in (read_only, strided):
        np.testing.assert_array_equal(pipeline.preprocess(image, geometry).numpy(), expected)


def test_preprocess_rejects_non_rgb8() -> None:
    pipeline = tp.TorchPipeline("cpu", spec_for((48, 64), "stretch", "rgb"))
    with pytest.raises(ValueError, match="uint8"):
        pipeline.upload(np.zeros((48, 64, 3), np.float32))
    with pytest.raises(ValueError, match="HxWx3"):
        pipeline.upload(np.zeros((48, 64), np.uint8))


# ----------------------------------------------------------------------------- postprocess

POST_CASES = [
    # (network output h, w), input geometry args, depth image (w, h)
    ((48, 64), (48, 64, 0, 0, 48, 64, 480, 640), (640, 480)),  # stretch, upscale
    ((48, 64), (48, 64, 0, 0, 48, 64, 480, 640), (64, 48)),  # same size: a copy
    ((96, 128), (96, 128, 0, 0, 96, 128, 480, 640), (40, 30)),  # downscale (plain bilinear, like cv2)
    ((300, 300), (300, 300, 37, 0, 225, 300, 480, 640), (640, 480)),  # letterbox: crop top/bottom
    ((150, 150), (300, 300, 37, 0, 225, 300, 480, 640), (320, 240)),  # output at half the input resolution
    ((364, 490), (364, 490, 0, 2, 364, 485, 480, 640), (480, 360)),  # left/right padding
]


def smooth_map(shape: tuple[int, int]) -> np.ndarray:
    """A prediction like a real one: smooth inverse depth of a tilted plane plus gentle waves."""
    v, u = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    inverse = 0.4 + 0.3 * u / shape[1] + 0.2 * v / shape[0] + 0.05 * np.sin(u / 7.0) * np.cos(v / 5.0)
    return inverse.astype(np.float32)


@pytest.mark.parametrize(("out_shape", "geometry_args", "size"), POST_CASES)
def test_postprocess_matches_numpy(out_shape, geometry_args, size) -> None:
    """Smooth maps (like real predictions): <= 1e-5 relative per pixel. Rough random maps: <= 1e-4 of the
    map's magnitude: both compute sample positions in float32 (~500 px * 2^-24 = 3e-5 px apart), which a
    random map's jumps of ~4 per pixel turn into ~1e-4 absolute."""
    geometry = preprocess.InputGeometry(*geometry_args)
    rough = np.random.default_rng(3).uniform(0.2, 4.0, out_shape).astype(np.float32)
    for prediction, rtol, atol in ((smooth_map(out_shape), 1e-5, 0.0), (rough, 0.0, 1e-4 * 4.0)):
        expected = preprocess.postprocess(prediction, geometry, *size)
        source = torch.from_numpy(prediction.copy())
        got = tp.postprocess(tp.output_map(source[None, None]), geometry, *size)
        assert got.data_ptr() != source.data_ptr()  # never a view of the (reused) network output buffer
        got_np = got.numpy()
        assert got_np.shape == expected.shape == (size[1], size[0]) and got_np.dtype == np.float32
        np.testing.assert_allclose(got_np, expected, rtol=rtol, atol=atol)


def test_output_map_shapes() -> None:
    assert tuple(tp.output_map(torch.zeros(1, 1, 4, 5)).shape) == (4, 5)
    assert tuple(tp.output_map(torch.zeros(1, 4, 5, dtype=torch.float16)).shape) == (4, 5)
    assert tp.output_map(torch.zeros(4, 5, dtype=torch.float16)).dtype == torch.float32
    for bad in (torch.zeros(2, 4, 5), torch.zeros(1, 1, 1, 0), torch.zeros(7)):
        with pytest.raises(preprocess.OutputShapeError):
            tp.output_map(bad)


# ----------------------------------------------------------------------------- metric conversion


def test_every_output_kind_has_a_torch_converter() -> None:
    assert set(tp.TORCH_CONVERTERS) == set(OUTPUT_KINDS) == set(metric.CONVERTERS)


@pytest.mark.parametrize(("kind", "extra"), KINDS, ids=[f"{k}{'+' if e else ''}" for k, e in KINDS])
@pytest.mark.parametrize("ctx_index", range(len(CONTEXTS)))
def test_metric_conversion_matches_numpy_including_invalid_values(kind, extra, ctx_index) -> None:
    pred = nasty_map(seed=ctx_index)
    c, ctx = contract(kind, **extra), CONTEXTS[ctx_index]
    expected = metric.to_metric(pred.copy(), c, ctx)
    source = torch.from_numpy(pred.copy())
    got = tp.to_metric(source, c, ctx).numpy()
    assert_same_depth(got, expected)
    np.testing.assert_array_equal(source.numpy(), pred)  # the prediction is left untouched
    assert not np.isinf(got).any() and (got[np.isfinite(got)] > 0).all()  # NaN, never 0 or inf


@pytest.mark.parametrize(("low", "high"), [(0.1, 50.0), (0.3, float("inf")), (0.0, 2.5), (1.0 / 3.0, 2.0 / 3.0)])
def test_depth_range_matches_numpy(low, high) -> None:
    depth = metric.to_metric(nasty_map(), contract("metric_depth"), CONTEXTS[0])
    expected = metric.apply_depth_range(depth.copy(), low, high)
    got = tp.apply_depth_range(torch.from_numpy(depth.copy()), low, high).numpy()
    assert_same_depth(got, expected)


# ----------------------------------------------------------------------------- points


@pytest.mark.parametrize("distorted", [False, True], ids=["pinhole", "plumb_bob"])
@pytest.mark.parametrize("stride", [1, 3])
def test_points_of_a_fronto_parallel_plane(distorted, stride) -> None:
    """A wall at Z = 2.5 m: every point has z = 2.5 and projects back onto its own pixel through the camera's
    forward model (cv2.projectPoints with K and D: independent of the ray computation), NaN depth -> NaN
    point; and the torch points equal pointcloud.depth_to_points bit for bit."""
    cam = camera(distorted=distorted)
    depth = np.full((cam.height, cam.width), 2.5, np.float32)
    depth[100:140, 200:260] = np.nan
    pipeline = tp.TorchPipeline("cpu", spec_for((48, 64), "stretch", "rgb"))
    points = pipeline.points(torch.from_numpy(depth), cam, stride).numpy()
    assert points.shape == (-(-480 // stride), -(-640 // stride), 3) and points.dtype == np.float32
    assert_same_depth(points, depth_to_points(depth, cam, stride))
    invalid = np.isnan(depth[::stride, ::stride])
    assert np.isnan(points[invalid]).all() and np.isfinite(points[~invalid]).all()
    assert (points[~invalid][:, 2] == 2.5).all()
    v, u = np.mgrid[0:cam.height:stride, 0:cam.width:stride]
    k = np.array([[FX, 0, CX], [0, FY, CY], [0, 0, 1]], np.float64)
    d = np.asarray(cam.d if distorted else [0.0] * 5, np.float64)
    projected, _ = cv2.projectPoints(points[~invalid].astype(np.float64).reshape(-1, 1, 3), np.zeros(3), np.zeros(3),
                                     k, d)
    pixels = np.stack([u[~invalid], v[~invalid]], axis=-1).astype(np.float64)
    assert np.abs(projected.reshape(-1, 2) - pixels).max() < 2e-3  # px (float32 rays at 2.5 m)
    if not distorted:
        np.testing.assert_allclose(points[~invalid][:, 0], (u[~invalid] - CX) / FX * 2.5, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(points[~invalid][:, 1], (v[~invalid] - CY) / FY * 2.5, rtol=1e-6, atol=1e-6)


def test_rays_are_uploaded_once_per_camera_and_stride() -> None:
    pipeline = tp.TorchPipeline("cpu", spec_for((48, 64), "stretch", "rgb"))
    first = pipeline.rays(camera(), 2)
    assert pipeline.rays(camera(), 2)[0] is first[0]  # an equal camera model hits the cache
    assert pipeline.rays(camera(), 1)[0] is not first[0]
    with pytest.raises(ValueError, match="camera model"):
        pipeline.points(torch.zeros(10, 10), camera(), 1)


def test_download_without_points_and_with() -> None:
    depth = torch.rand(6, 8)
    host, none = tp.download(depth)
    assert none is None and host.dtype == np.float32 and host.shape == (6, 8)
    points = torch.rand(3, 4, 3)
    host, host_points = tp.download(depth, points)
    assert host_points is not None
    np.testing.assert_array_equal(host_points, points.numpy())


# ----------------------------------------------------------------------------- end to end: DepthEstimator


@pytest.fixture(scope="module")
def dav2_checkpoint(tmp_path_factory) -> Path:
    """A random-weight Depth Anything V2 ViT-S (the official .pth key layout) for the torch backend.

    N(0, 0.05) weights (as tests/learning/test_depth_anything.py) leave the ReLU output at 0 everywhere; a final bias of
    2 and a 40x final convolution give a disparity map of ~1.8..3.4 that follows the image, so depth is valid
    everywhere (0.3..0.6 m) and differences between the two paths show."""
    from depth_ros.nets.depth_anything_v2 import build

    generator = torch.Generator().manual_seed(1)
    state = {k: torch.randn(v.shape, generator=generator) * 0.05 for k, v in build("vits").state_dict().items()}
    state["depth_head.scratch.output_conv2.2.bias"] = torch.full((1,), 2.0)
    state["depth_head.scratch.output_conv2.2.weight"] *= 40.0
    path = tmp_path_factory.mktemp("dav2") / "dav2_vits_random.pth"
    torch.save(state, path)
    return path


def small_contract(backend_contract: ModelContract, kind: str = "relative_disparity", **extra: Any) -> ModelContract:
    """The backend's own contract at a smaller network input (shorter side 182: 182x238 for 4:3), so the
    ViT-S runs in a fraction of a second on the CPU; same preprocessing rule otherwise."""
    data = json_contract(backend_contract)
    data["input"].update(height=182, width=182)
    data["output_kind"] = kind
    data.update(extra)
    return ModelContract.from_dict(data)


def json_contract(c: ModelContract) -> dict[str, Any]:
    import json

    return json.loads(c.to_json())


@pytest.fixture(scope="module")
def torch_estimators(dav2_checkpoint):
    """(device path, numpy path) estimators sharing one torch backend on the CPU and one contract."""
    from depth_ros.backends import create_backend
    from depth_ros.core.contract import read_contract_from_onnx_metadata

    backend = create_backend(dav2_checkpoint, "torch", BackendOptions(device="cpu"))
    c = small_contract(read_contract_from_onnx_metadata(backend.metadata(), "checkpoint"))
    settings = PipelineSettings(disparity_scale=1.0, disparity_shift=0.05, max_depth=15.0)
    device = DepthEstimator(backend, c, settings)
    numpy_path = DepthEstimator(backend, c, settings, device_pipeline=False)
    assert device.uses_device_pipeline and not numpy_path.uses_device_pipeline
    return device, numpy_path


def test_torch_backend_uses_the_torch_pipeline_by_default(dav2_checkpoint) -> None:
    estimator = DepthEstimator.from_path(dav2_checkpoint, "torch", BackendOptions(device="cpu"))
    assert estimator.uses_device_pipeline and estimator.backend.device == "cpu"


def test_onnxruntime_keeps_the_numpy_path(tmp_path) -> None:
    from oracles import make_contract, save_oracle

    path = save_oracle(tmp_path, np.full((12, 16), 0.5, np.float32), make_contract("metric_depth", 12, 16),
                       (12, 16))
    estimator = DepthEstimator.from_path(path, "onnxruntime")
    assert not estimator.uses_device_pipeline
    with pytest.raises(ValueError, match="infer_device"):
        DepthEstimator(estimator.backend, estimator.contract, device_pipeline=True)


def test_estimate_with_the_torch_backend_matches_the_numpy_path(torch_estimators) -> None:
    """Same checkpoint, same backend: the torch pre/postprocessing vs numpy/cv2. The network inputs differ by
    <= 0.75 grey level (cv2's 8-bit rounding), which the random ViT-S amplifies (its disparity moves by up to
    0.023 of ~2.6): measured max 0.84 %, median 0.12 % relative depth difference; asserted < 2 % and < 0.3 %.
    No depth lies near the range limits, so both are valid everywhere."""
    device, numpy_path = torch_estimators
    rgb, cam = real_rgb(), camera()
    t0 = time.perf_counter()
    frame = device.estimate(rgb, cam, points_stride=2)
    t1 = time.perf_counter()
    reference = numpy_path.estimate(rgb, cam, points_stride=2)
    t2 = time.perf_counter()
    print(f"\nCPU, ViT-S at 182x238, 640x480 image: torch path {(t1 - t0) * 1e3:.0f} ms "
          f"{ {k: round(v * 1e3, 1) for k, v in frame.timings.items()} }, numpy path {(t2 - t1) * 1e3:.0f} ms "
          f"{ {k: round(v * 1e3, 1) for k, v in reference.timings.items()} }")
    assert set(frame.timings) == {"preprocess", "inference", "postprocess"}
    assert frame.depth.shape == reference.depth.shape == (480, 640) and frame.depth.dtype == np.float32
    assert frame.camera == reference.camera
    both = np.isfinite(frame.depth) & np.isfinite(reference.depth)
    assert both.all() and np.isfinite(frame.depth).all()
    relative = np.abs(frame.depth / reference.depth - 1.0)
    assert relative.max() < 2e-2 and np.median(relative) < 3e-3, (relative.max(), np.median(relative))
    # The points come back with the depth and are the point cloud of that very depth.
    assert frame.points is not None and frame.points_stride == 2
    assert_same_depth(frame.points, depth_to_points(frame.depth, frame.camera, 2))
    assert isinstance(reference.points, tuple)  # the host path's x, y, z planes (what the cloud packer takes)
    assert_same_depth(np.stack(reference.points, axis=-1), depth_to_points(reference.depth, reference.camera, 2))
    # The prediction is fetched only on request, and is what the depth was computed from.
    assert frame.prediction is None
    prediction = frame.prediction_map()
    assert prediction is not None and prediction.shape == (480, 640)
    expected = 1.0 / (prediction[both] + np.float32(0.05))
    np.testing.assert_allclose(frame.depth[both], expected, rtol=1e-6)


def test_estimate_default_call_and_output_scale(torch_estimators) -> None:
    device, numpy_path = torch_estimators
    device.settings = numpy_path.settings = PipelineSettings(output_scale=0.5, disparity_shift=0.05)
    try:
        frame = device.estimate(real_rgb(), camera())
        reference = numpy_path.estimate(real_rgb(), camera())
    finally:
        device.settings = numpy_path.settings = PipelineSettings(disparity_shift=0.05, max_depth=15.0)
    assert frame.points is None and frame.depth.shape == (240, 320) == reference.depth.shape
    assert frame.camera == camera().scaled_to(320, 240)
    assert np.isfinite(frame.depth).all() and np.isfinite(reference.depth).all()
    assert np.abs(frame.depth / reference.depth - 1.0).max() < 2e-2
    with pytest.raises(ValueError, match="points_stride"):
        device.estimate(real_rgb(), camera(), points_stride=0)


def test_scale_hook_on_the_torch_path(torch_estimators) -> None:
    """Online scale recovery needs numpy maps: the hook gets the host copy of the prediction (relative) and
    the fitted scale/shift are applied exactly as on the numpy path."""
    device, numpy_path = torch_estimators
    seen: list[tuple[str, tuple[int, ...]]] = []

    def hook(values: np.ndarray, kind: str, cam: CameraModel) -> tuple[float, float]:
        seen.append((kind, values.shape))
        assert isinstance(values, np.ndarray) and cam.size == (640, 480)
        return 2.0, 0.1

    device.scale_hook = hook
    try:
        frame = device.estimate(real_rgb(), camera())
    finally:
        device.scale_hook = None
    assert seen == [("disparity", (480, 640))]
    prediction = frame.prediction_map()
    assert frame.prediction is prediction is not None  # already on the host for the hook: kept, no second copy
    valid = np.isfinite(frame.depth)
    np.testing.assert_allclose(frame.depth[valid], 1.0 / (np.float32(2.0) * prediction[valid] + np.float32(0.1)),
                               rtol=1e-6)
    del numpy_path


def test_predict_returns_the_raw_map_on_the_host(torch_estimators) -> None:
    device, numpy_path = torch_estimators
    raw, geometry, timings = device.predict(real_rgb())
    reference, reference_geometry, _ = numpy_path.predict(real_rgb())
    assert isinstance(raw, np.ndarray) and raw.shape == reference.shape == (182, 238)
    assert geometry == reference_geometry and set(timings) == {"preprocess", "inference"}
    assert np.abs(raw - reference).max() <= 2e-2 * np.abs(reference).max()


@pytest.mark.parametrize("cloud_color", [False, True])
def test_frame_processor_publishes_the_device_points(torch_estimators, cloud_color: bool) -> None:
    """The node's frame code with a device estimator: the cloud it emits is built from the points that came
    back with the depth, and is exactly the cloud of the depth it emits (stride 2, with and without colour)."""
    from sensor_msgs.msg import Image

    from depth_ros.ros import codecs
    from depth_ros.ros.frame_processor import DEPTH, POINTS, FrameProcessor, Wanted
    from depth_ros.ros.parameters import PARAMETERS

    device, _ = torch_estimators
    values = {spec.name: spec.default for spec in PARAMETERS}
    values.update(cloud_stride=2, cloud_color=cloud_color, max_depth=15.0, disparity_shift=0.05, edge_filter=False)
    processor = FrameProcessor(device, values)
    rgb = real_rgb()
    processor.camera_info(camera_info(640, 480, FX, FY, CX, CY, d=[0.0] * 5))
    image = Image()
    codecs.fill_image_msg(image, rgb, "rgb8")
    image.header.frame_id = "cam"
    out: dict[str, Any] = {}
    processor.process(image, lambda kind, msg: out.__setitem__(kind, msg), Wanted(colored=False))
    depth = codecs.image_msg_to_array(out[DEPTH])
    xyz, colours = codecs.cloud_msg_to_arrays(out[POINTS])
    assert out[POINTS].header.frame_id == "cam" and xyz.shape == (240, 320, 3)
    assert np.isfinite(depth).all()
    assert_same_depth(xyz, depth_to_points(depth, camera(), 2))
    if cloud_color:
        assert colours is not None and np.array_equal(colours, rgb[::2, ::2])
    else:
        assert colours is None


# ----------------------------------------------------------------------------- GPU: the same code on CUDA


@pytest.fixture(scope="module")
def cuda() -> Any:
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device: the CUDA variants of the torch pipeline tests need one")
    return torch.device("cuda")


@pytest.mark.gpu
@pytest.mark.parametrize(("image", "net", "resize", "channels"), GEOMETRIES[:6])
def test_gpu_preprocess_matches_cpu(cuda, image, net, resize, channels) -> None:
    rgb = real_rgb(*image)
    spec = spec_for(net, resize, channels)
    geometry = preprocess.plan_input(image[0], image[1], spec, net)
    expected = tp.TorchPipeline("cpu", spec).preprocess(rgb, geometry).numpy()
    pipeline = tp.TorchPipeline(cuda, spec)
    for _ in range(2):  # the second frame reuses the pinned upload buffer
        got = pipeline.preprocess(rgb, geometry)
        assert got.device.type == "cuda"
        np.testing.assert_allclose(got.cpu().numpy(), expected, atol=1e-5)


@pytest.mark.gpu
def test_gpu_postprocess_matches_cpu(cuda) -> None:
    geometry = preprocess.InputGeometry(300, 300, 37, 0, 225, 300, 480, 640)
    prediction = smooth_map((300, 300))
    expected = tp.postprocess(torch.from_numpy(prediction), geometry, 640, 480).numpy()
    got = tp.postprocess(torch.from_numpy(prediction).to(cuda), geometry, 640, 480)
    assert got.device.type == "cuda"
    np.testing.assert_allclose(got.cpu().numpy(), expected, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize(("kind", "extra"), KINDS)
def test_gpu_metric_range_and_points_match_cpu(cuda, kind, extra) -> None:
    """IEEE float32 multiply and divide on both: identical NaN masks, values equal to rounding."""
    c, ctx = contract(kind, **extra), CONTEXTS[1]
    raw = nasty_map((480, 640))
    cam = camera(distorted=True)
    results = []
    for device in ("cpu", cuda):
        pipeline = tp.TorchPipeline(device, spec_for((300, 300), "keep_aspect", "rgb"))
        depth = tp.apply_depth_range(tp.to_metric(torch.from_numpy(raw).to(device), c, ctx), 0.1, 50.0)
        results.append(tp.download(depth, pipeline.points(depth, cam, 2)))
    (cpu_depth, cpu_points), (gpu_depth, gpu_points) = results
    assert cpu_points is not None and gpu_points is not None
    np.testing.assert_array_equal(np.isnan(gpu_depth), np.isnan(cpu_depth))
    np.testing.assert_allclose(gpu_depth, cpu_depth, rtol=1e-6)
    np.testing.assert_array_equal(np.isnan(gpu_points), np.isnan(cpu_points))
    np.testing.assert_allclose(gpu_points, cpu_points, rtol=1e-6, atol=1e-7)


@pytest.mark.gpu
def test_gpu_download_is_one_pinned_copy(cuda) -> None:
    depth = torch.rand(48, 64, device=cuda)
    points = torch.rand(24, 32, 3, device=cuda)
    host_depth, host_points = tp.download(depth, points)
    assert host_points is not None and host_depth.base is not None and host_points.base is not None
    np.testing.assert_array_equal(host_depth, depth.cpu().numpy())
    np.testing.assert_array_equal(host_points, points.cpu().numpy())


@pytest.mark.gpu
def test_gpu_estimate_with_the_torch_backend_matches_cpu(cuda, dav2_checkpoint) -> None:
    from depth_ros.backends import create_backend
    from depth_ros.core.contract import read_contract_from_onnx_metadata

    frames = []
    for device in ("cpu", "cuda"):
        backend = create_backend(dav2_checkpoint, "torch", BackendOptions(device=device))
        c = small_contract(read_contract_from_onnx_metadata(backend.metadata(), "checkpoint"))
        estimator = DepthEstimator(backend, c, PipelineSettings(disparity_shift=0.05, max_depth=15.0))
        assert estimator.uses_device_pipeline and backend.device == device
        estimator.estimate(real_rgb(), camera(), points_stride=1)  # warm-up
        frames.append(estimator.estimate(real_rgb(), camera(), points_stride=1))
        print(f"\n{device}: { {k: round(v * 1e3, 2) for k, v in frames[-1].timings.items()} } ms")
    cpu, gpu = frames
    assert np.isfinite(cpu.depth).all() and np.isfinite(gpu.depth).all()
    # Identical preprocessing up to float rounding; inside the ViT cuDNN runs convolutions in TF32 by default,
    # which the random network amplifies like the 8-bit rounding of the CPU comparison above.
    assert np.abs(gpu.depth / cpu.depth - 1.0).max() < 2e-2
    assert gpu.points is not None
    assert_same_depth(gpu.points, depth_to_points(gpu.depth, gpu.camera, 1))

