"""The TensorRT backend's logic that needs no GPU: versions, the ONNX signature, engine keys for static and
dynamic models (the node and `depth-ros build-engine` agree on them), and the contract checked first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from oracles import make_contract, save_oracle

from depth_ros.backends import ModelLoadError
from depth_ros.backends.engine_cache import model_sha256
from depth_ros.backends.graph_models import set_contract
from depth_ros.backends.tensorrt_backend import (
    BuildTarget,
    engine_key,
    nchw_profile,
    parse_version,
    probe,
    read_signature,
    typing_label,
    version_problem,
)
from depth_ros.core.preprocess import plan_input

TARGET = BuildTarget("NVIDIA Jetson AGX Orin", "8.7", "10.3.0")


def test_supported_versions() -> None:
    assert parse_version("10.3.0.30") == (10, 3) and parse_version("11.4.0.106") == (11, 4)
    assert version_problem("10.3.0") is None and version_problem("10.13.2") is None
    assert version_problem("11.4.0.106") is None
    reason = version_problem("8.6.1")
    assert reason is not None and "TensorRT 8.6.1 is too old" in reason and "10.3" in reason
    assert version_problem("10.2.0") is not None


def test_probe_names_what_is_missing_here() -> None:
    reason = probe()
    try:
        import tensorrt  # noqa: F401
        import torch

        if torch.cuda.is_available():
            pytest.skip("TensorRT and CUDA are here: the probe has nothing to report")
    except ImportError:
        pass
    assert reason is not None and ("tensorrt" in reason or "CUDA" in reason)


def _dynamic_model(path: Path, inputs: int = 1, outputs: int = 2) -> Path:
    """Conv on a dynamic-size image; a second output (a scalar 'fov') like Depth Pro's."""
    xs = [helper.make_tensor_value_info(f"image{i or ''}", TensorProto.FLOAT, [1, 3, "height", "width"])
          for i in range(inputs)]
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1, 3, 1, 1], [1.0, 1.0, 1.0])
    nodes = [helper.make_node("Conv", ["image", "w"], ["depth"]),
             helper.make_node("ReduceMean", ["depth"], ["fov"], keepdims=0)]
    ys = [helper.make_tensor_value_info("depth", TensorProto.FLOAT, [1, 1, "height", "width"]),
          helper.make_tensor_value_info("fov", TensorProto.FLOAT, [])][:outputs]
    model = helper.make_model(helper.make_graph(nodes, "g", xs, ys, [weight]),
                              opset_imports=[helper.make_opsetid("", 17)])
    set_contract(model, make_contract("metric_depth", 364, 490, "keep_aspect"))
    onnx.save(model, str(path))
    return path


def test_signature_of_a_dynamic_model_with_two_outputs(tmp_path: Path) -> None:
    signature = read_signature(_dynamic_model(tmp_path / "m.onnx"))
    assert signature.input_name == "image" and signature.dynamic
    assert signature.input_dims == (1, 3, "height", "width")
    assert signature.output_names == ("depth", "fov")  # the first is the prediction
    static = read_signature(save_oracle(tmp_path, np.ones((6, 8), np.float32), make_contract("metric_depth", 6, 8),
                                        (6, 8)))
    assert not static.dynamic and static.static_shape() == (1, 3, 6, 8)


def test_a_model_with_two_inputs_or_garbage_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="has 2 inputs .*one image input"):
        read_signature(_dynamic_model(tmp_path / "two.onnx", inputs=2))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not onnx")
    with pytest.raises(ModelLoadError, match="not a readable ONNX file"):
        read_signature(junk)


def test_node_and_build_engine_agree_on_the_key_of_a_dynamic_model(tmp_path: Path) -> None:
    """The node keys the engine for the camera's network input S as the profile (S, S, S); `build-engine
    --camera WxH` plans S with the same rule, and `--min S --opt S --max S` gives the same key."""
    path = _dynamic_model(tmp_path / "m.onnx")
    signature = read_signature(path)
    contract = make_contract("metric_depth", 364, 490, "keep_aspect")
    geometry = plan_input(480, 640, contract.input, None)  # what the estimator plans for a 640x480 camera
    shape = (1, 3, geometry.net_height, geometry.net_width)
    node = engine_key(TARGET, model_sha256(path), signature, "fp32", (shape, shape, shape))
    size = (geometry.net_height, geometry.net_width)
    cli = engine_key(TARGET, model_sha256(path), signature, "fp32", nchw_profile(signature, (size, size, size)))
    assert node == cli and node.covers(shape)
    assert node.input_shape == f"min:1x3x{size[0]}x{size[1]};opt:1x3x{size[0]}x{size[1]};max:1x3x{size[0]}x{size[1]}"
    wide = engine_key(TARGET, model_sha256(path), signature, "fp32",
                      nchw_profile(signature, ((266, 350), size, (518, 700))))
    assert wide.same_build_as(node) and wide.covers(shape) and wide != node
    with pytest.raises(ModelLoadError, match="min <= opt <= max"):
        nchw_profile(signature, ((518, 700), size, (266, 350)))
    with pytest.raises(ModelLoadError, match="dynamic dimensions"):
        engine_key(TARGET, model_sha256(path), signature, "fp32", None)


def test_precision_and_converter_are_in_the_key(tmp_path: Path) -> None:
    path = save_oracle(tmp_path, np.ones((6, 8), np.float32), make_contract("metric_depth", 6, 8), (6, 8))
    signature = read_signature(path)
    fp32 = engine_key(TARGET, model_sha256(path), signature, "fp32", None)
    fp16 = engine_key(TARGET, model_sha256(path), signature, "fp16", None)
    assert fp32.input_shape == "1x3x6x8" and fp32.typing == "strong"
    assert fp16.typing.startswith("strong+modelopt-") and fp16.digest() != fp32.digest()
    assert engine_key(BuildTarget("NVIDIA H200", "9.0", "11.4.0.106"), model_sha256(path), signature, "fp32",
                      None) != fp32
    with pytest.raises(ModelLoadError, match="fp16 or fp32"):
        typing_label("int8")
