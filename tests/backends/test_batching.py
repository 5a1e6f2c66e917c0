"""Batched inference: one forward pass of N images on the backends that allow it, equal to N single runs.

The model is the project's own smallest student (registry arch ``student_cnn_xs``, random weights from a fixed
torch seed) exported by `depth-ros export --batch dynamic` and with the default fixed batch of 1. Real ONNX
Runtime and real torch run it on the CPU; the TensorRT batch-range logic (profiles, keys, cached ranges) is pure
Python and tested here without TensorRT; building an engine with a batch range runs only where
``tensorrt_backend.probe()`` finds TensorRT and a CUDA device (marked ``gpu``, skipped with the reason elsewhere).

Tolerances: a batch and single runs of the same CPU kernels differ only by the summation order a kernel picks
for another batch size (measured 0 to 1e-7 on outputs ~1): atol 1e-5. TensorRT's FP32 engines run convolutions
in TF32 and may pick other tactics per batch size: relative 1e-3 per pixel (tests/backends/test_tensorrt_gpu.py).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from oracles import make_contract, save_oracle

torch = pytest.importorskip("torch")

from depth_ros.backends import BackendOptions, ModelLoadError, create_backend  # noqa: E402
from depth_ros.backends.base import MAX_DYNAMIC_BATCH, cut_batch, pad_batch  # noqa: E402
from depth_ros.backends.engine_cache import EngineCache, EngineKey, model_sha256  # noqa: E402
from depth_ros.backends.export import BATCH_DIM, export_onnx  # noqa: E402
from depth_ros.backends.tensorrt_backend import (  # noqa: E402
    BuildSettings,
    BuildTarget,
    batch_range,
    engine_key,
    engine_profile,
    nchw_profile,
    probe,
    read_signature,
)
from depth_ros.backends.torch_backend import TorchBackend  # noqa: E402
from depth_ros.cli import build_parser, main  # noqa: E402
from depth_ros.nets import build  # noqa: E402

NET = (56, 84)  # network input (height, width): multiples of 14, as `depth-ros export` asks
ATOL = 1e-5
TRT_RTOL = 1e-3
TARGET = BuildTarget("NVIDIA Jetson AGX Orin", "8.7", "10.3.0")
CONTRACT = make_contract("canonical_inverse_depth", *NET)


def student() -> Any:
    torch.manual_seed(0)
    return build("student_cnn_xs").eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The student's state dict and its exports: 'dynamic' through the CLI (--batch dynamic), 'static' (batch 1,
    the default) and 'fixed2' (a fixed batch of 2) through export_onnx."""
    out = tmp_path_factory.mktemp("batching")
    checkpoint = out / "student.pt"
    torch.save(student().state_dict(), checkpoint)
    contract = out / "contract.json"
    contract.write_text(CONTRACT.to_json())
    paths = {"checkpoint": checkpoint, "dynamic": out / "dynamic.onnx", "static": out / "static.onnx",
             "fixed2": out / "fixed2.onnx"}
    assert main(["export", str(checkpoint), "--arch", "student_cnn_xs", "--contract", str(contract),
                 "--height", str(NET[0]), "--width", str(NET[1]), "--batch", "dynamic",
                 "--out", str(paths["dynamic"])]) == 0
    export_onnx(student(), CONTRACT, paths["static"], NET)
    export_onnx(student(), CONTRACT, paths["fixed2"], NET, batch=2)
    return paths


def images(count: int, seed: int = 0) -> np.ndarray:
    """``count`` different normalised images (N, 3, H, W)."""
    return np.random.default_rng(seed).standard_normal((count, 3, *NET)).astype(np.float32)


def ort(path: Path) -> Any:
    return create_backend(path, "onnxruntime", BackendOptions(device="cpu", num_threads=2))


def singles(backend: Any, batch: np.ndarray) -> np.ndarray:
    return np.concatenate([backend.infer(batch[i:i + 1]) for i in range(batch.shape[0])])


def dims(value_info: Any) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


# ----------------------------------------------------------------------------- export


def test_dynamic_batch_export_names_dim_0_batch_on_input_and_outputs(models: dict[str, Path]) -> None:
    graph = onnx.load(str(models["dynamic"])).graph
    assert dims(graph.input[0]) == [BATCH_DIM, 3, *NET]
    assert all(dims(output)[0] == BATCH_DIM for output in graph.output)
    assert read_signature(models["dynamic"]).input_dims == (BATCH_DIM, 3, *NET)
    static = onnx.load(str(models["static"])).graph  # the default is unchanged: batch 1, fixed
    assert dims(static.input[0]) == [1, 3, *NET] and dims(static.output[0])[0] == 1
    assert dims(onnx.load(str(models["fixed2"])).graph.input[0]) == [2, 3, *NET]


