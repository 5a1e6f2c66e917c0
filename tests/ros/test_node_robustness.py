"""End to end: bad input never crashes depth_node and is counted; bad configuration stops it with
exit code 2 and a fix; a slow model drops superseded frames (the newest wins), never silently.

Real depth_node processes over Fast DDS with oracle ONNX models (real ONNX Runtime).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from oracles import make_contract
from ros_harness import PARAMS_FILE, REPO, Client, NodeProcess, depth_array, node_args, node_env, run_node_to_exit
from sensor_msgs.msg import CameraInfo, Image
from test_node_geometry import FRAME, RTOL, TILTED, Layout, Pinhole, assert_headers, plane_depth

from depth_ros.backends.graph_models import map_model, set_contract
from depth_ros.core.contract import ModelContract

CAM, W, H = Pinhole(60.0, 58.0, 31.7, 24.4), 64, 48  # network input = image size: exact output


def tilted_map() -> np.ndarray:
    """canonical inverse depth of the tilted plane at the image's own pixels."""
    u, v = Layout.stretch(W, H, W, H).net_positions()
    return ((CAM.fx / W) / plane_depth(CAM, TILTED, u, v)).astype(np.float32)


def exact_tilted() -> np.ndarray:
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    return plane_depth(CAM, TILTED, u, v)


