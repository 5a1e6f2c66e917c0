"""Several cameras in one depth_node (parameter `cameras`), end to end over Fast DDS against exact geometry.

The oracle's output is one fixed map of canonical inverse depth C over the network pixels, affine in the
network pixel coordinates (j, i). Each camera X (its own intrinsics and image size) turns it into metres with
ITS focal length: Z_X = (fx_X / W_X) / C. With a stretch resize, j is affine in X's image u, so 1/Z_X is affine
in (u, v) and bilinear resampling reproduces it exactly: the expected depth is derived here from that formula,
never from the code. A node that used another camera's focal length, intrinsics or size would fail.

The batching oracle scales C per batch item by (1 + the item's blue level), so one forward pass over several
cameras' frames must keep every camera's own output.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from oracles import make_contract, rgb_image
from ros_harness import Client, NodeProcess, depth_array, run_node_to_exit, start_node
from test_node_geometry import (
    FRAME,
    Layout,
    Pinhole,
    assert_camera_info,
    assert_cloud_backprojects,
    assert_depth,
    expected_depth,
    save_model,
)

from depth_ros.backends.graph_models import set_contract

NET_W, NET_H = 128, 96
# C(j, i) = A + B j + C i over the network pixels: a plane tilted to the right and down.
A, B, C = 0.20, 0.0015, 0.0009
CAMERAS = {  # name -> (intrinsics, width, height): three different cameras, one of another size
    "front": (Pinhole(520.0, 500.0, 318.6, 244.2), 640, 480),
    "left": (Pinhole(380.0, 385.0, 300.0, 250.0), 640, 480),
    "rear": (Pinhole(260.0, 262.0, 161.0, 118.5), 320, 240),
}


def canonical_map() -> np.ndarray:
    j, i = np.meshgrid(np.arange(NET_W, dtype=np.float64), np.arange(NET_H, dtype=np.float64))
    return (A + B * j + C * i).astype(np.float32)


def batch_model(scaled: bool) -> onnx.ModelProto:
    """Input [N, 3, 96, 128] (dynamic N) -> [N, 1, 96, 128]: C, times (1 + max blue of the item) when ``scaled``."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, NET_H, NET_W])
    y = helper.make_tensor_value_info("depth", TensorProto.FLOAT, ["batch", 1, NET_H, NET_W])
    inits = [numpy_helper.from_array(canonical_map().reshape(1, 1, NET_H, NET_W), "canonical"),
             numpy_helper.from_array(np.array([2], np.int64), "c_start"),
             numpy_helper.from_array(np.array([3], np.int64), "c_end"),
             numpy_helper.from_array(np.array([1], np.int64), "c_axis"),
             numpy_helper.from_array(np.array(1.0 if scaled else 0.0, np.float32), "weight"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one")]
    nodes = [helper.make_node("Slice", ["image", "c_start", "c_end", "c_axis"], ["blue"]),
             helper.make_node("ReduceMax", ["blue"], ["blue_max"], axes=[1, 2, 3], keepdims=1),  # [N, 1, 1, 1]
             helper.make_node("Mul", ["blue_max", "weight"], ["weighted"]),
             helper.make_node("Add", ["weighted", "one"], ["factor"]),
             helper.make_node("Mul", ["canonical", "factor"], ["depth"])]
    graph = helper.make_graph(nodes, "per_item_scale", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="depth_ros_tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    set_contract(model, make_contract("canonical_inverse_depth", NET_H, NET_W, "stretch"))
    return model


def static_model() -> onnx.ModelProto:
    """The same map from a batch-1 model: the node runs the cameras one by one."""
    model = batch_model(scaled=False)
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].ClearField("dim_param")
        value.type.tensor_type.shape.dim[0].dim_value = 1
    onnx.checker.check_model(model)
    return model


def camera_image(width: int, height: int, blue: int) -> Any:
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[:, :, 0] = (7 * u + 3 * v) % 256
    rgb[:, :, 1] = (2 * u + 5 * v + 40) % 256
    rgb[:, :, 2] = blue
    return rgb_image(rgb, frame_id=FRAME)


def expected_for(name: str, factor: float = 1.0) -> Any:
    """Exact depth of camera ``name``'s output (its own focal length and size), from the formula above."""
    cam, w, h = CAMERAS[name]
    layout = Layout.stretch(w, h, NET_W, NET_H)

    def z_of(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        j = (u + 0.5) * NET_W / w - 0.5  # the network pixel a stretch resize puts image position u at
        i = (v + 0.5) * NET_H / h - 0.5
        return (cam.fx / w) / ((A + B * j + C * i) * factor)

    return expected_depth(z_of, layout, w, h)


@pytest.fixture
def multi_camera_node(ros_context: Any) -> Iterator[Any]:
    started: list[tuple[NodeProcess, list[Client]]] = []

    def start(model: Path, cameras: list[str], params: dict[str, Any] | None = None) -> tuple[NodeProcess,
                                                                                                dict[str, Client]]:
        all_params = {"model": str(model), "backend": "onnxruntime", "input_qos_reliability": "reliable",
                      "cameras": cameras, **(params or {})}
        process = start_node(all_params)
        clients = {name: Client(ros_context, process.namespace, reliable=True, camera=name) for name in cameras}
        started.append((process, list(clients.values())))
        for client in clients.values():
            client.wait_ready(process)
        return process, clients

    yield start
    for process, clients in started:
        for client in clients:
            client.close()
        code = process.stop()
        assert code == 0, f"depth_node exited with {code}:\n{process.output()}"


def test_three_cameras_exact_geometry_with_their_own_intrinsics(multi_camera_node: Any, tmp_path: Path) -> None:
    """front, left and rear (another size) through one node and one model: each camera's depth, CameraInfo and
    cloud follow its own intrinsics; a per-camera override (rear.cloud_stride) applies to that camera only; every
    camera has its own diagnostics status and counters."""
    model = save_model(static_model(), tmp_path, "static.onnx")
    _, clients = multi_camera_node(model, list(CAMERAS), {"edge_filter": False, "rear.cloud_stride": 2})
    for round_index in range(2):
        for index, (name, (cam, w, h)) in enumerate(CAMERAS.items()):
            stamp = 1_700_000_000_000_000_000 + 10 * round_index + index
            out = clients[name].send(camera_image(w, h, 0), cam.info(w, h), stamp)
            depth = depth_array(out.depth)
            assert_depth(depth, expected_for(name))
            assert_camera_info(out.camera_info, w, h, cam)
            stride = 2 if name == "rear" else 1
            assert (out.points.width, out.points.height) == (-(-w // stride), -(-h // stride))
            assert_cloud_backprojects(out.points, depth, cam, stride=stride)
            assert out.depth.header.frame_id == FRAME
    for name, client in clients.items():
        diagnostics = client.latest_diagnostics()
        assert diagnostics["camera"] == name
        assert diagnostics["image_topic"].endswith(f"/{name}/image")
        assert diagnostics["frames_published"] == "2" and diagnostics["frames_received"] == "2"
        assert diagnostics["max_batch"] == "1" and diagnostics["frames_batched"] == "0"


def test_one_forward_pass_keeps_every_cameras_output(multi_camera_node: Any, tmp_path: Path) -> None:
    """A dynamic-batch model: frames of two cameras waiting together run in one pass (frames_batched counts
    them) and each camera still gets its own item's output, scaled by its own blue level."""
    model = save_model(batch_model(scaled=True), tmp_path, "batch.onnx")
    names = ["front", "left"]
    # A wide batching window: the round that has front's frame waits for left's (the default 5 ms is for
    # cameras triggered together; a test's two publishes are further apart on a loaded machine).
    process, clients = multi_camera_node(model, names, {"edge_filter": False, "batch_window": 0.5})
    levels = {"front": 51, "left": 204}  # factors 1.2 and 1.8 (blue / 255 with identity normalisation)
    stamp = 1_700_000_000_000_000_500
    batched = 0
    for attempt in range(20):  # publish both; whether they meet in one round depends on the node's worker
        for name in names:
            cam, w, h = CAMERAS[name]
            clients[name].publish(camera_image(w, h, levels[name]), cam.info(w, h), stamp + attempt)
        for name in names:
            out = _wait(clients[name], stamp + attempt)
            assert_depth(depth_array(out.depth), expected_for(name, 1.0 + levels[name] / 255.0), rtol=1e-5)
        batched = int(clients["front"].latest_diagnostics()["frames_batched"])
        if batched > 0:
            break
    assert batched > 0, "two cameras' frames never ran in one forward pass:\n" + process.output()[-3000:]
    assert clients["left"].latest_diagnostics()["max_batch"] == "64"


def _wait(client: Client, stamp: int, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = client.outputs.get(stamp)
        if got is not None and got.complete(("depth", "camera_info")):
            return got
        client.spin(0.02)
    raise AssertionError(f"no output for stamp {stamp} on {client.topics}")


def test_a_flooding_camera_never_starves_another(multi_camera_node: Any, tmp_path: Path) -> None:
    """front floods frames as fast as it can; every frame of rear (sent one at a time) is still published, and
    front's frames that were replaced before the worker took them are counted as dropped, none lost silently."""
    model = save_model(static_model(), tmp_path, "static.onnx")
    process, clients = multi_camera_node(model, ["front", "rear"], {"edge_filter": False})
    cam_f, w_f, h_f = CAMERAS["front"]
    cam_r, w_r, h_r = CAMERAS["rear"]
    clients["front"].publish(camera_image(w_f, h_f, 0), cam_f.info(w_f, h_f), 1)
    flood = clients["front"]
    sent_front = 1
    for k in range(8):
        stamp = 2_000_000_000_000_000_000 + k
        clients["rear"].publish(camera_image(w_r, h_r, 0), cam_r.info(w_r, h_r), stamp)
        deadline = time.monotonic() + 20.0
        while clients["rear"].outputs.get(stamp) is None or clients["rear"].outputs[stamp].depth is None:
            assert time.monotonic() < deadline, f"rear frame {k} starved:\n{process.output()[-3000:]}"
            for _ in range(5):
                flood.pub_image.publish(camera_image(w_f, h_f, 0))
                sent_front += 1
            flood.spin(0.005)
        assert_depth(depth_array(clients["rear"].outputs[stamp].depth), expected_for("rear"))
    time.sleep(1.0)
    rear = clients["rear"].latest_diagnostics()
    assert rear["frames_published"] == "8" and rear["frames_dropped"] == "0"
    front = clients["front"].latest_diagnostics()
    received, published = int(front["frames_received"]), int(front["frames_published"])
    dropped, skipped = int(front["frames_dropped"]), int(front["frames_skipped"])
    # A keep-last reliable writer may replace a sample its reader has not acknowledged yet: the node can
    # receive fewer than were written, never more, and accounts for every one it received.
    assert sent_front * 0.5 < received <= sent_front, (received, sent_front)
    assert received == published + dropped + skipped, front  # each one published or counted
    assert dropped == int(front.get("dropped_superseded", 0)) and dropped > 0  # the flood was thinned, visibly
    assert published >= 8


def test_bad_camera_configuration_fails_at_startup_saying_how_to_fix_it() -> None:
    bad_name = run_node_to_exit({"cameras": ["front", "front"]})
    assert bad_name.returncode == 2 and "names a camera twice" in bad_name.stderr, bad_name.stderr
    bad_token = run_node_to_exit({"cameras": ["front-left"]})
    assert bad_token.returncode == 2 and "not a ROS name token" in bad_token.stderr, bad_token.stderr
    bad_override = run_node_to_exit({"cameras": ["front", "rear"], "rear.cloud_stride": 0})
    assert bad_override.returncode == 2, bad_override.stderr
    assert "rear.cloud_stride" in bad_override.stderr and "[1, 64]" in bad_override.stderr, bad_override.stderr
    bad_combination = run_node_to_exit({"cameras": ["front"], "front.min_depth": 80.0})
    assert bad_combination.returncode == 2 and "camera 'front'" in bad_combination.stderr, bad_combination.stderr