def test_export_batch_flag(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    common = ["export", "m.pt", "--out", "m.onnx"]
    assert parser.parse_args(common).batch == 1
    assert parser.parse_args([*common, "--batch", "dynamic"]).batch is None
    assert parser.parse_args([*common, "--batch", "4"]).batch == 4
    for bad in ("0", "many"):
        with pytest.raises(SystemExit):
            parser.parse_args([*common, "--batch", bad])
    assert "expected a batch size >= 1 or 'dynamic'" in capsys.readouterr().err
    engine = parser.parse_args(["build-engine", "m.onnx", "--max-batch", "8", "--opt-batch", "2"])
    assert (engine.max_batch, engine.opt_batch) == (8, 2)
    assert parser.parse_args(["build-engine", "m.onnx"]).max_batch == 1


# ----------------------------------------------------------------------------- ONNX Runtime


def test_onnxruntime_runs_a_dynamic_batch_in_one_pass(models: dict[str, Path]) -> None:
    backend = ort(models["dynamic"])
    assert backend.max_batch == MAX_DYNAMIC_BATCH > 1
    batch = images(3)
    out = backend.infer(batch)
    assert out.shape == (3, 1, *NET) and out.dtype == np.float32
    expected = singles(backend, batch)
    np.testing.assert_allclose(out, expected, rtol=0, atol=ATOL)
    # Three different images give three different maps: a batch repeating one image's output fails above.
    assert min(np.abs(out[i] - out[j]).max() for i, j in ((0, 1), (0, 2), (1, 2))) > 100 * ATOL
    # The static export of the same weights gives the same maps one by one.
    static = ort(models["static"])
    assert static.max_batch == 1
    np.testing.assert_allclose(singles(static, batch), expected, rtol=0, atol=ATOL)


def test_a_fixed_batch_runs_fewer_images_padded(models: dict[str, Path]) -> None:
    backend = ort(models["fixed2"])
    assert backend.max_batch == 2
    batch = images(2, seed=1)
    expected = singles(ort(models["static"]), batch)
    np.testing.assert_allclose(backend.infer(batch), expected, rtol=0, atol=ATOL)
    one = backend.infer(batch[:1])  # padded to 2 with a zero image, cut back to 1
    assert one.shape == (1, 1, *NET)
    np.testing.assert_allclose(one, expected[:1], rtol=0, atol=ATOL)


def test_extra_outputs_keep_the_batch(tmp_path: Path) -> None:
    """An oracle with a dynamic batch and a second output: both come back (N, 1, h, w)."""
    first = np.arange(48, dtype=np.float32).reshape(6, 8) + 1.0
    second = np.full((6, 8), 0.25, np.float32)
    path = save_oracle(tmp_path, first, make_contract("metric_depth", 6, 8), (6, 8), second_output=second,
                       batch=BATCH_DIM)
    backend = ort(path)
    assert backend.max_batch == MAX_DYNAMIC_BATCH and backend.output_count == 2
    batch = np.random.default_rng(3).random((4, 3, 6, 8), np.float32)
    depth, sigma = backend.infer(batch, (1,))
    assert depth.shape == sigma.shape == (4, 1, 6, 8)
    np.testing.assert_array_equal(depth, np.broadcast_to(first, (4, 1, 6, 8)))
    np.testing.assert_array_equal(sigma, np.broadcast_to(second, (4, 1, 6, 8)))
    rank3 = ort(save_oracle(tmp_path, first, make_contract("metric_depth", 6, 8), (6, 8), name="r3.onnx",
                            output_rank=3, batch=3))
    assert rank3.max_batch == 3 and rank3.infer(batch[:2]).shape == (2, 6, 8)  # padded to 3, cut to 2


def test_pad_and_cut_batch() -> None:
    batch = images(2)
    padded = pad_batch(batch, 4)
    assert padded.shape == (4, 3, *NET) and not padded[2:].any() and np.array_equal(padded[:2], batch)
    assert pad_batch(batch, 2) is batch
    assert cut_batch(np.zeros((4, 1, 5, 5)), 2, 4).shape == (2, 1, 5, 5)
    assert cut_batch(np.zeros(()), 2, 4).shape == ()  # no batch dimension: kept whole
    assert cut_batch(np.zeros((7,)), 2, 4).shape == (7,)


# ----------------------------------------------------------------------------- torch


def torch_backend(model: Any) -> TorchBackend:
    """The backend's code around the student (TorchBackend loads Depth Anything V2 checkpoints itself)."""
    backend = TorchBackend.__new__(TorchBackend)
    backend.device, backend._dtype, backend._model = "cpu", torch.float32, model
    return backend


def test_torch_backend_runs_a_batch_in_one_pass(models: dict[str, Path]) -> None:
    backend = torch_backend(student())
    assert backend.max_batch == MAX_DYNAMIC_BATCH > 1
    batch = images(3, seed=4)
    out = backend.infer(batch)
    assert out.shape == (3, 1, *NET)
    np.testing.assert_allclose(out, singles(backend, batch), rtol=0, atol=ATOL)
    device = backend.infer_device(torch.from_numpy(batch))
    np.testing.assert_allclose(device.numpy(), out, rtol=0, atol=ATOL)
    # The same weights exported with a dynamic batch: ONNX Runtime's batch is torch's.
    np.testing.assert_allclose(ort(models["dynamic"]).infer(batch), out, rtol=0, atol=ATOL)


# ----------------------------------------------------------------------------- TensorRT, no GPU needed


def test_batch_range_of_static_and_dynamic_batches(models: dict[str, Path]) -> None:
    dynamic = read_signature(models["dynamic"])
    assert dynamic.dynamic_batch and not dynamic.dynamic and dynamic.needs_profile
    assert batch_range(dynamic, BuildSettings()) == (1, 1, 1)  # the default: batch 1 only
    assert batch_range(dynamic, BuildSettings(max_batch=3)) == (1, 3, 3)  # opt at the max by default
    assert batch_range(dynamic, BuildSettings(max_batch=8, opt_batch=2)) == (1, 2, 8)
    for bad in (BuildSettings(max_batch=0), BuildSettings(max_batch=2, opt_batch=3)):
        with pytest.raises(ModelLoadError, match="1 <= opt_batch <= max_batch"):
            batch_range(dynamic, bad)
    static = read_signature(models["static"])
    assert not static.dynamic_batch and not static.needs_profile
    assert batch_range(static, BuildSettings(max_batch=8)) == (1, 1, 1)  # the ONNX's own batch
    assert batch_range(read_signature(models["fixed2"]), BuildSettings()) == (2, 2, 2)


def test_profile_and_key_of_a_batch_range(models: dict[str, Path]) -> None:
    path = models["dynamic"]
    signature, digest = read_signature(path), model_sha256(path)
    profile = engine_profile(signature, BuildSettings(precision="fp32", max_batch=3))
    assert profile == ((1, 3, *NET), (3, 3, *NET), (3, 3, *NET))
    key = engine_key(TARGET, digest, signature, "fp32", profile)
    assert key.input_shape == f"min:1x3x{NET[0]}x{NET[1]};opt:3x3x{NET[0]}x{NET[1]};max:3x3x{NET[0]}x{NET[1]}"
    assert key.covers((1, 3, *NET)) and key.covers((3, 3, *NET)) and not key.covers((4, 3, *NET))
    # Every batch range is its own engine (and cache entry); all are built alike otherwise.
    keys = [engine_key(TARGET, digest, signature, "fp32",
                       engine_profile(signature, BuildSettings(precision="fp32", max_batch=m, opt_batch=o)))
            for m, o in ((1, 0), (3, 0), (3, 1), (8, 0))]
    assert keys[1] == key and len({k.digest() for k in keys}) == 4 and all(k.same_build_as(key) for k in keys)
    # A fully static ONNX has no profile and keys its one shape, whatever the settings ask.
    static = read_signature(models["static"])
    assert engine_profile(static, BuildSettings(max_batch=3)) is None
    assert engine_key(TARGET, model_sha256(models["static"]), static, "fp32", None).input_shape == \
        f"1x3x{NET[0]}x{NET[1]}"


def test_profile_of_dynamic_sizes_and_a_dynamic_batch(tmp_path: Path) -> None:
    path = save_oracle(tmp_path, np.ones((6, 8), np.float32), make_contract("metric_depth", 6, 8), None,
                       batch=BATCH_DIM)
    signature = read_signature(path)
    assert signature.dynamic and signature.dynamic_batch
    settings = BuildSettings(precision="fp32", max_batch=4, opt_batch=2)
    assert engine_profile(signature, settings) is None  # no size to build for yet: the first frame gives it
    assert engine_profile(signature, settings, (1, 3, 364, 490)) == (
        (1, 3, 364, 490), (2, 3, 364, 490), (4, 3, 364, 490))
    ranged = replace(settings, profile=((266, 350), (364, 490), (518, 700)))
    assert engine_profile(signature, ranged, (1, 3, 364, 490)) == (
        (1, 3, 266, 350), (2, 3, 364, 490), (4, 3, 518, 700))
    # The node's key for a batch-1 model is unchanged by the batch logic (cached engines stay valid).
    batch1 = read_signature(save_oracle(tmp_path, np.ones((6, 8), np.float32), make_contract("metric_depth", 6, 8),
                                        None, name="b1.onnx"))
    shape = (1, 3, 364, 490)
    assert engine_profile(batch1, BuildSettings(max_batch=4), shape) == (shape, shape, shape)
    with pytest.raises(ModelLoadError, match="batch must grow"):
        nchw_profile(signature, ((6, 8),) * 3, (2, 1, 3))


def test_a_cached_engine_must_cover_the_whole_batch_range(tmp_path: Path) -> None:
    """What EngineBuilder.ensure asks the cache: a range holding the size at batch 1 and at the max batch."""
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"graph")
    cache = EngineCache(tmp_path / "engines", log=lambda message: None)

    def key(high: int) -> EngineKey:
        low, opt = (1, 3, 364, 490), (high, 3, 364, 490)
        return EngineKey("NVIDIA Orin", "8.7", "10.3.0", "sha", f"min:{'x'.join(map(str, low))};opt:"
                         f"{'x'.join(map(str, opt))};max:{'x'.join(map(str, opt))}", "fp32")

    def builder(source: Path, entry: Path) -> None:
        (entry / "model.engine").write_bytes(b"engine")

    for high in (1, 4, 16):
        cache.get_or_build(onnx_file, key(high), builder, lambda engine: None)
    size = (3, 364, 490)
    assert cache.find_covering(key(4), (1, *size))[0] == key(1)  # one shape: the narrowest holding it
    assert cache.find_covering(key(4), (1, *size), (1, *size), (4, *size))[0] == key(4)
    assert cache.find_covering(key(4), (1, *size), (8, *size))[0] == key(16)
    assert cache.find_covering(key(4), (1, *size), (32, *size)) is None
    stored = json.loads((cache.entry_dir(onnx_file, key(4)) / "meta.json").read_text())["key"]
    assert stored["input_shape"].endswith(";max:4x3x364x490")