def _finish(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], output_shape: list[Any],
            contract: ModelContract, name: str) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, H, W])
    y = helper.make_tensor_value_info("depth", TensorProto.FLOAT, output_shape)
    graph = helper.make_graph(nodes, name, [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="depth_ros_tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    set_contract(model, contract)
    return model


def fails_on_white_model() -> onnx.ModelProto:
    """Outputs the tilted map as [1,1,h,w]; for an all-white image as [1,2,h,w] (not a depth map)."""
    inits = [
        numpy_helper.from_array(tilted_map().reshape(1, 1, H, W), "map"),
        numpy_helper.from_array(np.array(0.99, np.float32), "white"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([1], np.int64), "flat"),
    ]
    nodes = [
        helper.make_node("ReduceMin", ["image"], ["darkest"], keepdims=0),
        helper.make_node("Greater", ["darkest", "white"], ["is_white"]),
        helper.make_node("Cast", ["is_white"], ["extra"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["extra", "flat"], ["extra_1d"]),
        helper.make_node("Add", ["extra_1d", "one"], ["channels"]),
        helper.make_node("Concat", ["one", "channels", "one", "one"], ["shape"], axis=0),
        helper.make_node("Expand", ["map", "shape"], ["depth"]),
    ]
    return _finish(nodes, inits, [1, "c", H, W], make_contract("canonical_inverse_depth", H, W), "fails_on_white")


def slow_model(size: int = 768, matmuls: int = 8) -> onnx.ModelProto:
    """The tilted map after a chain of size x size MatMuls (~0.1 s on one CPU thread) that depends on
    the input, so ONNX Runtime cannot fold it away."""
    inits = [
        numpy_helper.from_array(tilted_map().reshape(1, 1, H, W), "map"),
        numpy_helper.from_array(np.full((size, size), 1.0 / size, np.float32), "weights"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["weights", "nothing"], ["a0"]),
    ]
    nodes += [helper.make_node("MatMul", [f"a{i}", "weights"], [f"a{i + 1}"]) for i in range(matmuls)]
    nodes += [
        helper.make_node("ReduceMean", [f"a{matmuls}"], ["busy"], keepdims=0),
        helper.make_node("Mul", ["busy", "zero"], ["still_nothing"]),
        helper.make_node("Add", ["map", "still_nothing"], ["depth"]),
    ]
    return _finish(nodes, inits, [1, 1, H, W], make_contract("canonical_inverse_depth", H, W), "slow")


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def textured() -> np.ndarray:
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    return np.stack([(5 * u + 3 * v) % 256, (2 * u + 7 * v + 50) % 256, (255 - 4 * u - v) % 256],
                    axis=-1).astype(np.uint8)


def rgb8(rgb: np.ndarray) -> Image:
    h, w = rgb.shape[:2]
    msg = Image(height=h, width=w, encoding="rgb8", step=3 * w, is_bigendian=0)
    msg.header.frame_id = FRAME
    msg.data = np.ascontiguousarray(rgb).tobytes()
    return msg


def counters(diag: dict[str, str]) -> dict[str, int]:
    return {k: int(v) for k, v in diag.items() if k.startswith(("frames_", "dropped_", "skipped_"))}


def wait_diagnostics(client: Client, predicate: Callable[[dict[str, str]], bool], process: NodeProcess,
                     timeout: float = 10.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    diag: dict[str, str] = {}
    while time.monotonic() < deadline:
        diag = client.latest_diagnostics()
        if predicate(diag):
            return diag
    raise AssertionError(f"diagnostics never matched; last: {diag}\n{process.output()}")


# --------------------------------------------------------------------------------------------
# Bad input


def bad_image(encoding: str = "rgb8", width: int = W, height: int = H, step: int | None = None,
              data: bytes | None = None) -> Image:
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=0)
    msg.step = 3 * width if step is None else step
    msg.header.frame_id = FRAME
    msg.data = bytes(msg.step * height) if data is None else data
    return msg


def test_bad_input_is_counted_and_the_node_keeps_running(depth_node: Any, tmp_path: Path) -> None:
    process, client = depth_node({"model": str(save(fails_on_white_model(), tmp_path / "m.onnx")),
                                  "diagnostics_period": 0.2})
    truth = exact_tilted()
    good = rgb8(textured())
    nan_k = CAM.info(W, H)
    nan_k.k = [CAM.fx, 0.0, float("nan"), 0.0, CAM.fy, CAM.cy, 0.0, 0.0, 1.0]
    zero_kp = CAM.info(W, H)
    zero_kp.k, zero_kp.p = [0.0] * 9, [0.0] * 12
    # (what, image, CameraInfo sent with it, skipped_<reason>, text the problem report must contain)
    cases: list[tuple[str, Image, CameraInfo | None, str, str]] = [
        ("no CameraInfo yet", rgb8(textured()), None, "no_camera_info", "no valid CameraInfo"),
        ("data shorter than step * height", bad_image(data=bytes(3 * W * H - 1)), CAM.info(W, H), "bad_image",
         "too short"),
        ("step smaller than a row", bad_image(step=3 * W - 3), CAM.info(W, H), "bad_image", "step=189"),
        ("unknown encoding", bad_image(encoding="bayer_weird42"), CAM.info(W, H), "bad_image", "bayer_weird42"),
        ("zero width", bad_image(width=0, step=0, data=b""), CAM.info(W, H), "bad_image", "width=0"),
        ("absurd width", bad_image(width=100_000, height=1), CAM.info(W, H), "bad_image", "width=100000"),
        ("NaN in K", rgb8(textured()), nan_k, "bad_camera_info", "non-finite"),
        ("all-zero K and P", rgb8(textured()), zero_kp, "bad_camera_info", "all-zero"),
        ("image size != CameraInfo size", rgb8(np.zeros((2 * H, 2 * W, 3), np.uint8)), CAM.info(W, H),
         "camera_info_size_mismatch", "128x96"),
        ("model output is not a depth map", rgb8(np.full((H, W, 3), 255, np.uint8)), CAM.info(W, H),
         "processing_error", "(1, 2, 48, 64)"),
    ]
    stamp = 1_700_001_000_000_000_000
    before = counters(client.latest_diagnostics())
    for what, image, info, reason, text in cases:
        stamp += 1
        key = f"skipped_{reason}"
        client.publish(image, info, stamp)
        wanted = before.get(key, 0) + 1
        diag = wait_diagnostics(client, lambda d, k=key, n=wanted: int(d.get(k, "0")) == n, process)
        assert text in diag["last_problem"], (what, diag["last_problem"])
        assert diag["_level"] == "1" and text in diag["_message"], (what, diag["_level"], diag["_message"])
        now = counters(diag)
        changed = {k: now.get(k, 0) - before.get(k, 0) for k in set(now) | set(before)
                   if now.get(k, 0) != before.get(k, 0)}
        assert changed == {"frames_received": 1, "frames_skipped": 1, key: 1}, (what, changed)
        client.spin(0.2)
        assert stamp not in client.outputs, f"{what}: an output was published"
        assert process.process.poll() is None, f"{what}: the node died\n{process.output()}"

        stamp += 1  # a good frame afterwards is processed correctly
        out = client.send(good, CAM.info(W, H), stamp)
        assert_headers(out, stamp)
        np.testing.assert_allclose(depth_array(out.depth), truth, rtol=RTOL, err_msg=f"after {what}")
        before = counters(wait_diagnostics(
            client, lambda d, n=now["frames_published"]: int(d["frames_published"]) == n + 1, process))

    final = counters(client.latest_diagnostics())
    assert final["frames_received"] == final["frames_published"] + final["frames_skipped"] + final["frames_dropped"]
    log = process.output()
    for message in ("no valid CameraInfo", "rejected image", "too short", "rejected CameraInfo", "non-finite",
                    "describes 64x48", "frame failed"):
        assert message in log, f"{message!r} not in the node's log:\n{log}"


# --------------------------------------------------------------------------------------------
# Bad configuration


def _no_contract(tmp_path: Path) -> dict[str, Any]:
    model = map_model(np.ones((4, 4), np.float32), make_contract("metric_depth", 4, 4), (4, 4))
    del model.metadata_props[:]
    return {"model": str(save(model, tmp_path / "plain.onnx"))}


def _corrupt(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"\x08\x07this is not a protobuf" * 50)
    return {"model": str(path)}


def _bad_contract(tmp_path: Path) -> dict[str, Any]:
    model = map_model(np.ones((4, 4), np.float32), make_contract("metric_depth", 4, 4), (4, 4))
    for prop in model.metadata_props:
        prop.value = prop.value.replace("metric_depth", "depthish")
    return {"model": str(save(model, tmp_path / "bad_contract.onnx"))}


BAD_CONFIGS: dict[str, tuple[Callable[[Path], dict[str, Any]], tuple[str, ...]]] = {
    "missing model file": (lambda p: {"model": str(p / "missing.onnx")}, ("missing.onnx", "does not exist",
                                                                           "'model' parameter")),
    "model without contract": (_no_contract, ("plain.onnx", "no depth_ros contract", "Add one with")),
    "corrupt model file": (_corrupt, ("corrupt.onnx", "could not load", "valid .onnx")),
    "invalid contract": (_bad_contract, ("bad_contract.onnx", "depthish", "output_kind")),
    "colormap nope": (lambda p: {"colormap": "nope"}, ("colormap", "'nope'", "choose one of", "turbo")),
    "cloud_stride 0": (lambda p: {"cloud_stride": 0}, ("cloud_stride", "64")),
    "min_depth >= max_depth": (lambda p: {"min_depth": 5.0, "max_depth": 5.0}, ("min_depth", "max_depth",
                                                                                 "must be below")),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_configuration_exits_with_code_2(case: str, tmp_path: Path) -> None:
    make_params, texts = BAD_CONFIGS[case]
    result = run_node_to_exit(make_params(tmp_path), timeout=60.0)
    output = result.stdout + result.stderr
    assert result.returncode == 2, f"{case}: exit code {result.returncode}\n{output}"
    assert "configuration error" in result.stderr, output
    for text in texts:
        assert text in result.stderr, f"{case}: {text!r} missing from:\n{result.stderr}"
    assert "Traceback" not in output, output


def test_a_bug_during_configure_is_reported_with_its_reason() -> None:
    """An exception that is no configuration error (a bug) still fails configure with its type and message,
    instead of rclpy's bare 'error in a lifecycle transition'. The fault is injected into depth_ros's own
    model loading; ROS, DDS and the runtime are real."""
    script = ("import sys\n"
              "from depth_ros.pipeline import DepthEstimator\n"
              "def broken(*args, **kwargs):\n"
              "    raise ZeroDivisionError('injected fault')\n"
              "DepthEstimator.from_path = broken\n"
              "from depth_ros.ros.node import main\n"
              "sys.exit(main())\n")
    command = [sys.executable, "-c", script, *node_args(None, PARAMS_FILE)]
    result = subprocess.run(command, env=node_env(), capture_output=True, text=True, timeout=60.0, cwd=REPO)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "configuration error: unexpected ZeroDivisionError: injected fault" in result.stderr, result.stderr


# --------------------------------------------------------------------------------------------
# Backpressure


def test_slow_model_newest_frame_wins(depth_node: Any, tmp_path: Path) -> None:
    """30 frames flooded at a ~0.1 s model: superseded frames are dropped and counted, the last one is
    published, and received == published + dropped + skipped."""
    path = save(slow_model(), tmp_path / "slow.onnx")
    process, client = depth_node({"model": str(path), "num_threads": 1, "diagnostics_period": 0.2}, reliable=True)
    truth = exact_tilted()
    image = rgb8(textured())
    warm = 1_700_002_000_000_000_000
    client.send(image, CAM.info(W, H), warm)  # first inference (session warm-up) out of the way

    stamps = [1_700_002_000_000_001_000 + i for i in range(30)]
    start = time.monotonic()
    client.pub_info.publish(CAM.info(W, H))
    for stamp in stamps:
        image.header.stamp.sec, image.header.stamp.nanosec = divmod(stamp, 10**9)
        client.pub_image.publish(image)
        client.spin(0.005)
    flood_s = time.monotonic() - start
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline and not (stamps[-1] in client.outputs
                                               and client.outputs[stamps[-1]].complete(("depth", "points"))):
        client.spin(0.05)
    assert stamps[-1] in client.outputs, f"the newest frame was never published\n{process.output()}"
    published = sorted(s for s in client.outputs if s in stamps)
    for stamp in published:
        if client.outputs[stamp].depth is not None:
            np.testing.assert_allclose(depth_array(client.outputs[stamp].depth), truth, rtol=RTOL)

    diag = counters(wait_diagnostics(
        client, lambda d: int(d["frames_published"]) == 1 + len(published), process))
    received = diag["frames_received"] - 1  # minus the warm-up frame
    assert 0 < received <= len(stamps)
    assert diag["frames_received"] == diag["frames_published"] + diag["frames_dropped"] + diag["frames_skipped"]
    assert diag["frames_dropped"] == diag.get("dropped_superseded", 0), diag
    assert diag["frames_skipped"] == 0, diag
    assert diag.get("dropped_superseded", 0) > 0, (diag, f"flood took {flood_s:.3f} s")
    assert len(published) < len(stamps)
    inference = float(client.latest_diagnostics()["latency_inference_p50_ms"])
    assert inference > 20.0, f"the slow model ran in {inference} ms: the test does not exercise backpressure"
