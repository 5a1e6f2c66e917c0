"""TensorRT on a real GPU (10.3 on a Jetson, 11.x from pip): engines built by the backend, compared with ONNX
Runtime on the CPU running the same ONNX file.

Every test is marked ``gpu`` and skips, with the reason, where ``tensorrt_backend.probe()`` finds TensorRT or a
CUDA device missing; the FP16 test also skips without NVIDIA ModelOpt. Every engine, timing cache and converted
ONNX goes into the test's temporary directories, never ~/.cache.

Models:
- Depth Anything V2 exported by the project (random weights, 4 ViT-S blocks, metric head, 182x238). Random
  initialisation leaves the head's logit almost constant (std 0.004: every depth ~9.9 m whatever the image), a
  map any tolerance accepts. So the final 1x1 convolution is rescaled to a chosen logit spread (and centred), as
  tests/core/test_torch_ops.py's checkpoint is: then the depth follows the image and a stale or wrong output
  fails by far more than the tolerances.
- Small hand-made graphs (onnx.helper) for what DA-V2 cannot export (dynamic H/W), a second output and FP16 I/O:
  Conv 3x3 -> Relu -> Conv 1x1 -> Abs -> +1 with weights k/8 and inputs m/16. Every product and partial sum is
  then a short dyadic number (< 2^11 units of 1/128 in the first layer, < 2^24 units of 1/1024 after), exact in
  TF32, FP16 and FP32 for any summation order: ONNX Runtime and TensorRT agree to the bit with direct or GEMM
  convolutions. EXACT_RTOL = 1e-4 leaves room for a Winograd kernel's transform rounding (a few FP32 ulps of
  the sum of |terms| ~ 14); a binding, shape or stale-buffer bug moves outputs by ~10 %.

Tolerances of the DA-V2 tests, relative error per pixel (check.relative_error):
- FP32 engines: TensorRT runs FP32 convolutions and matrix products in TF32 by default (BuilderFlag.TF32, on
  Ampere and later: inputs rounded to 10-bit mantissas, u = 2^-11, FP32 accumulation); allowed. Emulated on the
  CPU (torch, conv/linear/attention inputs rounded to TF32) at logit spread 0.02: median 1.5e-5, max 1e-4. The
  bound is rtol 1e-3 for every pixel and 1e-4 for the median; consecutive probe frames differ by 0.7 % median,
  5 % max, so a stale buffer fails both.
- FP16 engine (ModelOpt AutoCast: normalisation, softmax and reductions in FP32): FP16's unit roundoff is 2^-11
  ~ 4.9e-4 on every activation, accumulating through 4 blocks and the DPT head; measured on the CPU (the
  converted ONNX in ONNX Runtime, with the torch path's preprocessing, whose missing 8-bit rounding moves the
  input by <= 0.75 grey level) at logit spread 0.5: median 0.13 %, 99th percentile 0.8 %. Asserted: median
  <= 1 %, 99th percentile <= 5 %; the two frames differ by 14 % median.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from oracles import camera_info, make_contract, rgb_image
from ros_harness import depth_array

from depth_ros.backends import BackendOptions
from depth_ros.backends.check import BackendChecker, BackendCheckError, probe_tensors, relative_error
from depth_ros.backends.engine_cache import CONVERTED_ONNX_FILE, ENGINE_FILE, EngineCache
from depth_ros.backends.graph_models import set_contract
from depth_ros.backends.mixed_precision import MODELOPT_INSTALL, modelopt_version
from depth_ros.backends.tensorrt_backend import TensorRTBackend, probe
from depth_ros.core.camera import CameraModel
from depth_ros.core.contract import ModelContract, read_contract_from_onnx_metadata
from depth_ros.core.pointcloud import depth_to_points
from depth_ros.pipeline import DepthEstimator

if TYPE_CHECKING:
    from ros_harness import Client, NodeProcess

ROOT = Path(__file__).resolve().parents[2]
COLOR = ROOT / "data" / "realsense_d435" / "color.png"
FX, FY, CX, CY = 615.0, 612.0, 322.5, 241.25
NET = (182, 238)  # DA-V2 network input (height, width): --camera 640x480 --short-side 182
MAX_DEPTH = 20.0

FP32_RTOL = 1e-3  # every pixel (TF32 allowed)
FP32_MEDIAN_RTOL = 1e-4
FP16_MEDIAN_RTOL = 1e-2
FP16_P99_RTOL = 5e-2
EXACT_RTOL = 1e-4  # the hand-made dyadic graphs (see the module docstring)
FP16_ULP = 2.0**-10  # the largest spacing of FP16 numbers relative to a normal value

Outputs = list[np.ndarray]


# ----------------------------------------------------------------------------- skips


@pytest.fixture(scope="module")
def tensorrt_ready() -> None:
    reason = probe()
    if reason is not None:
        pytest.skip(f"TensorRT backend unavailable: {reason}")


@pytest.fixture(scope="module")
def modelopt_ready(tensorrt_ready: None) -> None:
    if modelopt_version() is None:
        pytest.skip(f"FP16 engines need NVIDIA ModelOpt (AutoCast), which is not installed: {MODELOPT_INSTALL}")


# ----------------------------------------------------------------------------- models


def export_dav2(directory: Path, logit_std: float) -> Path:
    """Random-weight DA-V2 (seed 0, as backends/test_export.py) with its final 1x1 convolution rescaled so that the
    head's logit has standard deviation ``logit_std`` around 0 on the first probe image (depth 20 * sigmoid:
    10 m in the middle), exported by `depth-ros export` at 182x238."""
    import torch

    from depth_ros.cli import main
    from depth_ros.nets.depth_anything_v2 import build

    torch.manual_seed(0)
    model = build("vits", head="metric", max_depth=MAX_DEPTH, depth=4)
    spec = ModelContract.from_dict(model.contract_fields("vits", *NET)).input
    final = model.depth_head.scratch.output_conv2[2]
    with torch.no_grad():
        depth = model(torch.from_numpy(probe_tensors(spec, *NET)[0])).double()
        logit = torch.log(depth / (MAX_DEPTH - depth)) - float(final.bias)
        gain = logit_std / float(logit.std())
        final.weight.mul_(gain)
        final.bias.fill_(-gain * float(logit.median()))
    checkpoint = directory / "metric.pth"
    torch.save(model.state_dict(), checkpoint)
    path = directory / "dav2.onnx"
    assert main(["export", str(checkpoint), "--depth", "4", "--head", "metric", "--max-depth", str(MAX_DEPTH),
                 "--camera", "640x480", "--short-side", str(NET[0]), "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def gentle_dav2(tensorrt_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Logit spread 0.02 (depth 9.3..10.5 m): TF32 rounding stays an order below FP32_RTOL."""
    return export_dav2(tmp_path_factory.mktemp("dav2_gentle"), 0.02)