# ----------------------------------------------------------------------------- TensorRT on a GPU


@pytest.fixture(scope="module")
def tensorrt_ready() -> None:
    reason = probe()
    if reason is not None:
        pytest.skip(f"TensorRT backend unavailable: {reason}")


@pytest.mark.gpu
def test_tensorrt_engine_with_a_batch_range(tensorrt_ready: None, models: dict[str, Path], tmp_path: Path) -> None:
    """An FP32 engine for batches 1..3 of the dynamic export: a batch of 3 (and of 2) equals single runs and ONNX
    Runtime; a batch of 4 is refused with a reason; infer_batches splits 5 images into 3 + 2."""
    from depth_ros.backends.check import relative_error
    from depth_ros.backends.tensorrt_backend import TensorRTBackend

    options = BackendOptions(engine_cache_dir=str(tmp_path / "engines"), engine_precision="fp32",
                             engine_max_batch=3)
    backend = TensorRTBackend(models["dynamic"], options, log=lambda message: None)
    assert backend.max_batch == 3 and backend.fixed_input_size == NET
    assert [k.input_shape.split(";")[::2] for k in backend.engines] == [
        [f"min:1x3x{NET[0]}x{NET[1]}", f"max:3x3x{NET[0]}x{NET[1]}"]]
    batch = images(3, seed=6)
    one_by_one = singles(backend, batch)
    reference = ort(models["dynamic"]).infer(batch)
    for count in (3, 2):
        out = backend.infer(batch[:count])
        assert out.shape == (count, 1, *NET) and out.dtype == np.float32
        assert relative_error(out, one_by_one[:count]).max() <= TRT_RTOL
        assert relative_error(out, reference[:count]).max() <= TRT_RTOL
    device = backend.infer_device(torch.from_numpy(batch).cuda())
    assert relative_error(device.cpu().numpy(), one_by_one).max() <= TRT_RTOL
    with pytest.raises(ValueError, match="max_batch 3"):
        backend.infer(images(4))
    five = images(5, seed=7)
    in_two = np.concatenate([backend.infer(five[:3]), backend.infer(five[3:])])  # as estimate_batch splits it
    assert relative_error(in_two, singles(ort(models["static"]), five)).max() <= TRT_RTOL
    static = TensorRTBackend(models["static"], options, log=lambda message: None)
    assert static.max_batch == 1  # a fixed batch of 1: engine_max_batch does not apply
