"""Real sensor frames through the real depth_node (rclpy + Fast DDS across processes, ONNX Runtime).

Each oracle model outputs the sensor's own ground-truth depth (or the canonical inverse depth
computed from it here), so the node's published depth image and point cloud must reproduce the
ground truth and its back-projection, which this file computes independently: pinhole formulas
for the RealSense D435 (real CameraInfo from the bag: P all zeros, "Brown Conrady" with zero D)
and the plumb_bob forward model for the TUM fr2 Kinect frame (raw, distorted image).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import rclpy
from oracles import camera_info as make_camera_info
from oracles import make_contract, rgb_image, save_oracle
from rcl_interfaces.srv import SetParameters
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message
from ros_harness import Client, NodeProcess, Outputs
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from depth_ros.bags.io import read_raw

REPO = Path(__file__).resolve().parent.parent
D435 = REPO / "data" / "realsense_d435"
TUM = REPO / "data" / "tum_fr2_desk"
D435_BAG = D435 / "d435_rosbag2"
D435_INFO_TOPIC = "/device_0/sensor_1/Color_0/info/camera_info"
D435_IMAGE_TOPIC = "/device_0/sensor_1/Color_0/image/data"

# TUM RGB-D freiburg2 (published by the dataset); images are NOT undistorted.
TUM_FX, TUM_FY, TUM_CX, TUM_CY = 520.9, 521.0, 325.1, 249.7
TUM_D = (0.2312, -0.7849, -0.0033, -0.0001, 0.9172)
TUM_DEPTH_FACTOR = 5000.0  # uint16 value / 5000 = metres

# Every test sets the depth range explicitly (the GT lies within it), so config changes do not matter.
# The exact-geometry checks compare every pixel with the sensor's depth: the edge filter (on by default) off.
RANGE = {"min_depth": 0.1, "max_depth": 20.0, "edge_filter": False}

StartNode = Callable[..., tuple[NodeProcess, Client]]


# ----------------------------------------------------------------------------- data


def _read_png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, f"cannot read {path}"
    return image


def d435_messages() -> tuple[CameraInfo, Image]:
    """The colour CameraInfo and the colour image of the D435 bag, as rclpy messages."""
    found: dict[str, Any] = {}
    for raw in read_raw(D435_BAG, [D435_INFO_TOPIC, D435_IMAGE_TOPIC]):
        msg_type = CameraInfo if raw.topic == D435_INFO_TOPIC else Image
        found.setdefault(raw.topic, deserialize_message(raw.data, msg_type))
    return found[D435_INFO_TOPIC], found[D435_IMAGE_TOPIC]


def d435_ground_truth_mm() -> np.ndarray:
    depth = _read_png(D435 / "depth_in_color_mm.png")
    assert depth.dtype == np.uint16 and depth.shape == (480, 640)
    return depth


def tum_ground_truth() -> tuple[np.ndarray, np.ndarray]:
    """(rgb uint8 HxWx3, depth float32 metres with 0 = no data) of TUM frame 1."""
    bgr = _read_png(TUM / "rgb_1.png")
    raw = _read_png(TUM / "depth_1.png")
    assert raw.dtype == np.uint16 and raw.shape == (480, 640) and bgr.shape == (480, 640, 3)
    depth = (raw.astype(np.float64) / TUM_DEPTH_FACTOR).astype(np.float32)
    return np.ascontiguousarray(bgr[:, :, ::-1]), depth


# ----------------------------------------------------------------------------- decoding (own code)


def depth_32fc1(msg: Image) -> np.ndarray:
    assert msg.encoding == "32FC1" and not msg.is_bigendian and msg.step == msg.width * 4
    return np.frombuffer(msg.data, "<f4").reshape(msg.height, msg.width)


def depth_16uc1(msg: Image) -> np.ndarray:
    assert msg.encoding == "16UC1" and not msg.is_bigendian and msg.step == msg.width * 2
    return np.frombuffer(msg.data, "<u2").reshape(msg.height, msg.width)


def cloud_xyz(msg: PointCloud2) -> np.ndarray:
    """(h, w, 3) float32 of a depth_image_proc-style organised xyz cloud."""
    fields = {(f.name, f.offset, f.datatype, f.count) for f in msg.fields}
    assert {("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1)} <= fields, fields
    assert msg.point_step == 16 and msg.row_step == msg.width * 16 and not msg.is_bigendian
    assert msg.is_dense is False
    return np.frombuffer(msg.data, "<f4").reshape(msg.height, msg.width, 4)[:, :, :3]


def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))


def pinhole_cloud(z: np.ndarray, fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """x = (u - cx) / fx * Z, y = (v - cy) / fy * Z (float64), NaN where Z is NaN."""
    u, v = pixel_grid(*z.shape)
    z64 = z.astype(np.float64)
    return np.stack([(u - cx) / fx * z64, (v - cy) / fy * z64, z64], axis=-1)


def plumb_bob_project(points: np.ndarray, fx: float, fy: float, cx: float, cy: float,
                      d: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV/ROS plumb_bob forward model: camera-frame points (N, 3) -> distorted pixels (u, v)."""
    k1, k2, p1, p2, k3 = d
    p = points.astype(np.float64)
    x, y = p[:, 0] / p[:, 2], p[:, 1] / p[:, 2]
    r2 = x * x + y * y
    radial = 1.0 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return fx * xd + cx, fy * yd + cy


