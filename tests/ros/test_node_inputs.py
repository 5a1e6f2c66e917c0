"""End to end: what goes into depth_node (encodings, normalisation, compression, QoS, parameters, lazy outputs).

Real depth_node processes over Fast DDS with oracle ONNX models (real ONNX Runtime); expected values
are computed here from the images and scenes the tests build. Helpers come from test_node_geometry.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from onnx import TensorProto, helper, numpy_helper
from oracles import make_contract, save_oracle
from rclpy.duration import Duration
from ros_harness import depth_array, qos, start_node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from test_node_geometry import (
    FRAME,
    RTOL,
    TILTED,
    Layout,
    Pinhole,
    assert_cloud_backprojects,
    assert_cloud_layout,
    assert_headers,
    get_parameters,
    plane_depth,
    set_ok,
    set_parameters,
)

from depth_ros.backends.graph_models import set_contract
from depth_ros.core.contract import ModelContract
from depth_ros.ros.codecs import cloud_msg_to_arrays

CAM, W, H = Pinhole(60.0, 58.0, 31.7, 24.4), 64, 48  # image == network input size: no resampling at all


def tilted_oracle(tmp_path: Path) -> Path:
    """canonical_inverse_depth of the tilted plane at the image's own pixels (input 48x64 = image)."""
    u, v = Layout.stretch(W, H, W, H).net_positions()
    return save_oracle(tmp_path, (CAM.fx / W) / plane_depth(CAM, TILTED, u, v),
                       make_contract("canonical_inverse_depth", H, W), (H, W))


def exact_tilted() -> np.ndarray:
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    return plane_depth(CAM, TILTED, u, v)


def known_rgb() -> np.ndarray:
    """All three channels textured and different from each other."""
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    return np.stack([(5 * u + 3 * v) % 256, (2 * u + 7 * v + 50) % 256, (255 - 4 * u - v) % 256],
                    axis=-1).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Encodings


def image_msg(encoding: str, rows: np.ndarray, pad: int = 6, bigendian: bool = False) -> Image:
    """Image from (h, row_bytes) uint8 rows, each followed by `pad` junk bytes (step > row size)."""
    h, row_bytes = rows.shape
    padded = np.full((h, row_bytes + pad), 0xAB, np.uint8)
    padded[:, :row_bytes] = rows
    msg = Image(height=h, width=W, encoding=encoding, step=row_bytes + pad, is_bigendian=int(bigendian))
    msg.header.frame_id = FRAME
    msg.data = padded.tobytes()
    return msg


def yuv_planes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y in the video range [16, 235], U/V per pixel pair (4:2:2), all varying."""
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    y = (16 + (3 * u + 2 * v) % 220).astype(np.uint8)
    pu, pv = np.meshgrid(np.arange(W // 2), np.arange(H))
    cb = (88 + (5 * pu + pv) % 80).astype(np.uint8)
    cr = (88 + (3 * pv + pu) % 80).astype(np.uint8)
    return y, cb, cr


def bt601_video_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 limited-range YCbCr -> RGB (the conversion cv_bridge / OpenCV apply to yuv422)."""
    luma = 255.0 / 219.0 * (y.astype(np.float64) - 16.0)
    b = np.repeat(cb, 2, axis=1).astype(np.float64) - 128.0
    r = np.repeat(cr, 2, axis=1).astype(np.float64) - 128.0
    rgb = np.stack([luma + 1.596 * r, luma - 0.392 * b - 0.813 * r, luma + 2.017 * b], axis=-1)
    return np.clip(np.round(rgb), 0, 255)


