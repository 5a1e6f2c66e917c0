"""depth-ros export: a random-weight Depth Anything V2 (reduced depth) -> ONNX with its contract -> node pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from oracles import camera_info  # noqa: E402

from depth_ros.backends.export import size_for_camera  # noqa: E402
from depth_ros.cli import main  # noqa: E402
from depth_ros.core.camera import CameraModel  # noqa: E402
from depth_ros.core.contract import METADATA_KEY  # noqa: E402
from depth_ros.nets.depth_anything_v2 import build  # noqa: E402
from depth_ros.pipeline import DepthEstimator  # noqa: E402


def test_size_for_camera_follows_the_official_rule():
    assert size_for_camera(640, 480) == (518, 686)  # 518 x 690.7 -> multiples of 14
    assert size_for_camera(640, 480, short_side=364) == (364, 490)
    assert size_for_camera(1280, 720, short_side=364) == (364, 644)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The CLI path end to end: a metric checkpoint (.pth, random weights) -> ONNX at 182x238 (3:4 camera)."""
    out = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    model = build("vits", head="metric", max_depth=20.0, depth=4)
    checkpoint = out / "metric.pth"
    torch.save(model.state_dict(), checkpoint)
    onnx_path = out / "dav2.onnx"
    code = main(["export", str(checkpoint), "--depth", "4", "--head", "metric", "--max-depth", "20",
                 "--camera", "640x480", "--short-side", "182", "--out", str(onnx_path)])
    assert code == 0
    return model, onnx_path


def test_export_contract_and_runtime_difference(exported, capsys):
    import onnx
    import onnxruntime as ort

    model, path = exported
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version >= 17
    assert "LayerNormalization" in {n.op_type for n in proto.graph.node}  # one op, FP32 in TensorRT
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 182, 238]
    contract = json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])
    assert contract["output_kind"] == "metric_depth" and contract["max_depth"] == 20.0
    assert contract["input"]["resize"] == "keep_aspect" and contract["input"]["multiple_of"] == 14
    assert contract["input"]["mean"] == [0.485, 0.456, 0.406] and contract["input"]["std"] == [0.229, 0.224, 0.225]
    x = torch.randn(1, 3, 182, 238, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = model(x).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_dynamic_export_of_dav2_is_refused_with_a_reason(tmp_path, capsys):
    checkpoint = tmp_path / "s.pth"
    torch.save(build("vits", depth=4).state_dict(), checkpoint)
    assert main(["export", str(checkpoint), "--depth", "4", "--dynamic", "--out", str(tmp_path / "d.onnx")]) == 1
    assert "fixed --height/--width" in capsys.readouterr().err


def test_exported_model_runs_in_the_node_pipeline(exported):
    _, path = exported
    estimator = DepthEstimator.from_path(path, backend="onnxruntime")
    assert estimator.backend.fixed_input_size == (182, 238)
    camera = CameraModel.from_camera_info(camera_info(640, 480, 525.0, 525.0, 319.5, 239.5))
    rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    frame = estimator.estimate(rgb, camera)
    assert frame.depth.shape == (480, 640)
    valid = np.isfinite(frame.depth)
    assert valid.mean() > 0.99
    # metric head: sigmoid * 20 lies in (0, 20) metres
    assert (frame.depth[valid] > 0).all() and (frame.depth[valid] < 20.0).all()


def test_verify_compares_backends(exported, capsys):
    model, path = exported
    checkpoint = path.parent / "metric.pth"
    assert main(["verify", str(path), "--runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime  (cpu) reference" in out
    assert "tensorrt" in out  # listed: run where usable, else skipped with its reason
    del model, checkpoint
