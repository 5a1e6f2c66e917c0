"""depth_node in a real robot's ROS graph (issue 12), through live node processes over Fast DDS.

- QoS per REP-2003 with the shipped defaults: reliable and best-effort drivers both feed the node;
  reliable (RViz2, image_transport, depth_image_proc) and best-effort (Nav2) consumers both hear it;
  an incompatible peer is named in one warning and counted in diagnostics.
- Rectified vs raw input: image_rect with the camera's original CameraInfo (K != P, D != 0) follows P;
  image_raw with D != 0 follows K + D; an all-zero P; true/false (booleans) override the topic name.
- The managed lifecycle over the standard services, from this (another) process, including a failing
  configure that is fixed and configured again.
- Parameter changes never wait for the frame in flight (a deliberately slow model; checked by order
  of events, not by a wall-clock limit).

Expectations come from the geometry of analytic planes and from the ROS conventions, never from
the node's own output.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import rclpy
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from oracles import lens_distort, make_contract
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.subscription import Subscription
from ros_harness import Client, NodeProcess, depth_array, start_node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from test_node_geometry import (
    FRONTO,
    TILTED,
    Layout,
    Pinhole,
    _call,
    assert_cloud_backprojects,
    assert_depth,
    expected_depth,
    get_parameters,
    plane_depth,
    save_model,
    scene_image,
    scene_model,
    set_parameters,
)

from depth_ros.backends.graph_models import set_contract
from depth_ros.ros.codecs import cloud_msg_to_arrays

W, H = 160, 120
NET = (48, 64)  # network input (h, w): stretch
# The camera, at 160 px: image_proc's image_rect is described by P (fx 450 at 640 px), the raw
# camera by K (fx 500) and D. A wall seen through P and converted with K's focal length reads 11 % far.
K_CAM = Pinhole(125.0, 124.0, 80.6, 59.3)
P_CAM = Pinhole(112.5, 112.0, 78.9, 61.1)
LENS = [-0.21, 0.048, 0.0011, -0.0009, -0.004]  # plumb_bob


def qos_profile(reliable: bool, durability: DurabilityPolicy = DurabilityPolicy.VOLATILE) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, durability=durability,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)


def original_info(p_zero: bool = False) -> CameraInfo:
    """The raw camera's CameraInfo as a driver publishes it, and as image_proc passes it on with image_rect."""
    info = K_CAM.info(W, H, d=LENS)
    info.p = [0.0] * 12 if p_zero else P_CAM.p()
    return info


@dataclass
class Started:
    process: NodeProcess
    client: Client
    extra: list[Any] = field(default_factory=list)


@pytest.fixture
def graph_node(ros_context: Node) -> Iterator[Callable[..., Started]]:
    """Start depth_node with parameters/remaps; the client publishes its image on ``image_name``."""
    started: list[Started] = []

    def start(params: dict[str, Any], image_name: str = "image", reliable: bool = True,
              remaps: dict[str, str] | None = None, wait: bool = True) -> Started:
        remaps = dict(remaps or {})
        if image_name != "image":
            remaps["image"] = image_name
        process = start_node(params, remaps=remaps)
        client = Client(ros_context, process.namespace, reliable=reliable)
        if image_name != "image":  # the client's image publisher follows the remap
            client.node.destroy_publisher(client.pub_image)
            client.pub_image = client.node.create_publisher(Image, f"{process.namespace}/{image_name}",
                                                            qos_profile(reliable))
        entry = Started(process, client)
        started.append(entry)
        if wait:
            client.wait_ready(process)
        return entry

    yield start
    for entry in started:
        for thing in entry.extra:
            if isinstance(thing, Subscription):
                ros_context.destroy_subscription(thing)
            else:
                ros_context.destroy_publisher(thing)
        entry.client.close()
        code = entry.process.stop()
        assert code == 0, f"depth_node exited with {code}:\n{entry.process.output()}"


def oracle(tmp_path: Path, maps: list[np.ndarray], name: str = "scenes.onnx") -> Path:
    return save_model(scene_model(maps, make_contract("canonical_inverse_depth", *NET), NET), tmp_path, name)