def encoded_inputs() -> list[tuple[str, Image, np.ndarray, int]]:
    """(label, message, expected decoded RGB, tolerance in levels) for every supported raw encoding."""
    rgb = known_rgb()
    alpha = np.full((H, W, 1), 77, np.uint8)
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    grey = ((3 * u + 5 * v) % 256).astype(np.uint8)
    grey16 = ((1000 * u + 37 * v * v + 11) % 65536).astype(np.uint16)
    grey16_as_8 = np.round(grey16 / 257.0)  # 16 -> 8 bit: full range onto full range
    y, cb, cr = yuv_planes()
    uyvy = np.empty((H, 2 * W), np.uint8)
    uyvy[:, 0::4], uyvy[:, 1::4], uyvy[:, 2::4], uyvy[:, 3::4] = cb, y[:, 0::2], cr, y[:, 1::2]
    yuyv = np.empty((H, 2 * W), np.uint8)
    yuyv[:, 0::4], yuyv[:, 1::4], yuyv[:, 2::4], yuyv[:, 3::4] = y[:, 0::2], cb, y[:, 1::2], cr
    yuv_rgb = bt601_video_rgb(y, cb, cr)
    grey3 = np.repeat(grey[:, :, None], 3, axis=2)
    grey16_3 = np.repeat(grey16_as_8[:, :, None], 3, axis=2)
    return [
        ("rgb8", image_msg("rgb8", rgb.reshape(H, -1)), rgb, 0),
        ("bgr8", image_msg("bgr8", rgb[:, :, ::-1].reshape(H, -1)), rgb, 0),
        ("rgba8", image_msg("rgba8", np.concatenate([rgb, alpha], axis=2).reshape(H, -1)), rgb, 0),
        ("bgra8", image_msg("bgra8", np.concatenate([rgb[:, :, ::-1], alpha], axis=2).reshape(H, -1)), rgb, 0),
        ("mono8", image_msg("mono8", grey), grey3, 0),
        ("mono16", image_msg("mono16", grey16.astype("<u2").view(np.uint8).reshape(H, -1)), grey16_3, 1),
        ("mono16 big-endian", image_msg("mono16", grey16.astype(">u2").view(np.uint8).reshape(H, -1),
                                        bigendian=True), grey16_3, 1),
        ("yuv422", image_msg("yuv422", uyvy), yuv_rgb, 2),
        ("uyvy", image_msg("uyvy", uyvy), yuv_rgb, 2),
        ("yuv422_yuy2", image_msg("yuv422_yuy2", yuyv), yuv_rgb, 2),
        ("yuyv", image_msg("yuyv", yuyv), yuv_rgb, 2),
    ]


def test_every_encoding_with_row_padding(depth_node: Any, tmp_path: Path) -> None:
    """Every encoding (padded rows, big-endian mono16) gives the same exact depth; the colour cloud shows
    that each one was decoded to the right RGB."""
    _, client = depth_node({"model": str(tilted_oracle(tmp_path)), "cloud_color": True})
    truth = exact_tilted()
    depths: dict[str, np.ndarray] = {}
    colours: dict[str, np.ndarray] = {}
    for index, (label, msg, expected_rgb, tolerance) in enumerate(encoded_inputs()):
        stamp = 1_700_000_100_000_000_000 + index
        out = client.send(msg, CAM.info(W, H), stamp)
        assert_headers(out, stamp)
        depth = depth_array(out.depth)
        np.testing.assert_allclose(depth, truth, rtol=RTOL, err_msg=label)
        depths[label] = depth
        assert_cloud_layout(out.points, H, W, color=True)
        assert_cloud_backprojects(out.points, depth, CAM)
        _, rgb = cloud_msg_to_arrays(out.points)
        assert rgb is not None
        error = np.abs(rgb.astype(np.int32) - expected_rgb.astype(np.int32))
        assert error.max() <= tolerance, f"{label}: decoded colour off by up to {error.max()} levels"
        colours[label] = rgb
    first = next(iter(depths.values()))
    for label, depth in depths.items():
        np.testing.assert_array_equal(depth, first, err_msg=label)
    np.testing.assert_array_equal(colours["mono16"], colours["mono16 big-endian"])
    np.testing.assert_array_equal(colours["yuv422"], colours["yuyv"])


# --------------------------------------------------------------------------------------------
# Normalisation and channel order, end to end


NORM = {"scale": 0.002, "mean": [-0.5, -1.0, -2.0], "std": [0.5, 0.25, 0.125]}


