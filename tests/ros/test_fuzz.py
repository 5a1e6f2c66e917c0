"""Fuzzing: malformed Image / CompressedImage / CameraInfo / PointCloud2 into the codecs and the camera
model (property-based), and a stream of random malformed messages into a live node."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles import camera_info, make_contract, rgb_image, save_oracle
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField

from depth_ros.core.camera import CameraInfoError, CameraModel
from depth_ros.ros import codecs

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENCODINGS = sorted(codecs.SUPPORTED_ENCODINGS) + ["", "32FC1", "bayer_rggb8", "RGB8 ", "nv12", "\x00"]
DIMENSIONS = st.one_of(st.integers(0, 40), st.sampled_from([0, 1, 2**31 - 1, 2**32 - 1, 16385, 100000]))


@st.composite
def images(draw: st.DrawFn) -> Image:
    msg = Image()
    msg.height = draw(DIMENSIONS)
    msg.width = draw(DIMENSIONS)
    msg.encoding = draw(st.sampled_from(ENCODINGS))
    msg.is_bigendian = draw(st.integers(0, 1))
    msg.step = draw(st.one_of(st.integers(0, 200), st.sampled_from([2**32 - 1])))
    msg.data = draw(st.binary(max_size=4000))
    return msg


@FUZZ
@given(images())
def test_image_decoder_rejects_or_decodes_never_crashes(msg: Image) -> None:
    try:
        rgb = codecs.image_to_rgb(msg)
    except codecs.ImageDecodeError as exc:
        assert str(exc)  # a message naming the problem
        return
    assert rgb.dtype == np.uint8 and rgb.shape == (msg.height, msg.width, 3) and rgb.flags.c_contiguous


def _encoded(kind: str, rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png" if kind == "png" else ".jpg", rgb)
    assert ok
    return buf.tobytes()


@FUZZ
@given(st.sampled_from(["png", "jpeg"]), st.integers(0, 2000), st.binary(max_size=64),
       st.sampled_from(["jpeg", "png", "rgb8; jpeg compressed bgr8", "16UC1; compressedDepth png", "", "tiff"]))
def test_compressed_decoder_survives_truncation_and_garbage(kind: str, cut: int, junk: bytes, fmt: str) -> None:
    payload = _encoded(kind, np.random.default_rng(cut).integers(0, 256, (24, 32, 3), np.uint8))
    msg = CompressedImage(format=fmt)
    msg.data = payload[: max(0, len(payload) - cut)] + junk
    try:
        rgb = codecs.compressed_to_rgb(msg)
    except codecs.ImageDecodeError as exc:
        assert str(exc)
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3


FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                   st.sampled_from([0.0, -1.0, 1e-300, 1e300, 320.0, 500.0]))


@st.composite
def camera_infos(draw: st.DrawFn) -> CameraInfo:
    info = CameraInfo()
    info.width = draw(DIMENSIONS)
    info.height = draw(DIMENSIONS)
    info.distortion_model = draw(st.sampled_from(["plumb_bob", "rational_polynomial", "equidistant", "", "fov",
                                                  "Brown Conrady"]))
    info.d = draw(st.lists(FLOATS, max_size=9))
    base_k = [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]
    info.k = [draw(FLOATS) if draw(st.booleans()) else v for v in base_k]
    info.p = [draw(FLOATS) if draw(st.booleans()) else v for v in base_k[:3] + [0.0] + base_k[3:6] + [0.0]
              + base_k[6:] + [0.0]]
    info.binning_x = draw(st.integers(0, 8))
    info.binning_y = draw(st.integers(0, 8))
    info.roi.x_offset = draw(st.integers(0, 50))
    info.roi.width = draw(st.integers(0, 50))
    return info


@FUZZ
@given(camera_infos())
def test_camera_model_rejects_or_gives_finite_rays(info: CameraInfo) -> None:
    try:
        camera = CameraModel.from_camera_info(info)
    except CameraInfoError as exc:
        assert str(exc)
        return
    assert math.isfinite(camera.fx) and camera.fx > 0 and math.isfinite(camera.fy) and camera.fy > 0
    if camera.width * camera.height <= 4096:  # keep undistortion of huge images out of the fuzz loop
        rays_x, rays_y = camera.pixel_rays(1)
        assert rays_x.shape == (camera.height, camera.width)
        if camera.rectified:
            assert np.isfinite(rays_x).all() and np.isfinite(rays_y).all()


@FUZZ
@given(st.integers(0, 6), st.integers(0, 6), st.integers(0, 40), st.integers(0, 300),
       st.lists(st.tuples(st.sampled_from(["x", "y", "z", "rgb", "rgba", "i"]), st.integers(0, 40),
                          st.integers(0, 9)), max_size=5),
       st.binary(max_size=2000))
def test_cloud_reader_rejects_or_reads(h: int, w: int, point_step: int, row_step: int,
                                       fields: list[tuple[str, int, int]], data: bytes) -> None:
    msg = PointCloud2(height=h, width=w, point_step=point_step, row_step=row_step)
    msg.fields = [PointField(name=n, offset=o, datatype=t, count=1) for n, o, t in fields]
    msg.data = data
    try:
        xyz, rgb = codecs.cloud_msg_to_arrays(msg)
    except ValueError as exc:
        assert str(exc)
        return
    assert xyz.shape == (h, w, 3)
    assert rgb is None or rgb.shape == (h, w, 3)


# ------------------------------------------------------------------------------- live node


def _random_bad_message(rng: np.random.Generator, good_rgb: np.ndarray) -> tuple[Image, CameraInfo | None, str]:
    """One malformed frame and the skip reason the node must count for it."""
    choice = int(rng.integers(0, 7))
    image = rgb_image(good_rgb)
    info = camera_info(good_rgb.shape[1], good_rgb.shape[0], 500.0, 500.0, 31.5, 23.5)
    if choice == 0:
        image.data = bytes(image.data)[: int(rng.integers(0, len(image.data) - 1))]
        return image, info, "bad_image"
    if choice == 1:
        image.encoding = str(rng.choice(["bayer_grbg8", "nv21", "", "64FC1"]))
        return image, info, "bad_image"
    if choice == 2:
        image.width = int(rng.choice([0, 100000, 2**31]))
        return image, info, "bad_image"
    if choice == 3:
        image.step = int(rng.integers(0, image.width * 3))
        return image, info, "bad_image"
    if choice == 4:
        # Corrupt one intrinsic in K and P alike (the node reads P for rectified input, K otherwise).
        k, p = list(info.k), list(info.p)
        k_index, p_index = [(0, 0), (4, 5), (2, 2), (5, 6)][int(rng.integers(0, 4))]
        bad = [np.nan, np.inf, 0.0, -5.0, 1e-9] if k_index in (0, 4) else [np.nan, -np.inf, 1e12]
        k[k_index] = p[p_index] = float(rng.choice(bad))
        info.k, info.p = k, p
        return image, info, "bad_camera_info"
    if choice == 5:
        # A valid image of a size no CameraInfo has described (the node keeps the latest per size).
        return rgb_image(good_rgb[::2, ::2]), info, "camera_info_size_mismatch"
    payload = io.BytesIO(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    image.data = payload.getvalue()
    return image, info, "bad_image"


def test_live_node_survives_malformed_stream(depth_node: Any, tmp_path: Path) -> None:
    """60 random malformed frames, each followed (sometimes) by a valid one: the node never dies, answers every
    valid frame correctly, and counts each rejection under the right reason."""
    h, w = 48, 64
    contract = make_contract("metric_depth", h, w)
    model = save_oracle(tmp_path, np.full((h, w), 1.75, np.float32), contract, (h, w))
    process, client = depth_node({"model": str(model)})
    rng = np.random.default_rng(20261122)
    good_rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    good_info = camera_info(w, h, 500.0, 500.0, 31.5, 23.5)
    expected: dict[str, int] = {}
    stamp = 1_000_000_000
    for i in range(60):
        image, info, reason = _random_bad_message(rng, good_rgb)
        expected[reason] = expected.get(reason, 0) + 1
        stamp += 1
        client.publish(image, info, stamp)
        client.spin(0.08)  # one at a time: newest-wins must not merge two bad frames into one
        if i % 6 == 5:
            stamp += 1
            out = client.send(rgb_image(good_rgb), good_info, stamp, wanted=("depth",))
            depth = codecs.image_msg_to_array(out.depth)
            np.testing.assert_array_equal(depth, np.float32(1.75))
    assert process.process.poll() is None, process.output()
    diag: dict[str, str] = {}
    for _ in range(20):
        diag = client.latest_diagnostics()
        counted = {reason: int(diag.get(f"skipped_{reason}", 0)) for reason in expected}
        if counted == expected:
            break
    assert counted == expected, (counted, expected, diag)
    received = int(diag["frames_received"])
    accounted = int(diag["frames_published"]) + int(diag["frames_skipped"]) + int(diag["frames_dropped"])
    assert received == accounted == 60 + 10, diag


@pytest.mark.parametrize("payload", [b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_corrupt_compressed_payloads_name_the_problem(payload: bytes) -> None:
    msg = CompressedImage(format="jpeg")
    msg.data = payload
    with pytest.raises(codecs.ImageDecodeError, match="CompressedImage"):
        codecs.compressed_to_rgb(msg)