def set_parameters(node: Node, namespace: str, **values: Any) -> None:
    """Change depth_node parameters at runtime through its real set_parameters service."""
    client = node.create_client(SetParameters, f"{namespace}/depth_node/set_parameters")
    try:
        assert client.wait_for_service(timeout_sec=10.0), "set_parameters service not available"
        request = SetParameters.Request(
            parameters=[Parameter(name, value=value).to_parameter_msg() for name, value in values.items()]
        )
        future = client.call_async(request)
        rclpy.spin_until_future_complete(node, future, timeout_sec=10.0)
        response = future.result()
        assert response is not None, "set_parameters did not answer"
        assert all(result.successful for result in response.results), response.results
    finally:
        node.destroy_client(client)


def assert_header(out: Outputs, stamp_ns: int, frame_id: str) -> None:
    for msg in (out.depth, out.camera_info, out.points, out.colored):
        assert msg is not None
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == stamp_ns
        assert msg.header.frame_id == frame_id


def assert_depth_matches(depth: np.ndarray, truth: np.ndarray) -> None:
    """32FC1 depth equals the ground truth at valid pixels (rtol 1e-6) and is NaN exactly where GT is 0."""
    valid = truth > 0
    assert depth.shape == truth.shape
    np.testing.assert_array_equal(np.isnan(depth), ~valid)
    np.testing.assert_allclose(depth[valid], truth[valid], rtol=1e-6, atol=0)


def assert_cloud_nan_where_invalid(xyz: np.ndarray, valid: np.ndarray) -> None:
    assert np.isnan(xyz[~valid]).all(), "invalid pixels must give NaN points (x, y and z)"
    assert np.isfinite(xyz[valid]).all()


# ----------------------------------------------------------------------------- RealSense D435


def test_d435_bag_matches_png_sample() -> None:
    """The colour frame in the bag is color.png (BGR on disk), and its CameraInfo has the known quirks."""
    info, image = d435_messages()
    assert (image.width, image.height, image.encoding, image.step) == (640, 480, "rgb8", 1920)
    rgb = np.frombuffer(image.data, np.uint8).reshape(480, 640, 3)
    np.testing.assert_array_equal(rgb, _read_png(D435 / "color.png")[:, :, ::-1])
    assert (info.width, info.height) == (640, 480)
    assert info.distortion_model == "Brown Conrady" and not any(info.d)
    assert not any(info.p), "this sample's P is all zeros (intrinsics must come from K)"
    np.testing.assert_allclose(np.asarray(info.k)[[0, 2, 4, 5]], [613.2037, 319.9388, 613.4193, 239.1830],
                               atol=1e-4)


def _d435_k(info: CameraInfo) -> tuple[float, float, float, float]:
    k = np.asarray(info.k, dtype=np.float64)
    return float(k[0]), float(k[4]), float(k[2]), float(k[5])