def channel0_model(channels: str) -> onnx.ModelProto:
    """metric_depth graph whose output is the network input's channel 0 (input size = image size)."""
    contract = ModelContract.from_dict({
        "output_kind": "metric_depth", "name": f"channel 0 ({channels})",
        "input": {"height": H, "width": W, "resize": "stretch", "channels": channels, **NORM},
    })
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, H, W])
    y = helper.make_tensor_value_info("depth", TensorProto.FLOAT, [1, 1, H, W])
    inits = [numpy_helper.from_array(np.array([value], np.int64), name)
             for name, value in (("start", 0), ("end", 1), ("axis", 1))]
    graph = helper.make_graph([helper.make_node("Slice", ["image", "start", "end", "axis"], ["depth"])],
                              "channel0", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="depth_ros_tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    set_contract(model, contract)
    return model


def normalised(values: np.ndarray) -> np.ndarray:
    """(pixel * scale - mean[0]) / std[0]: what network channel 0 holds."""
    return (values.astype(np.float64) * NORM["scale"] - NORM["mean"][0]) / NORM["std"][0]


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def test_normalisation_and_channel_order(depth_node: Any, tmp_path: Path) -> None:
    """depth = network channel 0 = (R * scale - mean) / std for 'rgb' models, B for 'bgr' models."""
    rgb = known_rgb()
    for index, (channels, source) in enumerate((("rgb", 0), ("bgr", 2))):
        path = _save(channel0_model(channels), tmp_path / f"channel0_{channels}.onnx")
        _, client = depth_node({"model": str(path)})
        for encoding, data in (("rgb8", rgb), ("bgr8", rgb[:, :, ::-1])):
            stamp = 1_700_000_200_000_000_000 + 10 * index + (encoding == "bgr8")
            out = client.send(image_msg(encoding, np.ascontiguousarray(data).reshape(H, -1)), CAM.info(W, H), stamp)
            depth = depth_array(out.depth)
            np.testing.assert_allclose(depth, normalised(rgb[:, :, source]), rtol=1e-6,
                                       err_msg=f"{channels} model, {encoding} image")


def test_compressed_png_and_jpeg(depth_node: Any, tmp_path: Path) -> None:
    """image_transport 'compressed': PNG is lossless (exact), JPEG close; channel order survives."""
    path = _save(channel0_model("rgb"), tmp_path / "channel0_rgb.onnx")
    _, client = depth_node({"model": str(path)}, compressed=True)
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    smooth = np.stack([40 + 2 * u, np.full_like(u, 100), 220 - 3 * v], axis=-1).astype(np.uint8)  # JPEG-friendly
    grey = ((3 * u + 5 * v) % 256).astype(np.uint8)
    bgr = np.ascontiguousarray(smooth[:, :, ::-1])
    cases = [
        ("rgb8; png compressed bgr8", ".png", bgr, smooth[:, :, 0], 0.0),
        ("mono8; png compressed mono8", ".png", grey, grey, 0.0),
        ("rgb8; jpeg compressed bgr8", ".jpg", bgr, smooth[:, :, 0], 3.0),
    ]
    for index, (fmt, ext, pixels, red, tolerance) in enumerate(cases):
        ok, encoded = cv2.imencode(ext, pixels, [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == ".jpg" else [])
        assert ok
        msg = CompressedImage(format=fmt)
        msg.header.frame_id = FRAME
        msg.data = encoded.tobytes()
        stamp = 1_700_000_300_000_000_000 + index
        out = client.send(msg, CAM.info(W, H), stamp)
        assert_headers(out, stamp)
        depth = depth_array(out.depth).astype(np.float64)
        levels = np.abs(depth - normalised(red)) / (NORM["scale"] / NORM["std"][0])  # error in 8-bit levels
        if tolerance == 0.0:
            np.testing.assert_allclose(depth, normalised(red), rtol=1e-6, err_msg=fmt)
        else:
            assert levels.mean() < 1.0 and levels.max() <= tolerance, (fmt, levels.mean(), levels.max())
            # The blue channel (the other end of a swap) would be off by tens of levels.
            assert np.abs(depth - normalised(smooth[:, :, 2])).mean() / (NORM["scale"] / NORM["std"][0]) > 30


# --------------------------------------------------------------------------------------------
# QoS


def test_reliable_qos_delivers_every_frame(depth_node: Any, tmp_path: Path) -> None:
    """Reliable inputs (input_qos_reliability) and the reliable default outputs: a reliable client gets all of 5
    frames sent 0.2 s apart."""
    _, client = depth_node({"model": str(tilted_oracle(tmp_path))}, reliable=True)
    truth = exact_tilted()
    stamps = [1_700_000_400_000_000_000 + i for i in range(5)]
    image = image_msg("rgb8", known_rgb().reshape(H, -1))
    for stamp in stamps:
        client.publish(image, CAM.info(W, H), stamp)  # CameraInfo, then the image, each acknowledged
        client.spin(0.2)
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline and not all(
            stamp in client.outputs and client.outputs[stamp].complete(("depth", "camera_info", "points", "colored"))
            for stamp in stamps):
        client.spin(0.05)
    missing = [s for s in stamps if s not in client.outputs or client.outputs[s].depth is None]
    assert not missing, f"frames lost with reliable QoS: {missing}"
    for stamp in stamps:
        out = client.outputs[stamp]
        assert_headers(out, stamp)
        np.testing.assert_allclose(depth_array(out.depth), truth, rtol=RTOL)
    diag = client.latest_diagnostics()
    assert (diag["frames_received"], diag["frames_published"], diag["frames_dropped"]) == ("5", "5", "0")


# --------------------------------------------------------------------------------------------
# Runtime parameters


def test_runtime_parameter_changes(depth_node: Any, tmp_path: Path) -> None:
    """depth_encoding, cloud_stride and max_depth change at runtime; invalid values are refused with a reason."""
    _, client = depth_node({"model": str(tilted_oracle(tmp_path))})
    truth = exact_tilted()  # 1.57 .. 2.81 m over this image
    image = image_msg("rgb8", known_rgb().reshape(H, -1))
    stamp = 1_700_000_500_000_000_000

    stamp += 1
    out = client.send(image, CAM.info(W, H), stamp)
    assert out.depth.encoding == "32FC1"
    assert_cloud_layout(out.points, H, W, color=False)

    set_ok(client, depth_encoding="16UC1", cloud_stride=2, max_depth=2.2)
    expected_params = {"depth_encoding": "16UC1", "cloud_stride": 2, "max_depth": 2.2, "min_depth": 0.1}

    def check_changed(stamp: int) -> None:
        out = client.send(image, CAM.info(W, H), stamp)
        assert out.depth.encoding == "16UC1"
        mm = depth_array(out.depth)
        far = truth > 2.2 * (1 + 1e-4)
        near = truth < 2.2 * (1 - 1e-4)
        assert far.sum() > 100 and near.sum() > 100
        assert np.all(mm[far] == 0)
        assert np.all(np.abs(mm[near] - truth[near] * 1000.0) <= 0.5 + 1e-3)
        assert_cloud_layout(out.points, H // 2, W // 2, color=False)
        xyz, _ = cloud_msg_to_arrays(out.points)
        np.testing.assert_array_equal(np.isnan(xyz[:, :, 2]), mm[::2, ::2] == 0)
        np.testing.assert_allclose(xyz[:, :, 2][near[::2, ::2]], truth[::2, ::2][near[::2, ::2]], rtol=RTOL)

    stamp += 1
    check_changed(stamp)
    assert get_parameters(client, *expected_params) == expected_params

    refused = {
        "cloud_stride": 0,  # below its range [1, 64]
        "min_depth": 3.0,  # above max_depth (2.2)
        "depth_encoding": "nope",  # not a choice
        "max_depth": 0.05,  # below min_depth (0.1)
        "model": "other.onnx",  # read-only after startup
    }
    for name, value in refused.items():
        (result,) = set_parameters(client, **{name: value})
        assert not result.successful, f"{name}={value!r} was accepted"
        assert result.reason.strip(), f"{name}={value!r} refused without a reason"
    reasons = {name: set_parameters(client, **{name: value})[0].reason for name, value in refused.items()}
    assert "min_depth" in reasons["min_depth"] and "max_depth" in reasons["min_depth"], reasons["min_depth"]
    assert "16UC1" in reasons["depth_encoding"], reasons["depth_encoding"]
    assert "cloud_stride" in reasons["cloud_stride"] or "range" in reasons["cloud_stride"], reasons["cloud_stride"]
    assert get_parameters(client, *expected_params) == expected_params
    stamp += 1
    check_changed(stamp)  # the node still runs with the old (valid) values


# --------------------------------------------------------------------------------------------
# Lazy outputs


def test_lazy_outputs_without_subscribers(ros_context: Any, tmp_path: Path) -> None:
    """No subscriber on any output: frames are counted as dropped_no_subscribers, nothing published.
    Then a depth-only subscriber gets its depth (the node does not need every output subscribed)."""
    node = ros_context
    process = start_node({"model": str(tilted_oracle(tmp_path)), "diagnostics_period": 0.2,
                          "input_qos_reliability": "reliable"})
    ns = process.namespace
    q = qos()
    pub_image = node.create_publisher(Image, f"{ns}/image", q)
    pub_info = node.create_publisher(CameraInfo, f"{ns}/camera_info", q)
    diagnostics: list[dict[str, str]] = []

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(ns + "/"):
                diagnostics.append({kv.key: kv.value for kv in status.values})

    depths: dict[int, Image] = {}
    diag_sub = node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    depth_sub = None
    acked = Duration(seconds=10.0)
    image = image_msg("rgb8", known_rgb().reshape(H, -1))

    def spin(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.01)

    def publish(stamp: int) -> None:
        image.header.stamp.sec, image.header.stamp.nanosec = divmod(stamp, 10**9)
        info = CAM.info(W, H)
        info.header.stamp = image.header.stamp
        pub_info.publish(info)
        assert pub_info.wait_for_all_acked(acked)  # the node holds the CameraInfo before the image
        pub_image.publish(image)
        assert pub_image.wait_for_all_acked(acked)

    def wait_diagnostics(predicate: Any, timeout: float = 10.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if diagnostics and predicate(diagnostics[-1]):
                return diagnostics[-1]
            spin(0.05)
        raise AssertionError(f"diagnostics never matched; last: {diagnostics[-1:]}\n{process.output()}")

    try:
        deadline = time.monotonic() + 30.0
        while not (pub_image.get_subscription_count() and pub_info.get_subscription_count()):
            assert time.monotonic() < deadline, process.output()
            assert process.process.poll() is None, process.output()
            spin(0.05)
        for i in range(3):
            publish(1_700_000_600_000_000_000 + i)
            spin(0.1)
        diag = wait_diagnostics(lambda d: int(d["frames_received"]) == 3)
        assert diag.get("dropped_no_subscribers") == "3" and diag["frames_published"] == "0", diag

        depth_sub = node.create_subscription(
            Image, f"{ns}/depth", lambda m: depths.__setitem__(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec, m),
            q)
        # A round trip instead of a settling sleep: a /diagnostics reader created after depth_sub hears the node
        # only once the node has matched depth_sub too (a participant's readers are announced, and matched, in
        # creation order; Client.wait_ready makes the same argument with a parameter request).
        node.destroy_subscription(diag_sub)
        diagnostics.clear()
        diag_sub = node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
        deadline = time.monotonic() + 10.0
        while node.count_publishers(f"{ns}/depth") == 0 or not diagnostics:
            assert time.monotonic() < deadline, f"the node never matched the depth subscriber\n{process.output()}"
            spin(0.05)
        stamp = 1_700_000_600_000_000_100
        publish(stamp)
        deadline = time.monotonic() + 10.0
        while stamp not in depths:
            assert time.monotonic() < deadline, f"depth-only subscriber got nothing\n{process.output()}"
            spin(0.02)
        np.testing.assert_allclose(depth_array(depths[stamp]), exact_tilted(), rtol=RTOL)
        wait_diagnostics(lambda d: d["frames_published"] == "1")
    finally:
        if depth_sub is not None:
            node.destroy_subscription(depth_sub)
        node.destroy_subscription(diag_sub)
        node.destroy_publisher(pub_image)
        node.destroy_publisher(pub_info)
        code = process.stop()
    assert code == 0, process.output()
