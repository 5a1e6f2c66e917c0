"""End to end: depth_node (real rclpy + Fast DDS, another process) against exact analytic scenes.

Each oracle is an ONNX graph run by real ONNX Runtime whose output is the exact network-resolution
map (canonical inverse depth, metres, canonical metres or disparity) of a plane seen by a pinhole
camera, sampled at the image positions the network input pixels correspond to. The expected depth
is computed here from the scene (plane + intrinsics), never from the code under test:

- 1/Z of a plane is affine in (u, v); bilinear resampling with half-pixel centres reproduces an
  affine map exactly wherever the source position lies inside the map. Along the border the
  resampler may clamp (OpenCV does) or extrapolate: the value must then lie between the two.
- Z itself is not affine: the metric kinds use a network input exactly 3x the image, so that every
  output pixel samples one network pixel exactly ((x + 0.5) * 3 - 0.5 = 3x + 1).

`scene_model` lets one node serve several scenes: the graph picks its output map from the blue
level of the image (identity normalisation), so a test changes scene by changing the image.
The helpers here are also used by test_node_inputs.py and test_node_robustness.py.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import rclpy
from onnx import TensorProto, helper, numpy_helper
from oracles import camera_info, make_contract, network_pixel_positions, plane_inverse_depth, rgb_image, save_oracle
from rcl_interfaces.msg import SetParametersResult
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.node import Node
from rclpy.parameter import Parameter
from ros_harness import ALL_OUTPUTS, Client, Outputs, depth_array
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from depth_ros.backends.graph_models import set_contract
from depth_ros.core.contract import ModelContract
from depth_ros.ros.codecs import cloud_msg_to_arrays

RTOL = 1e-5  # float32 arithmetic + float32 bilinear weights stay well inside this
FRAME = "camera_optical_test"
TILTED = ((0.25, -0.35, 1.0), 2.0)  # plane n . X = d: 1/Z = (nx x_n + ny y_n + nz) / d
FRONTO = ((0.0, 0.0, 1.0), 2.5)  # Z = 2.5 m everywhere

FloatArray = np.ndarray


# --------------------------------------------------------------------------------------------
# Scene description (ground truth)


@dataclass(frozen=True)
class Pinhole:
    """Intrinsics of one image (pixels)."""

    fx: float
    fy: float
    cx: float
    cy: float

    def scaled(self, sx: float, sy: float) -> Pinhole:
        """The same camera after resizing the image by (sx, sy), half-pixel centres."""
        return Pinhole(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5)

    def k(self) -> list[float]:
        return [self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0]

    def p(self) -> list[float]:
        return [self.fx, 0.0, self.cx, 0.0, 0.0, self.fy, self.cy, 0.0, 0.0, 0.0, 1.0, 0.0]

    def info(self, width: int, height: int, **kwargs: Any) -> CameraInfo:
        return camera_info(width, height, self.fx, self.fy, self.cx, self.cy, frame_id=FRAME, **kwargs)


Plane = tuple[tuple[float, float, float], float]


def plane_depth(cam: Pinhole, plane: Plane, u: FloatArray, v: FloatArray) -> FloatArray:
    """Exact Z (metres along the optical axis) of the plane at rectified pixel positions (u, v)."""
    normal, distance = plane
    return 1.0 / plane_inverse_depth(u, v, cam.fx, cam.fy, cam.cx, cam.cy, normal, distance)


@dataclass(frozen=True)
class Layout:
    """Where the image sits in the network input (derived here from the contract, independently)."""

    image_w: int
    image_h: int
    net_w: int
    net_h: int
    top: int
    left: int
    content_w: int
    content_h: int

    @staticmethod
    def stretch(image_w: int, image_h: int, net_w: int, net_h: int) -> Layout:
        return Layout(image_w, image_h, net_w, net_h, 0, 0, net_w, net_h)

    @staticmethod
    def keep_aspect(image_w: int, image_h: int, net_w: int, net_h: int) -> Layout:
        s = min(net_h / image_h, net_w / image_w)
        ch, cw = round(image_h * s), round(image_w * s)
        return Layout(image_w, image_h, net_w, net_h, (net_h - ch) // 2, (net_w - cw) // 2, cw, ch)

    def net_positions(self) -> tuple[FloatArray, FloatArray]:
        """Image (u, v) of every network input pixel (the padding extrapolates)."""
        return network_pixel_positions(self.net_h, self.net_w, self.image_h, self.image_w, self.top, self.left,
                                       self.content_h, self.content_w)

    def padding_mask(self) -> np.ndarray:
        mask = np.ones((self.net_h, self.net_w), dtype=bool)
        mask[self.top:self.top + self.content_h, self.left:self.left + self.content_w] = False
        return mask


def _axis_positions(out_n: int, image_n: int, content_n: int) -> tuple[FloatArray, FloatArray, np.ndarray]:
    """(exact image position, position after clamping to the map, inside-the-map mask) per output pixel."""
    x = np.arange(out_n, dtype=np.float64)
    source = (x + 0.5) * content_n / out_n - 0.5  # in network (content) pixels
    clamped = np.clip(source, 0.0, content_n - 1.0)
    exact = (x + 0.5) * image_n / out_n - 0.5
    from_clamped = (clamped + 0.5) * image_n / content_n - 0.5
    inside = (source >= 0.0) & (source <= content_n - 1.0)
    return exact, from_clamped, inside


@dataclass
class Expected:
    """Expected depth of an output image: exact values, values if the border clamps, and the interior."""

    exact: FloatArray
    clamped: FloatArray
    interior: np.ndarray
    u: FloatArray  # exact image positions of the output pixels (for back-projection)
    v: FloatArray


def expected_depth(z_of: Callable[[FloatArray, FloatArray], FloatArray], layout: Layout, out_w: int,
                   out_h: int) -> Expected:
    ux, ux_c, in_x = _axis_positions(out_w, layout.image_w, layout.content_w)
    vy, vy_c, in_y = _axis_positions(out_h, layout.image_h, layout.content_h)
    u, v = np.meshgrid(ux, vy)
    uc, vc = np.meshgrid(ux_c, vy_c)
    return Expected(z_of(u, v), z_of(uc, vc), np.outer(in_y, in_x), u, v)


def assert_depth(depth: FloatArray, expected: Expected, rtol: float = RTOL) -> None:
    """Interior exact; border between the clamped and the extrapolated value."""
    assert depth.dtype == np.float32
    assert depth.shape == expected.exact.shape, (depth.shape, expected.exact.shape)
    assert np.all(np.isfinite(depth)), f"{np.count_nonzero(~np.isfinite(depth))} invalid pixels"
    inside = expected.interior
    np.testing.assert_allclose(depth[inside], expected.exact[inside], rtol=rtol)
    low = np.minimum(expected.exact, expected.clamped) * (1 - rtol)
    high = np.maximum(expected.exact, expected.clamped) * (1 + rtol)
    border = ~inside
    bad = border & ((depth < low) | (depth > high))
    assert not bad.any(), (f"{bad.sum()} border pixels outside [clamped, exact]; e.g. at "
                           f"{np.argwhere(bad)[:3].tolist()}: {depth[bad][:3]} vs {expected.exact[bad][:3]}")


# --------------------------------------------------------------------------------------------
# Oracle models


def selector_level(index: int, count: int) -> int:
    """The blue value (0..255) that makes `scene_model` output map `index` of `count`."""
    return 0 if count == 1 else round(255 * index / (count - 1))


def scene_model(maps: Sequence[FloatArray], contract: ModelContract, input_size: tuple[int, int],
                output_rank: int = 4) -> onnx.ModelProto:
    """ONNX graph whose output is maps[k], k = round(max(input channel 2) * (len(maps) - 1)).

    With identity normalisation channel 2 is blue / 255, and letterbox padding is 0, so an image
    whose blue channel is uniformly `selector_level(k, n)` selects map k.
    """
    count = len(maps)
    height, width = maps[0].shape
    inner = [1, 1, height, width] if output_rank == 4 else [1, height, width]
    stack = np.stack([np.asarray(m, np.float32).reshape(inner) for m in maps])
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, *input_size])
    y = helper.make_tensor_value_info("depth", TensorProto.FLOAT, inner)
    inits = [
        numpy_helper.from_array(stack, "maps"),
        numpy_helper.from_array(np.array([2], np.int64), "c_start"),
        numpy_helper.from_array(np.array([3], np.int64), "c_end"),
        numpy_helper.from_array(np.array([1], np.int64), "c_axis"),
        numpy_helper.from_array(np.array(float(count - 1), np.float32), "levels"),
    ]
    nodes = [
        helper.make_node("Slice", ["image", "c_start", "c_end", "c_axis"], ["blue"]),
        helper.make_node("ReduceMax", ["blue"], ["blue_max"], keepdims=0),
        helper.make_node("Mul", ["blue_max", "levels"], ["level"]),
        helper.make_node("Round", ["level"], ["level_round"]),
        helper.make_node("Cast", ["level_round"], ["index"], to=TensorProto.INT64),
        helper.make_node("Gather", ["maps", "index"], ["depth"], axis=0),
    ]
    graph = helper.make_graph(nodes, "scene_switch", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="depth_ros_tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    set_contract(model, contract)
    return model


def save_model(model: onnx.ModelProto, directory: Path, name: str) -> Path:
    path = Path(directory) / name
    onnx.save(model, str(path))
    return path


def scene_rgb(width: int, height: int, index: int = 0, count: int = 1) -> np.ndarray:
    """A known colour image: R and G textured, B = the scene selector level."""
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[:, :, 0] = (7 * u + 3 * v) % 256
    rgb[:, :, 1] = (2 * u + 5 * v + 40) % 256
    rgb[:, :, 2] = selector_level(index, count)
    return rgb


def scene_image(width: int, height: int, index: int = 0, count: int = 1) -> Image:
    return rgb_image(scene_rgb(width, height, index, count), frame_id=FRAME)


# --------------------------------------------------------------------------------------------
# Output checks


def assert_headers(out: Outputs, stamp_ns: int, frame_id: str = FRAME, names: Sequence[str] = ALL_OUTPUTS) -> None:
    for name in names:
        msg = getattr(out, name)
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        assert stamp == stamp_ns, (name, stamp, stamp_ns)
        assert msg.header.frame_id == frame_id, (name, msg.header.frame_id)


def assert_camera_info(info: CameraInfo, width: int, height: int, k: Pinhole, p: Pinhole | None = None) -> None:
    """depth/camera_info describes exactly the depth image: its size, K, P, no binning/ROI."""
    p = p or k
    assert (info.width, info.height) == (width, height)
    np.testing.assert_allclose(np.asarray(info.k), k.k(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np.asarray(info.p), p.p(), rtol=1e-9, atol=1e-9)
    assert (info.binning_x, info.binning_y) == (0, 0)
    roi = info.roi
    assert (roi.x_offset, roi.y_offset, roi.width, roi.height) == (0, 0, 0, 0)


def assert_cloud_layout(cloud: PointCloud2, height: int, width: int, color: bool) -> None:
    """The raw PointCloud2 layout depth_image_proc produces (point_cloud_xyz / _xyzrgb)."""
    assert (cloud.height, cloud.width) == (height, width)
    fields = [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields]
    expected = [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1)] + ([("rgb", 16, 7, 1)] if color else [])
    assert fields == expected
    assert cloud.point_step == (32 if color else 16)
    assert cloud.row_step == width * cloud.point_step
    assert len(cloud.data) == cloud.row_step * height
    assert not cloud.is_bigendian
    assert not cloud.is_dense


def cloud_rgb_words(cloud: PointCloud2) -> np.ndarray:
    """The raw 32-bit pattern of the rgb field of every point (little-endian message)."""
    raw = np.frombuffer(bytes(cloud.data), np.uint8).reshape(cloud.height, cloud.width, cloud.point_step)
    return np.ascontiguousarray(raw[:, :, 16:20]).view("<u4")[:, :, 0]


def packed_rgb(rgb: np.ndarray) -> np.ndarray:
    """0x00RRGGBB of HxWx3 uint8 RGB."""
    rgb = rgb.astype(np.uint32)
    return (rgb[:, :, 0] << 16) | (rgb[:, :, 1] << 8) | rgb[:, :, 2]


def assert_cloud_backprojects(cloud: PointCloud2, depth: FloatArray, cam: Pinhole, stride: int = 1,
                              u: FloatArray | None = None, v: FloatArray | None = None) -> None:
    """Organised cloud = pinhole back-projection of the depth image (pixel positions u, v in `cam`)."""
    h, w = depth.shape
    assert_cloud_layout(cloud, math.ceil(h / stride), math.ceil(w / stride), color=len(cloud.fields) == 4)
    xyz, _ = cloud_msg_to_arrays(cloud)
    if u is None or v is None:
        u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    z = depth[::stride, ::stride].astype(np.float64)
    us, vs = u[::stride, ::stride], v[::stride, ::stride]
    invalid = ~np.isfinite(z)
    assert np.all(np.isnan(xyz[invalid])), "invalid depth must give NaN points"
    ok = ~invalid
    np.testing.assert_array_equal(xyz[:, :, 2][ok], z[ok])
    np.testing.assert_allclose(xyz[:, :, 0][ok], ((us - cam.cx) / cam.fx * z)[ok], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xyz[:, :, 1][ok], ((vs - cam.cy) / cam.fy * z)[ok], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Parameter services (rcl_interfaces), called from the test's rclpy node


def _call(node: Node, srv_type: Any, name: str, request: Any, timeout: float = 10.0,
          idempotent: bool = False) -> Any:
    """Call a service and wait for the reply. ``idempotent`` (a query): ask again every second until a reply
    comes, since a request sent while the server's reply writer is still matching our reader is answered into
    the void (DDS discovery of a just-started node)."""
    client = node.create_client(srv_type, name)
    try:
        assert client.wait_for_service(timeout_sec=timeout), f"service {name} not available"
        futures = [client.call_async(request)]
        asked = time.monotonic()
        deadline = asked + timeout
        while not any(f.done() for f in futures) and time.monotonic() < deadline:
            if idempotent and time.monotonic() - asked > 1.0:
                futures.append(client.call_async(request))
                asked = time.monotonic()
            rclpy.spin_once(node, timeout_sec=0.02)
        done = [f for f in futures if f.done()]
        assert done, f"no reply from {name}"
        return done[0].result()
    finally:
        node.destroy_client(client)


def set_parameters(client: Client, **values: Any) -> list[SetParametersResult]:
    """Set depth_node parameters at runtime (one SetParameters call per parameter, in order)."""
    results = []
    for name, value in values.items():
        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        response = _call(client.node, SetParameters, f"{client.namespace}/depth_node/set_parameters", request)
        results.extend(response.results)
    return results


def set_ok(client: Client, **values: Any) -> None:
    for (name, value), result in zip(values.items(), set_parameters(client, **values), strict=True):
        assert result.successful, f"setting {name}={value!r} was rejected: {result.reason}"


def get_parameters(client: Client, *names: str) -> dict[str, Any]:
    request = GetParameters.Request(names=list(names))
    response = _call(client.node, GetParameters, f"{client.namespace}/depth_node/get_parameters", request,
                     idempotent=True)
    return {name: Parameter.from_parameter_msg(_as_param_msg(name, value)).value
            for name, value in zip(names, response.values, strict=True)}


def _as_param_msg(name: str, value: Any) -> Any:
    from rcl_interfaces.msg import Parameter as ParameterMsg

    return ParameterMsg(name=name, value=value)


# --------------------------------------------------------------------------------------------
# Tests: the four output kinds


def _two_scene_node(depth_node: Callable[..., tuple[Any, Client]], tmp_path: Path, maps: Sequence[FloatArray],
                    contract: ModelContract, input_size: tuple[int, int], params: dict[str, Any] | None = None,
                    output_rank: int = 4) -> Client:
    path = save_model(scene_model(maps, contract, input_size, output_rank), tmp_path, "scenes.onnx")
    _, client = depth_node({"model": str(path), **(params or {})})
    return client


def test_canonical_inverse_depth_stretch_to_smaller_input(depth_node: Any, tmp_path: Path) -> None:
    """640x480 image, stretch to 96x128: depth, depth/camera_info, cloud and headers exact."""
    cam, w, h = Pinhole(520.0, 500.0, 318.6, 244.2), 640, 480
    layout = Layout.stretch(w, h, 128, 96)
    scenes = (FRONTO, TILTED)
    u, v = layout.net_positions()
    maps = [(cam.fx / w) / plane_depth(cam, plane, u, v) for plane in scenes]
    client = _two_scene_node(depth_node, tmp_path, maps,
                             make_contract("canonical_inverse_depth", 96, 128, "stretch"), (96, 128))
    for index, plane in enumerate(scenes):
        stamp = 1_700_000_000_000_000_000 + index
        out = client.send(scene_image(w, h, index, 2), cam.info(w, h), stamp)
        assert_headers(out, stamp)
        depth = depth_array(out.depth)
        assert out.depth.encoding == "32FC1"
        expected = expected_depth(lambda uu, vv, p=plane: plane_depth(cam, p, uu, vv), layout, w, h)
        if plane is FRONTO:
            np.testing.assert_allclose(depth, 2.5, rtol=RTOL)  # exact everywhere, border included
        assert_depth(depth, expected)
        assert_camera_info(out.camera_info, w, h, cam)
        assert_cloud_backprojects(out.points, depth, cam)
        assert (out.colored.width, out.colored.height, out.colored.encoding) == (w, h, "bgr8")


def test_canonical_inverse_depth_keep_aspect_letterbox(depth_node: Any, tmp_path: Path) -> None:
    """640x480 into a fixed 96x160 input keeping the aspect ratio: 16 px of padding each side, cropped off."""
    cam, w, h = Pinhole(520.0, 500.0, 318.6, 244.2), 640, 480
    layout = Layout.keep_aspect(w, h, 160, 96)
    assert (layout.content_w, layout.content_h, layout.top, layout.left) == (128, 96, 0, 16)
    scenes = (FRONTO, TILTED)
    u, v = layout.net_positions()
    pad = layout.padding_mask()
    maps = []
    for plane in scenes:
        c = (cam.fx / w) / plane_depth(cam, plane, u, v)
        # Garbage in the padding: 1e-3 would be 600 m (beyond max_depth -> NaN), 50 would be 2 cm.
        c[pad] = np.where(np.indices(c.shape).sum(axis=0)[pad] % 2, 1e-3, 50.0)
        maps.append(c)
    client = _two_scene_node(depth_node, tmp_path, maps,
                             make_contract("canonical_inverse_depth", 96, 160, "keep_aspect"), (96, 160))
    for index, plane in enumerate(scenes):
        stamp = 1_700_000_001_000_000_000 + index
        out = client.send(scene_image(w, h, index, 2), cam.info(w, h), stamp)
        assert_headers(out, stamp)
        depth = depth_array(out.depth)
        if plane is FRONTO:
            np.testing.assert_allclose(depth, 2.5, rtol=RTOL)
        assert_depth(depth, expected_depth(lambda uu, vv, p=plane: plane_depth(cam, p, uu, vv), layout, w, h))
        assert_camera_info(out.camera_info, w, h, cam)
        assert_cloud_backprojects(out.points, depth, cam)


def test_metric_depth_focal_rescale_and_rank3_output(depth_node: Any, tmp_path: Path) -> None:
    """metric_depth with a declared focal_ratio, output [1, h, w]; then focal_rescale off at runtime."""
    cam, w, h = Pinhole(70.0, 66.0, 40.7, 29.2), 80, 60
    layout = Layout.stretch(w, h, 3 * w, 3 * h)
    focal_ratio = 0.8  # f/W of the training camera; this camera has 70/80 = 0.875
    scenes = (FRONTO, TILTED)
    u, v = layout.net_positions()
    # The model predicts metres for the training camera: D = pred * (fx/W) / focal_ratio.
    maps = [plane_depth(cam, plane, u, v) * focal_ratio / (cam.fx / w) for plane in scenes]
    contract = make_contract("metric_depth", 3 * h, 3 * w, "stretch", focal_ratio=focal_ratio)
    client = _two_scene_node(depth_node, tmp_path, maps, contract, (3 * h, 3 * w), output_rank=3)
    for rescale in (True, False):
        if not rescale:
            set_ok(client, focal_rescale=False)
        for index, plane in enumerate(scenes):
            stamp = 1_700_000_002_000_000_000 + 10 * rescale + index
            out = client.send(scene_image(w, h, index, 2), cam.info(w, h), stamp)
            assert_headers(out, stamp)
            factor = 1.0 if rescale else focal_ratio / (cam.fx / w)
            expected = expected_depth(lambda uu, vv, p=plane, f=factor: plane_depth(cam, p, uu, vv) * f, layout, w, h)
            assert expected.interior.all()  # every output pixel samples one network pixel exactly
            depth = depth_array(out.depth)
            assert_depth(depth, expected)
            assert_cloud_backprojects(out.points, depth, cam)


def test_canonical_metric_depth_keep_aspect(depth_node: Any, tmp_path: Path) -> None:
    """canonical_metric_depth: D = pred * fx_at_input / canonical_focal, fx_at_input = fx * content_w / W."""
    cam, w, h = Pinhole(70.0, 66.0, 40.7, 29.2), 80, 60
    layout = Layout.keep_aspect(w, h, 240, 240)  # 3x: content 240x180, 30 rows of padding top and bottom
    assert (layout.content_w, layout.content_h, layout.top, layout.left) == (240, 180, 30, 0)
    canonical_focal = 1000.0
    fx_at_input = cam.fx * layout.content_w / w
    scenes = (FRONTO, TILTED)
    u, v = layout.net_positions()
    pad = layout.padding_mask()
    maps = []
    for plane in scenes:
        pred = plane_depth(cam, plane, u, v) * canonical_focal / fx_at_input
        pred[pad] = 1e4  # garbage: must be cropped off
        maps.append(pred)
    contract = make_contract("canonical_metric_depth", 240, 240, "keep_aspect", canonical_focal=canonical_focal)
    client = _two_scene_node(depth_node, tmp_path, maps, contract, (240, 240))
    for index, plane in enumerate(scenes):
        stamp = 1_700_000_003_000_000_000 + index
        out = client.send(scene_image(w, h, index, 2), cam.info(w, h), stamp)
        assert_headers(out, stamp)
        expected = expected_depth(lambda uu, vv, p=plane: plane_depth(cam, p, uu, vv), layout, w, h)
        assert expected.interior.all()
        depth = depth_array(out.depth)
        assert_depth(depth, expected)
        assert_cloud_backprojects(out.points, depth, cam)


def test_relative_disparity_with_scale_and_shift(depth_node: Any, tmp_path: Path) -> None:
    """relative_disparity: 1/D = disparity_scale * d + disparity_shift (node parameters, changed at runtime)."""
    cam, w, h = Pinhole(150.0, 140.0, 81.3, 58.7), 160, 120
    layout = Layout.stretch(w, h, 64, 48)
    scale, shift = 0.5, 0.05
    scenes = (FRONTO, TILTED)
    u, v = layout.net_positions()
    maps = [(1.0 / plane_depth(cam, plane, u, v) - shift) / scale for plane in scenes]
    client = _two_scene_node(depth_node, tmp_path, maps, make_contract("relative_disparity", 48, 64, "stretch"),
                             (48, 64), {"disparity_scale": scale, "disparity_shift": shift})
    for index, plane in enumerate(scenes):
        stamp = 1_700_000_004_000_000_000 + index
        out = client.send(scene_image(w, h, index, 2), cam.info(w, h), stamp)
        assert_headers(out, stamp)
        depth = depth_array(out.depth)
        assert_depth(depth, expected_depth(lambda uu, vv, p=plane: plane_depth(cam, p, uu, vv), layout, w, h))
        assert_cloud_backprojects(out.points, depth, cam)

    # New scale and shift at runtime: the same network output d now means 1/D = 0.25 d + 0.2.
    set_ok(client, disparity_scale=0.25, disparity_shift=0.2)
    stamp = 1_700_000_004_000_000_010
    out = client.send(scene_image(w, h, 1, 2), cam.info(w, h), stamp)

    def reinterpreted(uu: FloatArray, vv: FloatArray) -> FloatArray:
        d = (1.0 / plane_depth(cam, TILTED, uu, vv) - shift) / scale  # affine in (u, v), so is 1/D
        return 1.0 / (0.25 * d + 0.2)

    assert_depth(depth_array(out.depth), expected_depth(reinterpreted, layout, w, h))


def dynamic_size_model(value: float, contract: ModelContract, expect_hw: tuple[int, int]) -> onnx.ModelProto:
    """Dynamic-input graph: output [1,1,H,W] (the input's own size) filled with value * (H/eh) * (W/ew).

    It only returns `value` when the node picked exactly the expected network input size.
    """
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "height", "width"])
    y = helper.make_tensor_value_info("depth", TensorProto.FLOAT, [1, 1, "height", "width"])
    inits = [
        numpy_helper.from_array(np.array([2, 3], np.int64), "hw_index"),
        numpy_helper.from_array(np.array(expect_hw, np.float32), "expect_hw"),
        numpy_helper.from_array(np.array([0], np.int64), "c_start"),
        numpy_helper.from_array(np.array([1], np.int64), "c_end"),
        numpy_helper.from_array(np.array([1], np.int64), "c_axis"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(value, np.float32), "value"),
    ]
    nodes = [
        helper.make_node("Shape", ["image"], ["shape"]),
        helper.make_node("Gather", ["shape", "hw_index"], ["hw"], axis=0),
        helper.make_node("Cast", ["hw"], ["hw_f"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["hw_f", "expect_hw"], ["ratios"]),
        helper.make_node("ReduceProd", ["ratios"], ["ratio"], keepdims=0),
        helper.make_node("Mul", ["value", "ratio"], ["fill"]),
        helper.make_node("Slice", ["image", "c_start", "c_end", "c_axis"], ["channel0"]),
        helper.make_node("Mul", ["channel0", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "fill"], ["depth"]),
    ]
    graph = helper.make_graph(nodes, "dynamic_size", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="depth_ros_tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    set_contract(model, contract)
    return model


def test_dynamic_input_keep_aspect(depth_node: Any, tmp_path: Path) -> None:
    """A dynamic-size keep_aspect model gets the shorter side = 56, each side a multiple of 14 (70x56)."""
    cam, w, h = Pinhole(520.0, 500.0, 318.6, 244.2), 640, 480
    # Depth Anything's rule, by hand: 480 -> 56; 640 * 56 / 480 = 74.7 -> nearest multiple of 14 = 70.
    net_hw = (56, 70)
    contract = ModelContract.from_dict({
        "output_kind": "canonical_inverse_depth", "name": "dynamic oracle",
        "input": {"height": 56, "width": 56, "resize": "keep_aspect", "channels": "rgb", "multiple_of": 14,
                  "scale": 1 / 255, "mean": [0, 0, 0], "std": [1, 1, 1]},
    })
    path = save_model(dynamic_size_model((cam.fx / w) / 2.5, contract, net_hw), tmp_path, "dynamic.onnx")
    _, client = depth_node({"model": str(path)})
    stamp = 1_700_000_005_000_000_000
    out = client.send(scene_image(w, h), cam.info(w, h), stamp)
    assert_headers(out, stamp)
    depth = depth_array(out.depth)
    assert depth.shape == (h, w)
    np.testing.assert_allclose(depth, 2.5, rtol=RTOL)
    assert_cloud_backprojects(out.points, depth, cam)
    assert client.latest_diagnostics()["frames_published"] == "1"


# --------------------------------------------------------------------------------------------
# Camera models: P, binning + ROI, distortion


def plumb_bob_project(x: FloatArray, y: FloatArray, d: Sequence[float],
                      cam: Pinhole) -> tuple[FloatArray, FloatArray]:
    """Forward Brown-Conrady (ROS plumb_bob = OpenCV k1 k2 p1 p2 k3) of normalised coordinates."""
    k1, k2, p1, p2, k3 = d
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return cam.fx * xd + cam.cx, cam.fy * yd + cam.cy


def equidistant_project(x: FloatArray, y: FloatArray, d: Sequence[float],
                        cam: Pinhole) -> tuple[FloatArray, FloatArray]:
    """Forward Kannala-Brandt (ROS equidistant = OpenCV fisheye k1..k4) of normalised coordinates."""
    k1, k2, k3, k4 = d
    r = np.hypot(x, y)
    theta = np.arctan(r)
    theta_d = theta * (1 + k1 * theta**2 + k2 * theta**4 + k3 * theta**6 + k4 * theta**8)
    scale = np.where(r > 0, theta_d / np.where(r > 0, r, 1.0), 1.0)
    return cam.fx * x * scale + cam.cx, cam.fy * y * scale + cam.cy


def test_camera_intrinsics_p_binning_roi_distortion(depth_node: Any, tmp_path: Path) -> None:
    """P preferred over K, K when P is all zeros, binning + ROI folded in, distorted pixels' rays."""
    w, h = 160, 120
    base = Pinhole(150.0, 140.0, 81.3, 58.7)
    k_only = Pinhole(160.0, 150.0, 79.0, 61.0)  # K of a camera whose rectified P is `rect`
    rect = Pinhole(145.0, 138.0, 82.4, 57.2)
    full = Pinhole(600.0, 560.0, 322.5, 241.5)  # 640x480 sensor
    roi = (100, 60, 400, 300)
    binned = Pinhole(full.fx / 2, full.fy / 2, (full.cx - roi[0]) / 2, (full.cy - roi[1]) / 2)
    bw, bh = roi[2] // 2, roi[3] // 2

    layout = Layout.stretch(w, h, 64, 48)
    blayout = Layout.stretch(bw, bh, 64, 48)
    u, v = layout.net_positions()
    bu, bv = blayout.net_positions()
    maps = [
        (base.fx / w) / plane_depth(base, TILTED, u, v),  # 0: tilted, seen by `base`
        (base.fx / w) / plane_depth(base, FRONTO, u, v),  # 1: fronto-parallel, 2.5 m
        (binned.fx / bw) / plane_depth(binned, TILTED, bu, bv),  # 2: tilted, binned + ROI image
        (rect.fx / w) / plane_depth(rect, TILTED, u, v),  # 3: tilted, rectified with P != K
    ]
    n = len(maps)
    client = _two_scene_node(depth_node, tmp_path, maps, make_contract("canonical_inverse_depth", 48, 64), (48, 64))
    stamp = 1_700_000_006_000_000_000

    # P all zeros: intrinsics from K; the published CameraInfo fills P with [K | 0].
    stamp += 1
    out = client.send(scene_image(w, h, 0, n), base.info(w, h, p_zero=True), stamp)
    assert_headers(out, stamp)
    depth = depth_array(out.depth)
    assert_depth(depth, expected_depth(lambda uu, vv: plane_depth(base, TILTED, uu, vv), layout, w, h))
    assert_camera_info(out.camera_info, w, h, base)
    assert_cloud_backprojects(out.points, depth, base)

    # K != P on a rectified image: P's intrinsics describe the pixels (depth_image_proc uses P).
    stamp += 1
    info = rect.info(w, h)
    info.k = k_only.k()
    out = client.send(scene_image(w, h, 3, n), info, stamp)
    depth = depth_array(out.depth)
    assert_depth(depth, expected_depth(lambda uu, vv: plane_depth(rect, TILTED, uu, vv), layout, w, h))
    assert_camera_info(out.camera_info, w, h, k_only, rect)
    assert_cloud_backprojects(out.points, depth, rect)

    # Binning 2 + ROI: the image is 200x150; effective fx = fx/2, cx = (cx - x_offset)/2.
    stamp += 1
    info = full.info(640, 480, binning=(2, 2), roi=roi)
    out = client.send(scene_image(bw, bh, 2, n), info, stamp)
    assert_headers(out, stamp)
    depth = depth_array(out.depth)
    assert depth.shape == (bh, bw)
    assert_depth(depth, expected_depth(lambda uu, vv: plane_depth(binned, TILTED, uu, vv), blayout, bw, bh))
    assert_camera_info(out.camera_info, bw, bh, binned)
    assert_cloud_backprojects(out.points, depth, binned)

    # Distorted (raw) images of the fronto-parallel plane: every point lies on the ray of its own
    # pixel: projecting it with the forward lens model lands on that pixel, and z = depth = 2.5.
    lenses: list[tuple[str, list[float], Callable[..., tuple[FloatArray, FloatArray]]]] = [
        ("plumb_bob", [-0.28, 0.09, 0.0012, -0.0018, -0.01], plumb_bob_project),
        ("equidistant", [0.06, -0.02, 0.004, -0.001], equidistant_project),
    ]
    for model, coeffs, project in lenses:
        stamp += 1
        out = client.send(scene_image(w, h, 1, n), base.info(w, h, distortion_model=model, d=coeffs), stamp)
        assert_headers(out, stamp)
        depth = depth_array(out.depth)
        np.testing.assert_allclose(depth, 2.5, rtol=RTOL)
        info = out.camera_info
        assert info.distortion_model == model
        np.testing.assert_allclose(np.asarray(info.d), coeffs, rtol=0, atol=0)
        np.testing.assert_allclose(np.asarray(info.k), base.k(), rtol=1e-12)
        assert_cloud_layout(out.points, h, w, color=False)
        xyz, _ = cloud_msg_to_arrays(out.points)
        xyz = xyz.astype(np.float64)
        np.testing.assert_array_equal(xyz[:, :, 2], depth)
        pu, pv = project(xyz[:, :, 0] / xyz[:, :, 2], xyz[:, :, 1] / xyz[:, :, 2], coeffs, base)
        gu, gv = np.meshgrid(np.arange(w), np.arange(h))
        err = np.hypot(pu - gu, pv - gv)
        assert err.max() < 1e-3, f"{model}: point reprojects {err.max():.2e} px from its pixel"
        # And the rays really are distorted ones (a pinhole cloud would be off by pixels at the corners).
        pinhole_u = base.fx * xyz[0, 0, 0] / xyz[0, 0, 2] + base.cx
        assert abs(pinhole_u - 0.0) > 1.0


# --------------------------------------------------------------------------------------------
# Output options: output_scale, depth range, 16UC1, stride, colour


def test_output_scale_range_encoding_stride_colour(depth_node: Any, tmp_path: Path) -> None:
    cam, w, h = Pinhole(150.0, 140.0, 81.3, 58.7), 160, 120
    layout = Layout.stretch(w, h, 64, 48)
    u, v = layout.net_positions()
    path = save_oracle(tmp_path, (cam.fx / w) / plane_depth(cam, TILTED, u, v),
                       make_contract("canonical_inverse_depth", 48, 64), (48, 64))
    _, client = depth_node({"model": str(path)})
    rgb = scene_rgb(w, h)
    stamp = 1_700_000_007_000_000_000

    def z_true(uu: FloatArray, vv: FloatArray) -> FloatArray:
        return plane_depth(cam, TILTED, uu, vv)

    # Defaults: full size, 32FC1, stride 1, no colour.
    stamp += 1
    out = client.send(rgb_image(rgb, FRAME), cam.info(w, h), stamp)
    assert_headers(out, stamp)
    full = expected_depth(z_true, layout, w, h)
    depth = depth_array(out.depth)
    assert_depth(depth, full)
    assert_cloud_backprojects(out.points, depth, cam)

    # output_scale 0.5: an 80x60 depth image; its CameraInfo is K scaled with half-pixel centres.
    set_ok(client, output_scale=0.5)
    stamp += 1
    out = client.send(rgb_image(rgb, FRAME), cam.info(w, h), stamp)
    assert_headers(out, stamp)
    small = cam.scaled(0.5, 0.5)
    assert (small.fx, small.cx, small.cy) == pytest.approx((75.0, 40.4, 29.1), abs=1e-12)
    depth = depth_array(out.depth)
    assert depth.shape == (60, 80)
    assert (out.colored.width, out.colored.height) == (80, 60)
    expected = expected_depth(z_true, layout, 80, 60)
    assert_depth(depth, expected)  # checked at the scaled pixels' positions in the original image
    assert_camera_info(out.camera_info, 80, 60, small)
    # The cloud: against the analytic scene (pixel (x, y) sees image position (2x + 0.5, 2y + 0.5))...
    assert_cloud_backprojects(out.points, depth, cam, u=expected.u, v=expected.v)
    # ...and against back-projection with the published depth/camera_info.
    pk = np.asarray(out.camera_info.p).reshape(3, 4)
    assert_cloud_backprojects(out.points, depth, Pinhole(pk[0, 0], pk[1, 1], pk[0, 2], pk[1, 2]))

    # min/max depth across a tilted plane (Z from 1.57 to 2.80 m): out of range -> NaN, never 0.
    set_ok(client, output_scale=1.0, min_depth=1.8, max_depth=2.4)
    stamp += 1
    out = client.send(rgb_image(rgb, FRAME), cam.info(w, h), stamp)
    depth = depth_array(out.depth)
    z = full.exact
    outside = (z < 1.8) | (z > 2.4)
    # Decided: away from the limits, and (on the border) the same verdict for clamped and exact values.
    decided = outside == ((full.clamped < 1.8) | (full.clamped > 2.4))
    for zz in (z, full.clamped):
        decided &= (np.abs(zz - 1.8) > 1e-4 * 1.8) & (np.abs(zz - 2.4) > 1e-4 * 2.4)
    assert outside[decided].sum() > 0.2 * z.size and (~outside[decided]).sum() > 0.2 * z.size
    assert np.all(np.isnan(depth[outside & decided]))
    assert not np.any(depth == 0.0)
    np.testing.assert_allclose(depth[~outside & decided & full.interior], z[~outside & decided & full.interior],
                               rtol=RTOL)
    assert_cloud_backprojects(out.points, depth, cam)

    # 16UC1: millimetres, rounded, 0 = invalid.
    set_ok(client, depth_encoding="16UC1")
    stamp += 1
    out = client.send(rgb_image(rgb, FRAME), cam.info(w, h), stamp)
    assert out.depth.encoding == "16UC1"
    assert out.depth.step == 2 * w
    mm = depth_array(out.depth)
    assert mm.dtype == np.uint16
    assert np.all(mm[outside & decided] == 0)
    inside = ~outside & decided & full.interior
    assert np.all(np.abs(mm[inside].astype(np.float64) - z[inside] * 1000.0) <= 0.5 + 1e-3)
    assert np.count_nonzero(mm[inside] == np.floor(z[inside] * 1000.0 + 0.5)) >= 0.999 * inside.sum()

    # Stride 3 with colour: 40x54 points at (3i, 3j), rgb = packed 0x00RRGGBB of that input pixel.
    set_ok(client, depth_encoding="32FC1", min_depth=0.1, max_depth=50.0, cloud_stride=3, cloud_color=True)
    stamp += 1
    out = client.send(rgb_image(rgb, FRAME), cam.info(w, h), stamp)
    assert_headers(out, stamp)
    depth = depth_array(out.depth)
    assert_depth(depth, full)
    assert_cloud_layout(out.points, 40, 54, color=True)
    assert_cloud_backprojects(out.points, depth, cam, stride=3)
    np.testing.assert_array_equal(cloud_rgb_words(out.points), packed_rgb(rgb[::3, ::3]))
    _, colours = cloud_msg_to_arrays(out.points)
    np.testing.assert_array_equal(colours, rgb[::3, ::3])

    # Colour at stride 1.
    set_ok(client, cloud_stride=1)
    stamp += 1
    out = client.send(rgb_image(rgb, FRAME), cam.info(w, h), stamp)
    assert_cloud_layout(out.points, h, w, color=True)
    np.testing.assert_array_equal(cloud_rgb_words(out.points), packed_rgb(rgb))
    assert_cloud_backprojects(out.points, depth_array(out.depth), cam)