def canonical(cam: Pinhole, plane: Any) -> np.ndarray:
    """Canonical inverse depth (fx/W)/Z of a plane at the network input's pixels, seen by ``cam``."""
    u, v = Layout.stretch(W, H, NET[1], NET[0]).net_positions()
    return (cam.fx / W) / plane_depth(cam, plane, u, v)


def spin_until(node: Node, done: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return
        rclpy.spin_once(node, timeout_sec=0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def spin_for(node: Node, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.02)


def diagnostics(client: Client) -> dict[str, str]:
    return client.latest_diagnostics(timeout=10.0)


# --------------------------------------------------------------------------------------------- QoS


def test_shipped_qos_matches_reliable_and_best_effort_drivers_and_consumers(
        graph_node: Callable[..., Started], tmp_path: Path) -> None:
    """REP-2003 with config/depth.yaml as shipped: best-effort inputs, reliable keep-last-1 outputs.

    A reliable driver and a best-effort driver both reach the node; an RViz-like reliable subscriber and
    a Nav2-like best-effort subscriber both receive every output (exact depth of a 2.5 m wall)."""
    path = oracle(tmp_path, [canonical(K_CAM, FRONTO)])
    node = graph_node({"model": str(path)}, reliable=False)  # no QoS override: the shipped defaults
    client, ns = node.client, node.process.namespace
    ros = client.node

    # What the node advertises, read from the ROS graph (the convention, not the node's own report).
    for topic in ("depth", "depth/camera_info", "points", "depth/colored", "depth/confidence"):
        [info] = ros.get_publishers_info_by_topic(f"{ns}/{topic}")
        assert info.qos_profile.reliability == ReliabilityPolicy.RELIABLE, topic
        assert info.qos_profile.durability == DurabilityPolicy.VOLATILE, topic
    for topic in ("image", "camera_info"):
        [info] = ros.get_subscriptions_info_by_topic(f"{ns}/{topic}")
        assert info.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT, topic

    received: dict[str, set[int]] = {}

    def store(key: str) -> Callable[[Any], None]:
        def callback(msg: Any) -> None:
            received.setdefault(key, set()).add(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
            if key.endswith("depth"):
                np.testing.assert_allclose(depth_array(msg), 2.5, rtol=1e-5)
            if key.endswith("confidence"):  # a flat wall: no local range, no other cue -> 1
                assert msg.encoding == "32FC1"
                np.testing.assert_allclose(depth_array(msg), 1.0, atol=1e-3)
        return callback

    consumers = {
        "rviz_depth": ros.create_subscription(Image, f"{ns}/depth", store("rviz_depth"), qos_profile(True)),
        "rviz_points": ros.create_subscription(PointCloud2, f"{ns}/points", store("rviz_points"), qos_profile(True)),
        "nav2_depth": ros.create_subscription(Image, f"{ns}/depth", store("nav2_depth"), qos_profile(False)),
        "nav2_points": ros.create_subscription(PointCloud2, f"{ns}/points", store("nav2_points"), qos_profile(False)),
        "rviz_confidence": ros.create_subscription(Image, f"{ns}/depth/confidence", store("rviz_confidence"),
                                                   qos_profile(True)),
        "nav2_confidence": ros.create_subscription(Image, f"{ns}/depth/confidence", store("nav2_confidence"),
                                                   qos_profile(False)),
    }
    drivers = {reliable: (ros.create_publisher(Image, f"{ns}/image", qos_profile(reliable)),
                          ros.create_publisher(CameraInfo, f"{ns}/camera_info", qos_profile(reliable)))
               for reliable in (True, False)}
    node.extra += [*consumers.values(), *(p for pair in drivers.values() for p in pair)]
    spin_until(ros, lambda: all(pub.get_subscription_count() > 0 for pair in drivers.values() for pub in pair)
               and ros.count_subscribers(f"{ns}/depth") >= 3, 20.0, "the drivers and consumers to match")

    for stamp, reliable in ((1_700_000_100_000_000_000, True), (1_700_000_200_000_000_000, False)):
        image_pub, info_pub = drivers[reliable]
        image, info = scene_image(W, H), K_CAM.info(W, H)
        image.header.stamp.sec, image.header.stamp.nanosec = divmod(stamp, 10**9)
        info.header.stamp = image.header.stamp

        def all_heard(stamp: int = stamp) -> bool:
            return all(stamp in received.get(key, set()) for key in consumers)

        deadline = time.monotonic() + 30.0
        while not all_heard() and time.monotonic() < deadline:  # best-effort hops: repeat the frame
            info_pub.publish(info)
            spin_for(ros, 0.1)  # the CameraInfo first (a driver publishes it with every image)
            image_pub.publish(image)
            end = time.monotonic() + 1.0
            while not all_heard() and time.monotonic() < end:
                rclpy.spin_once(ros, timeout_sec=0.05)
        missing = [key for key in consumers if stamp not in received.get(key, set())]
        assert not missing, f"{'reliable' if reliable else 'best-effort'} driver: {missing} heard nothing"


def test_incompatible_qos_is_named_once_and_counted(graph_node: Callable[..., Started], tmp_path: Path) -> None:
    """A best-effort driver against reliable inputs, and a latched (transient_local) subscriber on the depth
    stream: one warning per topic naming the two policies and the fix, and a diagnostics counter."""
    path = oracle(tmp_path, [canonical(K_CAM, FRONTO)])
    node = graph_node({"model": str(path), "input_qos_reliability": "reliable", "diagnostics_period": 0.2})
    ns, ros = node.process.namespace, node.client.node
    node.extra += [
        ros.create_publisher(Image, f"{ns}/image", qos_profile(False)),
        ros.create_subscription(Image, f"{ns}/depth", lambda msg: None,
                                qos_profile(True, DurabilityPolicy.TRANSIENT_LOCAL)),
    ]
    expected = [
        f"incompatible QoS on {ns}/image: this subscription is reliable, a publisher is best_effort",
        "set input_qos_reliability: best_effort",
        f"incompatible QoS on {ns}/depth: this publisher is volatile, a subscriber is transient_local",
    ]
    spin_until(ros, lambda: all(text in node.process.output() for text in expected), 30.0,
               f"the node's warnings {expected}")
    values = diagnostics(node.client)
    assert int(values["qos_incompatible_events"]) >= 2, values
    assert values["_level"] == "1" and "incompatible QoS" in values["_message"], values
    # Throttled: a peer that keeps failing to match is not a warning per discovery round.
    assert node.process.output().count(f"incompatible QoS on {ns}/depth") == 1


# --------------------------------------------------------------------------------------------- rectified vs raw


def assert_raw_cloud(out: Any, depth: np.ndarray, cam: Pinhole, d: list[float]) -> None:
    """Every point of a raw (distorted) image lies on its own pixel's ray: projecting it through the forward
    lens model (written out in oracles.lens_distort) lands on the pixel."""
    xyz, _ = cloud_msg_to_arrays(out.points)
    xyz = xyz.astype(np.float64)
    np.testing.assert_array_equal(xyz[:, :, 2], depth)
    xd, yd = lens_distort(xyz[:, :, 0] / xyz[:, :, 2], xyz[:, :, 1] / xyz[:, :, 2], "plumb_bob", d)
    gu, gv = np.meshgrid(np.arange(W), np.arange(H))
    error = np.hypot(cam.fx * xd + cam.cx - gu, cam.fy * yd + cam.cy - gv)
    assert error.max() < 1e-3, f"points reproject {error.max():.2e} px from their pixels"


def test_image_rect_with_the_original_camera_info_follows_p(graph_node: Callable[..., Started],
                                                            tmp_path: Path) -> None:
    """image_proc's pairing: image_rect + the camera's original CameraInfo (K != P, D != 0).

    auto -> rectified: depth and cloud follow P (the issue's 2.000 m wall read 2.222 m with K); an all-zero P
    falls back to K without undistortion; input_rectified false (a boolean, set at runtime) overrides the
    topic name: K + D."""
    layout = Layout.stretch(W, H, NET[1], NET[0])
    maps = [canonical(P_CAM, TILTED), canonical(K_CAM, TILTED), canonical(K_CAM, FRONTO)]
    node = graph_node({"model": str(oracle(tmp_path, maps)), "diagnostics_period": 0.2}, image_name="image_rect")
    client = node.client
    assert f"input_rectified auto: {node.process.namespace}/image_rect is an image_rect topic" in node.process.output()
    stamp = 1_700_000_300_000_000_000

    out = client.send(scene_image(W, H, 0, 3), original_info(), stamp)
    depth = depth_array(out.depth)
    assert_depth(depth, expected_depth(lambda u, v: plane_depth(P_CAM, TILTED, u, v), layout, W, H))
    assert_cloud_backprojects(out.points, depth, P_CAM)
    assert diagnostics(client)["input_model"] == "rectified (P)"
    # The wall of the issue: 2.000 m seen through P is 2.000 m, not 2.000 * 500/450.
    centre = plane_depth(P_CAM, TILTED, np.array([P_CAM.cx]), np.array([P_CAM.cy]))[0]
    assert centre == pytest.approx(2.0)

    stamp += 1  # all-zero P (a driver that leaves it empty): K describes the rectified pixels
    out = client.send(scene_image(W, H, 1, 3), original_info(p_zero=True), stamp)
    depth = depth_array(out.depth)
    assert_depth(depth, expected_depth(lambda u, v: plane_depth(K_CAM, TILTED, u, v), layout, W, H))
    assert_cloud_backprojects(out.points, depth, K_CAM)
    assert diagnostics(client)["input_model"] == "rectified (K: P is all zero)"

    [result] = set_parameters(client, input_rectified=False)  # a plain boolean, as `ros2 param set` sends it
    assert result.successful, result.reason
    stamp += 1
    out = client.send(scene_image(W, H, 2, 3), original_info(), stamp)
    depth = depth_array(out.depth)
    np.testing.assert_allclose(depth, 2.5, rtol=1e-5)
    assert_raw_cloud(out, depth, K_CAM, LENS)
    assert diagnostics(client)["input_model"] == "raw (K + D)"


def test_image_raw_is_undistorted_and_true_overrides_the_topic(graph_node: Callable[..., Started],
                                                               tmp_path: Path) -> None:
    """`-p input_rectified:=true` (ROS types it a bool) on image_raw: P; then 'auto': image_raw with D != 0 is
    raw, its points lie on the undistorted rays of K."""
    layout = Layout.stretch(W, H, NET[1], NET[0])
    maps = [canonical(P_CAM, TILTED), canonical(K_CAM, FRONTO)]
    node = graph_node({"model": str(oracle(tmp_path, maps)), "input_rectified": True, "diagnostics_period": 0.2},
                      image_name="image_raw")
    client = node.client
    assert get_parameters(client, "input_rectified") == {"input_rectified": True}
    stamp = 1_700_000_400_000_000_000
    out = client.send(scene_image(W, H, 0, 2), original_info(), stamp)
    depth = depth_array(out.depth)
    assert_depth(depth, expected_depth(lambda u, v: plane_depth(P_CAM, TILTED, u, v), layout, W, H))
    assert_cloud_backprojects(out.points, depth, P_CAM)

    [result] = set_parameters(client, input_rectified="auto")
    assert result.successful, result.reason
    stamp += 1
    out = client.send(scene_image(W, H, 1, 2), original_info(), stamp)
    depth = depth_array(out.depth)
    np.testing.assert_allclose(depth, 2.5, rtol=1e-5)
    assert_raw_cloud(out, depth, K_CAM, LENS)
    # The camera_info that goes with the depth keeps the raw camera's K and D (depth_image_proc rectifies it).
    np.testing.assert_allclose(np.asarray(out.camera_info.k), K_CAM.k(), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(out.camera_info.d), LENS, rtol=0, atol=0)
    assert diagnostics(client)["input_model"] == "raw (K + D)"


def test_true_and_false_parse_from_yaml_and_the_command_line(tmp_path: Path) -> None:
    """The README's `-p input_rectified:=true` and a YAML `input_rectified: false` start the node; so do the
    strings. ROS types them; the node takes either."""
    from ros_harness import run_node_to_exit

    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    input_rectified: false\n    cloud_color: 'true'\n"
                      "    model: /nonexistent/model.onnx\n")
    # A missing model stops the node after the parameters were accepted: the error must be about the model.
    result = run_node_to_exit(params_file=params)
    assert result.returncode == 2, result.stderr
    assert "model file /nonexistent/model.onnx does not exist" in result.stderr, result.stderr
    assert "input_rectified false" in result.stdout + result.stderr
    result = run_node_to_exit({"input_rectified": True, "model": "/nonexistent/model.onnx"})
    assert result.returncode == 2 and "does not exist" in result.stderr, result.stderr
    assert "input_rectified true" in result.stdout + result.stderr
    # Every boolean-looking parameter at once as `-p name:=true` (ROS types it bool): all accepted, the model decides.
    from depth_ros.ros.parameters import PARAMETERS, accepts_bool

    booleans = {spec.name: True for spec in PARAMETERS if accepts_bool(spec)}
    assert {"autostart", "input_rectified", "cloud_color", "focal_rescale", "navigation_outputs"} <= set(booleans)
    result = run_node_to_exit({**booleans, "model": "/nonexistent/model.onnx"})
    assert result.returncode == 2 and "model file /nonexistent/model.onnx does not exist" in result.stderr, \
        result.stderr
    result = run_node_to_exit({"input_rectified": "maybe"})
    assert result.returncode == 2 and "input_rectified" in result.stderr and "maybe" in result.stderr
    result = run_node_to_exit({"qos_reliability": "reliable"})
    assert result.returncode == 2, result.stderr
    assert "input_qos_reliability" in result.stderr and "output_qos_reliability" in result.stderr


# --------------------------------------------------------------------------------------------- lifecycle


def lifecycle(client: Client, transition: int) -> bool:
    request = ChangeState.Request(transition=Transition(id=transition))
    return bool(_call(client.node, ChangeState, f"{client.namespace}/depth_node/change_state", request,
                      timeout=60.0).success)


def lifecycle_state(client: Client) -> int:
    response = _call(client.node, GetState, f"{client.namespace}/depth_node/get_state", GetState.Request(),
                     idempotent=True)
    return int(response.current_state.id)


def test_lifecycle_transitions_over_the_standard_services(graph_node: Callable[..., Started],
                                                           tmp_path: Path) -> None:
    """autostart false: nothing loaded, subscribed or published until a manager drives change_state.

    configure with a bad model fails with the reason and stays unconfigured; after the fix it configures;
    activate starts the work; deactivate stops it; cleanup frees the backend; shutdown exits cleanly."""
    good = oracle(tmp_path, [canonical(K_CAM, FRONTO)])
    missing = tmp_path / "not_there.onnx"
    node = graph_node({"model": str(missing), "autostart": False}, wait=False)
    client, ns, ros = node.client, node.process.namespace, node.client.node

    assert lifecycle_state(client) == State.PRIMARY_STATE_UNCONFIGURED
    assert ros.count_publishers(f"{ns}/depth") == 0 and ros.count_subscribers(f"{ns}/image") == 0

    assert not lifecycle(client, Transition.TRANSITION_CONFIGURE)
    assert lifecycle_state(client) == State.PRIMARY_STATE_UNCONFIGURED
    assert f"configure failed: model file {missing} does not exist" in node.process.output()
    [fixed] = set_parameters(client, model=str(good))  # configure-time parameters change while unconfigured
    assert fixed.successful, fixed.reason

    assert lifecycle(client, Transition.TRANSITION_CONFIGURE)
    assert lifecycle_state(client) == State.PRIMARY_STATE_INACTIVE
    spin_until(ros, lambda: ros.count_publishers(f"{ns}/depth") == 1, 20.0, "the inactive node's publishers")
    assert ros.count_subscribers(f"{ns}/image") == 0  # inactive: no input yet
    [refused] = set_parameters(client, model=str(missing))
    assert not refused.successful and "cleanup" in refused.reason

    def active_round(stamp: int) -> None:
        assert lifecycle(client, Transition.TRANSITION_ACTIVATE)
        assert lifecycle_state(client) == State.PRIMARY_STATE_ACTIVE
        client.wait_ready(node.process)
        out = client.send(scene_image(W, H), K_CAM.info(W, H), stamp)
        np.testing.assert_allclose(depth_array(out.depth), 2.5, rtol=1e-5)

    active_round(1_700_000_500_000_000_000)
    assert lifecycle(client, Transition.TRANSITION_DEACTIVATE)
    assert lifecycle_state(client) == State.PRIMARY_STATE_INACTIVE
    spin_until(ros, lambda: client.pub_image.get_subscription_count() == 0, 20.0, "the image subscription to go")
    assert ros.count_publishers(f"{ns}/depth") == 1  # still configured: publishers stay, silent

    assert lifecycle(client, Transition.TRANSITION_CLEANUP)
    assert lifecycle_state(client) == State.PRIMARY_STATE_UNCONFIGURED
    spin_until(ros, lambda: ros.count_publishers(f"{ns}/depth") == 0, 20.0, "the publishers to be released")

    assert lifecycle(client, Transition.TRANSITION_CONFIGURE)  # and the whole way up again
    active_round(1_700_000_600_000_000_000)

    assert lifecycle(client, Transition.TRANSITION_ACTIVE_SHUTDOWN)
    assert node.process.process.wait(timeout=30) == 0, node.process.output()


def test_autostart_configure_failure_exits_with_the_reason(tmp_path: Path) -> None:
    from ros_harness import run_node_to_exit

    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx file")
    result = run_node_to_exit({"model": str(bad)})
    assert result.returncode == 2
    assert "configuration error" in result.stderr and str(bad) in result.stderr, result.stderr


# --------------------------------------------------------------------------------------------- parameters


def slow_oracle(tmp_path: Path, output: np.ndarray, matmuls: int = 60, side: int = 1536) -> Path:
    """An oracle (output = ``output`` exactly) that first does seconds of real work: a chain of MatMuls of the
    image's mean by an averaging matrix (value-preserving, input-dependent so nothing is folded away)."""
    from onnx import TensorProto, helper, numpy_helper

    shape = [1, 1, *output.shape]
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, *NET])
    y = helper.make_tensor_value_info("depth", TensorProto.FLOAT, shape)
    inits = [numpy_helper.from_array(np.asarray(output, np.float32).reshape(shape), "map"),
             numpy_helper.from_array(np.zeros((), np.float32), "zero"),
             numpy_helper.from_array(np.array([side, side], np.int64), "square"),
             numpy_helper.from_array(np.full((side, side), 1.0 / side, np.float32), "average")]
    nodes = [helper.make_node("ReduceMean", ["image"], ["mean"], keepdims=0),
             helper.make_node("Expand", ["mean", "square"], ["busy0"])]
    nodes += [helper.make_node("MatMul", [f"busy{i}", "average"], [f"busy{i + 1}"]) for i in range(matmuls)]
    nodes += [helper.make_node("ReduceMean", [f"busy{matmuls}"], ["busy"], keepdims=0),
              helper.make_node("Mul", ["busy", "zero"], ["nothing"]),
              helper.make_node("Add", ["map", "nothing"], ["depth"])]
    model = helper.make_model(helper.make_graph(nodes, "slow_map", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    set_contract(model, make_contract("canonical_inverse_depth", *NET))
    return save_model(model, tmp_path, "slow.onnx")


def test_parameter_set_does_not_wait_for_the_frame_in_flight(graph_node: Callable[..., Started],
                                                             tmp_path: Path) -> None:
    """While a slow frame is in flight, `set_parameters` answers before that frame's output appears; the frame
    keeps the values it started with (32FC1) and the next frame uses the new ones (16UC1 millimetres)."""
    path = slow_oracle(tmp_path, canonical(K_CAM, FRONTO))
    node = graph_node({"model": str(path), "num_threads": 1, "diagnostics_period": 0.1})
    client, ros = node.client, node.client.node
    first, second = 1_700_000_700_000_000_000, 1_700_000_700_000_000_001
    client.publish(scene_image(W, H), K_CAM.info(W, H), first)
    # The executor answers diagnostics while the worker computes: the node says the frame is in flight.
    spin_until(ros, lambda: diagnostics(client).get("frame_in_flight") == "true", 60.0, "the frame in flight")
    [result] = set_parameters(client, depth_encoding="16UC1")
    assert result.successful, result.reason
    assert first not in client.outputs or client.outputs[first].depth is None, \
        "the parameter set returned only after the frame in flight had published"
    out = client.send(scene_image(W, H), K_CAM.info(W, H), second, wanted=("depth",), timeout=120.0)
    old = client.outputs[first].depth
    assert old is not None and old.encoding == "32FC1"
    np.testing.assert_allclose(depth_array(old), 2.5, rtol=1e-5)
    assert out.depth.encoding == "16UC1"
    assert np.all(depth_array(out.depth) == 2500)