@pytest.fixture(scope="module")
def dav2(tensorrt_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Logit spread 0.5 (depth 0.6..18.4 m on the probes and the real image): the depth follows the image."""
    return export_dav2(tmp_path_factory.mktemp("dav2"), 0.5)


@pytest.fixture(scope="module")
def dav2_fp32_cache(dav2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An engine cache holding the FP32 engine of ``dav2``, written by `depth-ros build-engine`."""
    from depth_ros.cli import main

    cache = tmp_path_factory.mktemp("dav2_fp32_engines")
    assert main(["build-engine", str(dav2), "--precision", "fp32", "--cache-dir", str(cache)]) == 0
    assert len(entry_dirs(cache)) == 1
    return cache


def conv_model(path: Path, height: int | str, width: int | str, *, fov: bool = False, fp16_io: bool = False) -> Path:
    """Conv 3x3 (3 -> 4) -> Relu -> Conv 1x1 (4 -> 1) -> Abs -> +1 -> 'depth' (1, 1, H, W), weights k/8.

    ``height``/``width`` given as names make a dynamic input. ``fov``: a second output 'fov' (1, 1), the map's
    maximum (exact in every runtime). ``fp16_io``: a float16 input and output, cast to float32 around the rest.
    """
    rng = np.random.default_rng(0)
    weights = {
        "w1": rng.integers(-4, 5, (4, 3, 3, 3)), "b1": rng.integers(-4, 5, 4),
        "w2": rng.integers(-4, 5, (1, 4, 1, 1)), "b2": rng.integers(-4, 5, 1),
    }
    initialisers = [numpy_helper.from_array((value / 8).astype(np.float32), name) for name, value in weights.items()]
    initialisers.append(numpy_helper.from_array(np.ones((), np.float32), "one"))
    io_type = TensorProto.FLOAT16 if fp16_io else TensorProto.FLOAT
    source, result = ("image32", "depth32") if fp16_io else ("image", "depth")
    nodes = [helper.make_node("Cast", ["image"], [source], to=TensorProto.FLOAT)] if fp16_io else []
    nodes += [
        helper.make_node("Conv", [source, "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], kernel_shape=[1, 1]),
        helper.make_node("Abs", ["c2"], ["a2"]),
        helper.make_node("Add", ["a2", "one"], [result]),
    ]
    if fp16_io:
        nodes.append(helper.make_node("Cast", [result], ["depth"], to=TensorProto.FLOAT16))
    outputs = [helper.make_tensor_value_info("depth", io_type, [1, 1, height, width])]
    if fov:
        nodes.append(helper.make_node("ReduceMax", ["depth"], ["fov"], axes=[2, 3], keepdims=0))
        outputs.append(helper.make_tensor_value_info("fov", io_type, [1, 1]))
    image = helper.make_tensor_value_info("image", io_type, [1, 3, height, width])
    model = helper.make_model(helper.make_graph(nodes, "depth_ros_test_conv", [image], outputs, initialisers),
                              opset_imports=[helper.make_opsetid("", 17)], producer_name="depth_ros tests")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    set_contract(model, make_contract("metric_depth", 24, 32))
    onnx.save(model, str(path))
    return path


def grid_image(height: int, width: int, seed: int) -> np.ndarray:
    """A (1, 3, H, W) float32 input of values m/16 in [0, 1]: exact in FP16 and TF32."""
    return (np.random.default_rng(seed).integers(0, 17, (1, 3, height, width)) / 16).astype(np.float32)


# ----------------------------------------------------------------------------- helpers


def fp32_options(cache: Path) -> BackendOptions:
    return BackendOptions(engine_cache_dir=str(cache), engine_precision="fp32")


def onnxruntime_outputs(model: Path) -> Callable[[np.ndarray], Outputs]:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda tensor: list(session.run(None, {name: tensor}))


def contract_of(model: Path) -> ModelContract:
    props = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
    return read_contract_from_onnx_metadata(props, str(model))


def entry_dirs(cache: Path) -> list[str]:
    """The cache's entry directories (one per engine; the timing cache is a file beside them)."""
    return sorted(p.name for p in cache.iterdir() if p.is_dir()) if cache.is_dir() else []


def real_rgb() -> np.ndarray:
    rgb = cv2.cvtColor(cv2.imread(str(COLOR), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert rgb.shape == (480, 640, 3)
    return rgb


def assert_fp32_match(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert got.dtype == np.float32 and got.shape == expected.shape, (what, got.dtype, got.shape, expected.shape)
    error = relative_error(got, expected)
    median, worst = float(np.median(error)), float(error.max())
    print(f"\n{what}: relative error median {median:.2e}, max {worst:.2e}")
    assert median <= FP32_MEDIAN_RTOL and worst <= FP32_RTOL, (what, median, worst)


def assert_exact_match(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert got.dtype == np.float32 and got.shape == expected.shape, (what, got.dtype, got.shape, expected.shape)
    np.testing.assert_allclose(got, expected, rtol=EXACT_RTOL, err_msg=what)


def compute_types(model_path: Path) -> dict[str, list[tuple[int, int]]]:
    """op type -> [(element type of its first input, of its first output)], from ONNX shape inference."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(model_path)))
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]}
    types.update({t.name: t.data_type for t in graph.initializer})
    result: dict[str, list[tuple[int, int]]] = {}
    for node in graph.node:
        result.setdefault(node.op_type, []).append((types.get(node.input[0], 0), types.get(node.output[0], 0)))
    return result


# ----------------------------------------------------------------------------- 1. consecutive frames


@pytest.mark.gpu
def test_distinct_consecutive_frames_each_match_onnxruntime(gentle_dav2: Path, tmp_path: Path) -> None:
    """Two different inputs back and forth through infer and infer_device: each output is ONNX Runtime's for its
    own input. A buffer still holding the previous frame's output, or results aliasing one reused host buffer
    (all outputs are kept until the end), fail."""
    import torch

    backend = TensorRTBackend(gentle_dav2, fp32_options(tmp_path / "engines"))
    assert backend.precision == "fp32" and backend.fixed_input_size == NET
    first, second = probe_tensors(contract_of(gentle_dav2).input, *NET)
    reference = onnxruntime_outputs(gentle_dav2)
    expected = [reference(first)[0], reference(second)[0]]
    apart = relative_error(expected[1], expected[0])
    assert np.median(apart) > 10 * FP32_MEDIAN_RTOL and apart.max() > 10 * FP32_RTOL, "the frames are too alike"
    order = [0, 1, 0, 1]
    inputs = [first, second]
    host = [np.asarray(backend.infer(inputs[i])) for i in order]
    device = []
    for i in order:
        out = backend.infer_device(torch.from_numpy(inputs[i]).to("cuda"))
        assert out.is_cuda and out.dtype == torch.float32
        device.append(out.cpu().numpy())  # now: the buffer is the next call's; the caller's stream waits for it
    for call, (i, got) in enumerate(zip(order + order, host + device, strict=True)):
        path = "infer" if call < len(order) else "infer_device"
        assert_fp32_match(got, expected[i], f"{path} call {call % len(order)} (frame {i})")


# ----------------------------------------------------------------------------- 2. FP16 on the device path


@pytest.mark.gpu
def test_fp16_engine_on_the_device_path_matches_onnxruntime(modelopt_ready: None, dav2: Path, tmp_path: Path) -> None:
    """The node's default precision: DepthEstimator with TensorRT FP16 on the torch device path vs ONNX Runtime on
    the numpy path, two distinct frames; the engine, its converted ONNX (LayerNormalization in FP32, the matrix
    work in FP16) and the timing cache lie where engine_cache_dir says."""
    cache = tmp_path / "engines"
    estimator = DepthEstimator.from_path(dav2, "tensorrt", BackendOptions(engine_cache_dir=str(cache),
                                                                          engine_precision="fp16"))
    reference = DepthEstimator.from_path(dav2, "onnxruntime")
    assert estimator.uses_device_pipeline and not reference.uses_device_pipeline
    backend = estimator.backend
    assert isinstance(backend, TensorRTBackend) and backend.precision == "fp16"
    [key] = backend.engines
    assert key.precision == "fp16" and key.typing == f"strong+modelopt-{modelopt_version()}"
    entry = EngineCache(cache).entry_dir(dav2, key)
    assert entry_dirs(cache) == [entry.name] and (entry / ENGINE_FILE).is_file()
    assert (cache / "timing.cache").is_file()
    converted = entry / CONVERTED_ONNX_FILE
    assert converted.is_file(), sorted(p.name for p in entry.iterdir())
    types = compute_types(converted)
    layer_norms = types.get("LayerNormalization", [])
    assert len(layer_norms) >= 4 and all(t == (TensorProto.FLOAT, TensorProto.FLOAT) for t in layer_norms), layer_norms
    matmuls = types.get("MatMul", [])
    assert sum(t[0] == TensorProto.FLOAT16 for t in matmuls) >= 0.5 * len(matmuls) > 0, matmuls

    rgb = real_rgb()
    frames = [rgb, np.ascontiguousarray(rgb[:, ::-1])]
    cam = CameraModel.from_camera_info(camera_info(640, 480, FX, FY, CX, CY))
    got = [estimator.estimate(frame, cam, points_stride=1) for frame in frames]  # back to back, compared after
    expected = [reference.estimate(frame, cam).depth for frame in frames]
    assert np.median(relative_error(expected[1], expected[0])) > 5 * FP16_MEDIAN_RTOL, "the frames are too alike"
    for index, (frame, depth) in enumerate(zip(got, expected, strict=True)):
        assert frame.depth.shape == depth.shape == (480, 640) and frame.depth.dtype == np.float32
        assert np.isfinite(frame.depth).all() and np.isfinite(depth).all()  # 0.6..18.4 m: inside 0.1..20 m
        error = relative_error(frame.depth, depth)
        median, p99 = float(np.median(error)), float(np.percentile(error, 99))
        print(f"\nFP16 frame {index}: relative depth error median {median:.2e}, 99th percentile {p99:.2e}, "
              f"max {error.max():.2e}; timings { {k: round(v * 1e3, 2) for k, v in frame.timings.items()} } ms")
        assert median <= FP16_MEDIAN_RTOL and p99 <= FP16_P99_RTOL, (index, median, p99)
        assert frame.points is not None  # the cloud that came back with the depth is that depth's cloud
        np.testing.assert_array_equal(frame.points, depth_to_points(frame.depth, frame.camera, 1))


# ----------------------------------------------------------------------------- 3. dynamic shapes


@pytest.mark.gpu
def test_dynamic_model_gets_an_engine_per_size_and_finds_a_build_engine_range(tensorrt_ready: None,
                                                                              tmp_path: Path) -> None:
    """DA-V2 refuses a dynamic export (tests/backends/test_export.py), so a hand-made dynamic-H/W graph: each input size
    gets an engine of exactly that size; then `depth-ros build-engine --min/--opt/--max` writes a range engine
    that a fresh backend on the same cache uses for a size inside it, building nothing."""
    from depth_ros.cli import main

    model = conv_model(tmp_path / "dynamic.onnx", "height", "width")
    cache = tmp_path / "engines"
    backend = TensorRTBackend(model, fp32_options(cache))
    assert backend.fixed_input_size is None and backend.engines == []
    reference = onnxruntime_outputs(model)
    small, large = grid_image(24, 32, 1), grid_image(40, 56, 2)
    for tensor in (small, large, small):
        assert_exact_match(np.asarray(backend.infer(tensor)), reference(tensor)[0], f"input {tensor.shape}")
    exact = [(1, 3, 24, 32), (1, 3, 40, 56)]
    assert [key.profile() for key in backend.engines] == [(s, s, s) for s in exact]
    assert len(entry_dirs(cache)) == 2

    assert main(["build-engine", str(model), "--precision", "fp32", "--cache-dir", str(cache),
                 "--min", "32x24", "--opt", "48x40", "--max", "64x48"]) == 0  # WIDTHxHEIGHT
    entries = entry_dirs(cache)
    assert len(entries) == 3
    messages: list[str] = []
    fresh = TensorRTBackend(model, fp32_options(cache), log=messages.append)
    inside = grid_image(36, 52, 3)  # only the range engine covers it
    assert_exact_match(np.asarray(fresh.infer(inside)), reference(inside)[0], "inside the range")
    [key] = fresh.engines
    assert key.profile() == ((1, 3, 24, 32), (1, 3, 40, 48), (1, 3, 48, 64))
    assert entry_dirs(cache) == entries
    assert not any("building" in message for message in messages), messages


# ----------------------------------------------------------------------------- 4. a second output


@pytest.mark.gpu
def test_second_output_is_bound_and_the_first_is_the_prediction(tensorrt_ready: None, tmp_path: Path) -> None:
    """A model with a (1, 1) 'fov' output after the depth map: the backend returns the depth map, and the second
    output has a buffer of its own shape that the engine writes (ONNX Runtime's value)."""
    import torch

    model = conv_model(tmp_path / "two_outputs.onnx", 24, 32, fov=True)
    backend = TensorRTBackend(model, fp32_options(tmp_path / "engines"))
    reference = onnxruntime_outputs(model)
    for seed in (1, 2):
        tensor = grid_image(24, 32, seed)
        depth, fov = reference(tensor)
        assert depth.shape == (1, 1, 24, 32) and fov.shape == (1, 1)
        assert_exact_match(np.asarray(backend.infer(tensor)), depth, f"depth, input {seed}")
        torch.cuda.synchronize()
        [runner] = backend._runners
        bound = runner.buffers["fov"]
        assert tuple(bound.shape) == (1, 1) and bound.dtype == torch.float32
        assert_exact_match(bound.cpu().numpy(), fov, f"fov, input {seed}")
        # Asked for by ONNX index (a contract's confidence_output): both outputs of one run, host and device.
        assert backend.output_count == 2
        host_depth, host_fov = backend.infer(tensor, (1,))
        assert_exact_match(np.asarray(host_depth), depth, f"depth with extra outputs, input {seed}")
        assert_exact_match(np.asarray(host_fov), fov, f"fov as extra output, input {seed}")
        device_depth, device_fov = backend.infer_device(torch.from_numpy(tensor).to("cuda"), (1,))
        assert device_fov.is_cuda and device_fov.dtype == torch.float32
        assert_exact_match(device_depth.cpu().numpy(), depth, f"device depth, input {seed}")
        assert_exact_match(device_fov.cpu().numpy(), fov, f"device fov, input {seed}")


# ----------------------------------------------------------------------------- 5. FP16 inputs and outputs


@pytest.mark.gpu
def test_float16_input_and_output_are_cast_in_and_out(tensorrt_ready: None, tmp_path: Path) -> None:
    """A model with a float16 input and output: the backend casts the float32 tensor in and returns float32, equal
    to ONNX Runtime's float16 result (given the float16 input) within one FP16 ulp (2^-10 relative). Both round
    the same exact FP32 values (see the module docstring), so they agree to the bit unless a Winograd kernel
    moves a value across a rounding boundary."""
    import torch

    model = conv_model(tmp_path / "half_io.onnx", 24, 32, fp16_io=True)
    backend = TensorRTBackend(model, fp32_options(tmp_path / "engines"))
    [runner] = backend._runners
    assert runner.dtypes == {"image": torch.float16, "depth": torch.float16}
    reference = onnxruntime_outputs(model)
    for seed in (1, 2):
        tensor = grid_image(24, 32, seed)
        [expected16] = reference(tensor.astype(np.float16))
        assert expected16.dtype == np.float16
        expected = expected16.astype(np.float32)
        host = np.asarray(backend.infer(tensor))
        device = backend.infer_device(torch.from_numpy(tensor).to("cuda"))
        assert device.dtype == torch.float32 and device.is_cuda
        for what, got in (("infer", host), ("infer_device", device.cpu().numpy())):
            assert got.dtype == np.float32 and got.shape == expected.shape == (1, 1, 24, 32), what
            assert np.array_equal(got, got.astype(np.float16).astype(np.float32)), f"{what}: not an FP16 output"
            error = np.abs(got - expected) / np.abs(expected)  # outputs are >= 1
            assert error.max() <= FP16_ULP, (what, seed, float(error.max()))


# ----------------------------------------------------------------------------- 6. backend_check


@pytest.mark.gpu
def test_backend_check_passes_on_a_real_fp32_engine(dav2: Path, dav2_fp32_cache: Path) -> None:
    """The startup check with policy 'fail' on the FP32 engine: 'ok (median ...)'. With limits no real runtime
    meets (1e-9) the same check fails: it compares two different runtimes, not the backend with itself."""
    backend = TensorRTBackend(dav2, fp32_options(dav2_fp32_cache))
    spec = contract_of(dav2).input
    messages: list[str] = []
    checker = BackendChecker(backend, dav2, spec, policy="fail", warn=messages.append, info=messages.append)
    checker(NET)
    print(f"\n{checker.status}")
    assert checker.status.startswith("ok (median "), (checker.status, messages)
    strict = BackendChecker(backend, dav2, spec, policy="fail", tolerance=1e-9, max_tolerance=1e-9,
                            warn=messages.append, info=messages.append)
    with pytest.raises(BackendCheckError):
        strict(NET)
    assert strict.status.startswith("FAILED (median "), strict.status


# ----------------------------------------------------------------------------- 7. the live node


@pytest.mark.gpu
def test_live_node_with_tensorrt_matches_onnxruntime(
    dav2: Path, dav2_fp32_cache: Path, depth_node: Callable[..., tuple[NodeProcess, Client]],
) -> None:
    """depth_node with backend 'tensorrt' (FP32 engine from `depth-ros build-engine`, found by the node in its
    engine_cache_dir: nothing is built at startup), one frame + CameraInfo: its depth is the ONNX Runtime
    estimate of that frame (median relative error <= 1 %: the torch path's preprocessing alone gives 0.12 % on
    the CPU, TF32 ~0.06 %; another frame differs by ~14 %), and its diagnostics report the passed backend_check."""
    entries = entry_dirs(dav2_fp32_cache)
    process, client = depth_node({"model": str(dav2), "backend": "tensorrt", "engine_cache_dir": str(dav2_fp32_cache),
                                  "engine_precision": "fp32", "backend_check": "fail"})
    rgb = real_rgb()
    info = camera_info(640, 480, FX, FY, CX, CY)
    out = client.send(rgb_image(rgb), info, 1_700_000_000_000_000_000, wanted=("depth",), timeout=60.0)
    assert out.depth is not None
    depth = depth_array(out.depth)
    expected = DepthEstimator.from_path(dav2, "onnxruntime").estimate(rgb, CameraModel.from_camera_info(info)).depth
    assert depth.shape == expected.shape == (480, 640)
    both = np.isfinite(depth) & np.isfinite(expected)
    assert both.mean() > 0.99, both.mean()
    error = relative_error(depth[both], expected[both])
    print(f"\nnode (TensorRT FP32) vs ONNX Runtime: median {np.median(error):.2e}, max {error.max():.2e}")
    assert np.median(error) <= 1e-2, float(np.median(error))
    diag = client.latest_diagnostics()
    assert diag["backend"] == "tensorrt" and diag["device"] == "cuda", diag
    assert diag["engine_precision"] == "fp32", diag
    assert diag["backend_check"].startswith("ok"), diag
    assert entry_dirs(dav2_fp32_cache) == entries, process.output()