def _check_d435_frame(out: Outputs, info: CameraInfo, truth_m: np.ndarray, stamp_ns: int) -> None:
    """Header, camera_info and cloud of one D435 frame (shared by the 32FC1 and 16UC1 cases)."""
    assert_header(out, stamp_ns, "0")  # the Image's frame_id ('0'), not the CameraInfo's ('')
    assert out.camera_info is not None and out.points is not None
    published = out.camera_info
    assert (published.width, published.height) == (640, 480)
    np.testing.assert_array_equal(np.asarray(published.k), np.asarray(info.k))
    # Normalised for depth_image_proc (which reads P): the driver's all-zero P becomes [K | 0], and
    # "Brown Conrady" with zero coefficients becomes plumb_bob with zeros.
    k = np.asarray(info.k).reshape(3, 3)
    np.testing.assert_array_equal(np.asarray(published.p).reshape(3, 4), np.hstack([k, np.zeros((3, 1))]))
    assert published.distortion_model == "plumb_bob" and list(published.d) == [0.0] * 5

    fx, fy, cx, cy = _d435_k(info)
    valid = truth_m > 0
    expected = pinhole_cloud(np.where(valid, truth_m, np.nan).astype(np.float32), fx, fy, cx, cy)
    xyz = cloud_xyz(out.points)
    assert xyz.shape == (480, 640, 3)
    assert_cloud_nan_where_invalid(xyz, valid)
    np.testing.assert_allclose(xyz[valid], expected[valid], rtol=1e-6, atol=1e-7)
    assert np.array_equal(xyz[..., 2][valid], truth_m[valid])


def test_d435_metric_depth_32fc1_then_16uc1(depth_node: StartNode, tmp_path: Path) -> None:
    """GT as metric_depth: 32FC1 equals GT (NaN at holes); 16UC1 equals the sensor's mm (0 at holes)."""
    info, image = d435_messages()
    truth_mm = d435_ground_truth_mm()
    truth_m = (truth_mm.astype(np.float64) / 1000.0).astype(np.float32)  # 0 stays 0 = "no data"
    contract = make_contract("metric_depth", 480, 640, "stretch")
    model = save_oracle(tmp_path, truth_m, contract, (480, 640), name="d435_metric.onnx")

    process, client = depth_node({"model": str(model), **RANGE})
    stamp = image.header.stamp.sec * 10**9 + image.header.stamp.nanosec  # ~360 s since device start
    assert stamp > 0
    out = client.send(image, info, stamp)
    assert out.depth is not None
    depth = depth_32fc1(out.depth)
    assert_depth_matches(depth, truth_m)
    assert not (depth == 0).any(), "invalid pixels must be NaN, never 0 (REP-117)"
    _check_d435_frame(out, info, truth_m, stamp)

    set_parameters(client.node, process.namespace, depth_encoding="16UC1")
    stamp_16 = stamp + 100_000_000
    out = client.send(image, info, stamp_16)
    assert out.depth is not None
    mm = depth_16uc1(out.depth)
    np.testing.assert_array_equal(mm, truth_mm)  # exact mm at valid pixels, 0 exactly at the holes
    _check_d435_frame(out, info, truth_m, stamp_16)


def test_d435_canonical_inverse_depth(depth_node: StartNode, tmp_path: Path) -> None:
    """C = (fx/W) / D_gt through the node gives back D_gt: the focal-length path on a real camera."""
    info, image = d435_messages()
    truth_mm = d435_ground_truth_mm()
    truth_m = (truth_mm.astype(np.float64) / 1000.0).astype(np.float32)
    fx, _, _, _ = _d435_k(info)
    valid = truth_mm > 0
    canonical = np.zeros(truth_mm.shape, dtype=np.float64)
    canonical[valid] = (fx / 640.0) / truth_m[valid].astype(np.float64)
    contract = make_contract("canonical_inverse_depth", 480, 640, "stretch")
    model = save_oracle(tmp_path, canonical.astype(np.float32), contract, (480, 640), name="d435_cid.onnx")

    _, client = depth_node({"model": str(model), **RANGE})
    stamp = 361_000_000_123
    out = client.send(image, info, stamp)
    assert out.depth is not None
    depth = depth_32fc1(out.depth)
    assert_depth_matches(depth, truth_m)

    assert out.points is not None
    fx, fy, cx, cy = _d435_k(info)
    expected = pinhole_cloud(np.where(valid, truth_m, np.nan).astype(np.float32), fx, fy, cx, cy)
    xyz = cloud_xyz(out.points)
    assert_cloud_nan_where_invalid(xyz, valid)
    np.testing.assert_allclose(xyz[valid], expected[valid], rtol=2e-6, atol=1e-7)
    assert_header(out, stamp, "0")


