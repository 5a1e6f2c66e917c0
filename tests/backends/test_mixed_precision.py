"""FP32 ONNX -> mixed-precision FP16 ONNX through ModelOpt AutoCast, on the CPU (what a strongly typed FP16
TensorRT build parses, on 10.x and 11.x alike).

The graph is read back with ONNX shape inference (an independent decoder of what computes in which type),
and the converted model runs in ONNX Runtime against the FP32 original.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto

from depth_ros.backends import ModelLoadError
from depth_ros.backends.check import probe_tensors, relative_error
from depth_ros.backends.mixed_precision import FP32_OP_TYPES, convert_to_fp16, modelopt_version
from depth_ros.core.contract import METADATA_KEY, read_contract_from_onnx_metadata

pytestmark = pytest.mark.skipif(modelopt_version() is None,
                                reason="nvidia-modelopt is not installed (make setup installs it, --no-deps)")


@pytest.fixture(scope="module")
def dav2_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Depth Anything V2 (4 ViT-S blocks, metric head) exported by the project at 182x238."""
    import torch

    from depth_ros.cli import main
    from depth_ros.nets.depth_anything_v2 import build

    directory = tmp_path_factory.mktemp("fp16")
    torch.manual_seed(0)
    checkpoint = directory / "metric.pth"
    torch.save(build("vits", head="metric", max_depth=20.0, depth=4).state_dict(), checkpoint)
    path = directory / "dav2.onnx"
    assert main(["export", str(checkpoint), "--depth", "4", "--head", "metric", "--max-depth", "20",
                 "--height", "182", "--width", "238", "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def converted(dav2_onnx: Path) -> Path:
    contract = read_contract_from_onnx_metadata(
        {p.key: p.value for p in onnx.load(str(dav2_onnx), load_external_data=False).metadata_props}, "dav2")
    target = dav2_onnx.with_name("dav2.fp16.onnx")
    convert_to_fp16(dav2_onnx, target, {"image": probe_tensors(contract.input, 182, 238)[0]})
    return target


def _compute_types(path: Path) -> dict[str, list[tuple[str, int]]]:
    """op type -> [(node name, element type of its first input)] after shape inference."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    types = {v.name: v.type.tensor_type.elem_type for v in
             [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    result: dict[str, list[tuple[str, int]]] = {}
    for node in model.graph.node:
        result.setdefault(node.op_type, []).append((node.name, types.get(node.input[0], 0)))
    return result


def test_normalisation_and_softmax_stay_fp32_and_the_rest_goes_fp16(converted: Path, dav2_onnx: Path) -> None:
    original, mixed = _compute_types(dav2_onnx), _compute_types(converted)
    kept = [op for op in FP32_OP_TYPES if op in original]
    assert {"LayerNormalization", "Softmax"} <= set(kept)  # a ViT has both
    for op in kept:
        assert [t for _, t in mixed[op]] == [TensorProto.FLOAT] * len(original[op]), op
    # the matrix work is what FP16 is for
    for op in ("MatMul", "Conv"):
        fp16 = sum(t == TensorProto.FLOAT16 for _, t in mixed.get(op, []))
        assert fp16 >= 0.9 * len(original[op]), (op, fp16, len(original[op]))
    assert "Cast" in mixed


def test_io_stays_fp32_and_the_contract_survives(converted: Path, dav2_onnx: Path) -> None:
    model = onnx.load(str(converted))
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [TensorProto.FLOAT]
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [TensorProto.FLOAT]
    props = {p.key: p.value for p in model.metadata_props}
    source = {p.key: p.value for p in onnx.load(str(dav2_onnx)).metadata_props}
    assert props[METADATA_KEY] == source[METADATA_KEY]
    assert read_contract_from_onnx_metadata(props, str(converted)).output_kind == "metric_depth"
    onnx.checker.check_model(model, full_check=True)


def test_converted_model_agrees_with_fp32(converted: Path, dav2_onnx: Path) -> None:
    """ONNX Runtime on the CPU computes some FP16 nodes in FP32 (it lacks kernels for them), so this bounds the
    rounding of weights and activations to FP16, not FP16 arithmetic (that is the GPU test's job)."""
    contract = read_contract_from_onnx_metadata(
        {p.key: p.value for p in onnx.load(str(dav2_onnx), load_external_data=False).metadata_props}, "dav2")
    fp32 = ort.InferenceSession(str(dav2_onnx), providers=["CPUExecutionProvider"])
    fp16 = ort.InferenceSession(str(converted), providers=["CPUExecutionProvider"])
    for tensor in probe_tensors(contract.input, 182, 238):
        expected = fp32.run(None, {"image": tensor})[0]
        got = fp16.run(None, {"image": tensor})[0]
        assert got.dtype == np.float32 and got.shape == expected.shape
        error = relative_error(got, expected)
        # FP16's unit roundoff is 2^-11 = 4.9e-4; four blocks and a sigmoid head keep the depth within 0.1 %.
        assert np.median(error) < 1e-3 and error.max() < 1e-2, (np.median(error), error.max())
        assert not np.array_equal(got, expected)  # it did run in reduced precision


def test_conversion_is_deterministic(converted: Path, dav2_onnx: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.onnx"
    contract = read_contract_from_onnx_metadata(
        {p.key: p.value for p in onnx.load(str(dav2_onnx), load_external_data=False).metadata_props}, "dav2")
    convert_to_fp16(dav2_onnx, again, {"image": probe_tensors(contract.input, 182, 238)[0]})
    assert again.read_bytes() == converted.read_bytes()  # the same engine key means the same converted model


def test_without_modelopt_the_error_says_how_to_install_it(dav2_onnx: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "modelopt.onnx.autocast", None)  # as if it were not installed
    with pytest.raises(ModelLoadError, match="pip install --no-deps nvidia-modelopt.*engine_precision to 'fp32'"):
        convert_to_fp16(dav2_onnx, tmp_path / "x.onnx")