# ----------------------------------------------------------------------------- TUM fr2 desk (raw Kinect)


def test_tum_raw_image_cloud_uses_plumb_bob_then_rectified_pinhole(depth_node: StartNode, tmp_path: Path) -> None:
    """Non-zero plumb_bob D: the image is raw, each cloud point re-projects onto its own pixel.

    Then input_rectified 'true' (set at runtime): D is ignored, the cloud is the plain pinhole
    back-projection with P, as depth_image_proc computes it.
    """
    rgb, truth = tum_ground_truth()
    valid = truth > 0
    assert 0.5 < valid.mean() < 0.9
    contract = make_contract("metric_depth", 480, 640, "stretch")
    model = save_oracle(tmp_path, truth, contract, (480, 640), name="tum_metric.onnx")

    process, client = depth_node({"model": str(model), **RANGE})
    info = make_camera_info(640, 480, TUM_FX, TUM_FY, TUM_CX, TUM_CY, d=list(TUM_D), frame_id="kinect")
    image = rgb_image(rgb, frame_id="kinect_rgb_optical")
    stamp = 1_311_868_164_363_181_000  # a TUM-like wall-clock stamp
    out = client.send(image, info, stamp)
    assert out.depth is not None and out.points is not None and out.camera_info is not None
    assert_header(out, stamp, "kinect_rgb_optical")
    assert_depth_matches(depth_32fc1(out.depth), truth)

    # The depth image keeps the raw image's calibration (same size: K and D unchanged).
    published = out.camera_info
    assert (published.width, published.height, published.distortion_model) == (640, 480, "plumb_bob")
    np.testing.assert_array_equal(np.asarray(published.d), np.asarray(TUM_D))
    np.testing.assert_array_equal(np.asarray(published.k), np.asarray(info.k))
    np.testing.assert_array_equal(np.asarray(published.p), np.asarray(info.p))

    xyz = cloud_xyz(out.points)
    assert xyz.shape == (480, 640, 3)
    assert_cloud_nan_where_invalid(xyz, valid)
    np.testing.assert_array_equal(xyz[..., 2][valid], truth[valid])
    u_proj, v_proj = plumb_bob_project(xyz[valid], TUM_FX, TUM_FY, TUM_CX, TUM_CY, TUM_D)
    u, v = pixel_grid(480, 640)
    err = np.hypot(u_proj - u[valid], v_proj - v[valid])
    assert err.max() <= 1e-3, f"re-projection error up to {err.max():.2e} px"
    # The distortion really matters here: plain pinhole rays would be far off at the borders.
    pinhole = pinhole_cloud(truth, TUM_FX, TUM_FY, TUM_CX, TUM_CY)
    assert np.nanmax(np.abs(pinhole[..., 0][valid] - xyz[..., 0][valid])) > 1e-2

    set_parameters(client.node, process.namespace, input_rectified="true")
    stamp_rect = stamp + 33_000_000
    out = client.send(image, info, stamp_rect)
    assert out.depth is not None and out.points is not None
    assert_header(out, stamp_rect, "kinect_rgb_optical")
    assert_depth_matches(depth_32fc1(out.depth), truth)
    xyz = cloud_xyz(out.points)
    assert_cloud_nan_where_invalid(xyz, valid)
    np.testing.assert_allclose(xyz[valid], pinhole[valid], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("frame", ["1", "2"])
def test_tum_ground_truth_files_are_sane(frame: str) -> None:
    """The bundled TUM frames are what the README says (guards the data the node tests rely on)."""
    depth = _read_png(TUM / f"depth_{frame}.png")
    rgb = _read_png(TUM / f"rgb_{frame}.png")
    assert depth.dtype == np.uint16 and depth.shape == (480, 640)
    assert rgb.dtype == np.uint8 and rgb.shape == (480, 640, 3)
    metres = depth[depth > 0] / TUM_DEPTH_FACTOR
    assert 0.3 < metres.min() and metres.max() < 12.0  # Kinect v1 reaches ~10.5 m here
