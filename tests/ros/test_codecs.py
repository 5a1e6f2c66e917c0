"""Tests for depth_ros.ros.codecs: every input encoding is produced by an independent encoder here."""

from __future__ import annotations

import array
import math
import struct
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image, PointCloud2, PointField

from depth_ros.ros import codecs
from depth_ros.ros.codecs import (
    MAX_IMAGE_SIDE,
    POINT_FIELD_FLOAT32,
    SUPPORTED_ENCODINGS,
    ImageDecodeError,
    cloud_fields,
    cloud_msg_to_arrays,
    cloud_point_step,
    compressed_to_rgb,
    depth_to_image_data,
    fill_cloud_msg,
    fill_image_msg,
    image_msg_to_array,
    image_to_rgb,
    pack_cloud,
)

H, W = 7, 10  # odd height, and a row size that is not a multiple of anything convenient
PAD = 5  # odd padding so 16-bit rows start misaligned
GARBAGE = 0xAB

RNG = np.random.default_rng(1234)
RGB = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
GREY = RNG.integers(0, 256, (H, W), dtype=np.uint8)
ALPHA = RNG.integers(0, 256, (H, W), dtype=np.uint8)
# 4:2:2 shares chroma between horizontal pixel pairs, so give each pair one colour.
RGB_PAIRS = np.repeat(RGB[:, ::2], 2, axis=1)


# ----------------------------------------------------------------------------------------
# Independent encoders


def widen16(v8: np.ndarray) -> np.ndarray:
    """8-bit values -> 16-bit values that round back to them under /257.

    Adds a random offset in [-128, 128]: v8*257 +- 128 is the widest band that still
    rounds to v8, so this also pins down the rounding rule.
    """
    offset = RNG.integers(-128, 129, v8.shape)
    return np.clip(v8.astype(np.int64) * 257 + offset, 0, 65535).astype(np.uint16)


def bt601_yuv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BT.601 limited-range YUV (the inverse of what OpenCV's YUV 4:2:2 decoders apply)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    y8, u8, v8 = (np.clip(np.rint(c), 0, 255).astype(np.uint8) for c in (y, u, v))
    return y8, u8, v8


def pack_422(rgb: np.ndarray, order: str) -> np.ndarray:
    """Pack pair-wise constant RGB into UYVY or YUYV bytes, shape (h, w*2)."""
    y, u, v = bt601_yuv(rgb)
    h, w = y.shape
    out = np.empty((h, w // 2, 4), dtype=np.uint8)
    u0, v0 = u[:, ::2], v[:, ::2]
    y0, y1 = y[:, ::2], y[:, 1::2]
    planes = (u0, y0, v0, y1) if order == "uyvy" else (y0, u0, y1, v0)
    for i, plane in enumerate(planes):
        out[..., i] = plane
    return out.reshape(h, w * 2)


def encode(encoding: str, bigendian: bool) -> tuple[np.ndarray, np.ndarray]:
    """(row bytes (H, W*bpp) uint8, expected RGB) for one encoding."""
    def u16(v: np.ndarray) -> np.ndarray:
        dt = ">u2" if bigendian else "<u2"
        return v.astype(dt).view(np.uint8).reshape(H, -1)

    def grey3(g: np.ndarray) -> np.ndarray:
        return np.repeat(g[..., None], 3, axis=2)

    bgr = RGB[..., ::-1]
    table: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "rgb8": (RGB, RGB),
        "bgr8": (bgr, RGB),
        "8UC3": (bgr, RGB),
        "rgba8": (np.dstack([RGB, ALPHA]), RGB),
        "bgra8": (np.dstack([bgr, ALPHA]), RGB),
        "8UC4": (np.dstack([bgr, ALPHA]), RGB),
        "mono8": (GREY, grey3(GREY)),
        "8UC1": (GREY, grey3(GREY)),
        "mono16": (u16(widen16(GREY)), grey3(GREY)),
        "16UC1": (u16(widen16(GREY)), grey3(GREY)),
        "rgb16": (u16(widen16(RGB)), RGB),
        "bgr16": (u16(widen16(bgr)), RGB),
        "rgba16": (u16(widen16(np.dstack([RGB, ALPHA]))), RGB),
        "bgra16": (u16(widen16(np.dstack([bgr, ALPHA]))), RGB),
        "yuv422": (pack_422(RGB_PAIRS, "uyvy"), RGB_PAIRS),
        "uyvy": (pack_422(RGB_PAIRS, "uyvy"), RGB_PAIRS),
        "yuv422_yuy2": (pack_422(RGB_PAIRS, "yuyv"), RGB_PAIRS),
        "yuyv": (pack_422(RGB_PAIRS, "yuyv"), RGB_PAIRS),
    }
    pixels, expected = table[encoding]
    return np.ascontiguousarray(pixels).reshape(H, -1), expected


def image_msg(rows: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """Image message from (h, row_bytes) pixel bytes, each row followed by `pad` garbage bytes."""
    h, row_bytes = rows.shape
    padded = np.full((h, row_bytes + pad), GARBAGE, dtype=np.uint8)
    padded[:, :row_bytes] = rows
    msg = Image()
    msg.height = h
    msg.width = W
    msg.encoding = encoding
    msg.is_bigendian = bigendian
    msg.step = row_bytes + pad
    msg.data = array.array("B", padded.tobytes())
    return msg


IS_16BIT = {"mono16", "16UC1", "rgb16", "bgr16", "rgba16", "bgra16"}
IS_YUV = {"yuv422", "uyvy", "yuv422_yuy2", "yuyv"}
CASES = [
    (enc, pad, big)
    for enc in sorted(SUPPORTED_ENCODINGS)
    for pad in (0, PAD)
    for big in ((False, True) if enc in IS_16BIT else (False,))
]


# ----------------------------------------------------------------------------------------
# image_to_rgb


def test_supported_encodings_exact_set() -> None:
    expected = {
        "rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "rgb16", "bgr16", "rgba16",
        "bgra16", "yuv422", "uyvy", "yuv422_yuy2", "yuyv", "8UC1", "8UC3", "8UC4", "16UC1",
    }
    assert expected == SUPPORTED_ENCODINGS


@pytest.mark.parametrize(("encoding", "pad", "bigendian"), CASES)
def test_image_to_rgb_every_encoding(encoding: str, pad: int, bigendian: bool) -> None:
    rows, expected = encode(encoding, bigendian)
    out = image_to_rgb(image_msg(rows, encoding, pad, bigendian))
    assert out.shape == (H, W, 3)
    assert out.dtype == np.uint8
    assert out.flags.c_contiguous
    if encoding in IS_YUV:
        # 4:2:2 plus 8-bit YUV quantisation: within 2 levels of the source.
        assert np.abs(out.astype(int) - expected.astype(int)).max() <= 2
    else:
        np.testing.assert_array_equal(out, expected)


def test_16bit_endianness_matters() -> None:
    """Reading big-endian bytes as little-endian would give a different image."""
    rows, expected = encode("rgb16", bigendian=True)
    np.testing.assert_array_equal(image_to_rgb(image_msg(rows, "rgb16", 0, True)), expected)
    wrong = image_to_rgb(image_msg(rows, "rgb16", 0, False))
    assert not np.array_equal(wrong, expected)


def test_16bit_scaling_endpoints() -> None:
    values = np.array([[0, 128, 129, 385, 386, 65535, 65407, 65406, 257, 256]], dtype="<u2")
    msg = image_msg(values.view(np.uint8).reshape(1, -1), "mono16")
    msg.height = 1
    out = image_to_rgb(msg)[0, :, 0]
    np.testing.assert_array_equal(out, [0, 0, 1, 1, 2, 255, 255, 254, 1, 1])


@pytest.mark.parametrize("kind", ["bytes", "numpy", "array", "list"])
def test_duck_typed_data_containers(kind: str) -> None:
    rows, expected = encode("bgr8", False)
    padded = image_msg(rows, "bgr8", PAD)
    raw = bytes(padded.data)
    data: Any = {
        "bytes": raw,
        "numpy": np.frombuffer(raw, np.uint8).copy(),
        "array": array.array("B", raw),
        "list": list(raw),
    }[kind]
    msg = SimpleNamespace(
        height=H, width=W, encoding="bgr8", is_bigendian=0, step=padded.step, data=data
    )
    np.testing.assert_array_equal(image_to_rgb(msg), expected)


def test_rgb8_output_does_not_alias_message() -> None:
    rows, _ = encode("rgb8", False)
    msg = image_msg(rows, "rgb8")
    data = np.frombuffer(msg.data, np.uint8)
    out = image_to_rgb(msg)
    assert not np.shares_memory(out, data)


def test_rosbags_message() -> None:
    typesys = pytest.importorskip("rosbags.typesys")
    store = typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)
    header = store.types["std_msgs/msg/Header"](
        stamp=store.types["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="cam"
    )
    rows, expected = encode("rgb16", True)
    ref = image_msg(rows, "rgb16", PAD, True)
    msg = store.types["sensor_msgs/msg/Image"](
        header=header, height=H, width=W, encoding="rgb16", is_bigendian=1, step=ref.step,
        data=np.frombuffer(bytes(ref.data), np.uint8),
    )
    np.testing.assert_array_equal(image_to_rgb(msg), expected)


class _Untouchable:
    """Stands in for msg.data where validation must fail before the data is read."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError("data was touched before validation")

    def __len__(self) -> int:
        raise AssertionError("data was touched before validation")

    def __buffer__(self, flags: int) -> memoryview:
        raise AssertionError("data was touched before validation")


def _valid_fields(**overrides: Any) -> SimpleNamespace:
    fields: dict[str, Any] = {
        "height": H,
        "width": W,
        "encoding": "rgb8",
        "is_bigendian": 0,
        "step": W * 3,
        "data": _Untouchable(),
    }
    fields.update(overrides)
    return SimpleNamespace(**fields)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"height": 0}, "height"),
        ({"width": 0}, "width"),
        ({"height": MAX_IMAGE_SIDE + 1}, "height"),
        ({"width": MAX_IMAGE_SIDE + 1}, "width"),
        ({"encoding": "rgb9"}, "encoding"),
        ({"encoding": ""}, "encoding"),
        ({"step": W * 3 - 1}, "step"),
        ({"encoding": "bgra8", "step": W * 3}, "step"),
        ({"encoding": "mono16", "step": W}, "step"),
        ({"encoding": "yuv422", "width": 9, "step": 18}, "width"),
        ({"encoding": "yuyv", "width": 9, "step": 18}, "width"),
    ],
)
def test_validation_before_data(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ImageDecodeError) as info:
        image_to_rgb(_valid_fields(**overrides))
    assert field in str(info.value)


def test_absurd_dimensions_messages() -> None:
    with pytest.raises(ImageDecodeError, match="absurd dimensions") as info:
        image_to_rgb(_valid_fields(height=0))
    assert "height=0" in str(info.value)
    with pytest.raises(ImageDecodeError, match="absurd dimensions") as info:
        image_to_rgb(_valid_fields(), max_pixels=H * W - 1)
    assert "height*width" in str(info.value)


def test_unknown_encoding_lists_supported() -> None:
    with pytest.raises(ImageDecodeError) as info:
        image_to_rgb(_valid_fields(encoding="rgb9"))
    message = str(info.value)
    assert "'rgb9'" in message
    for name in SUPPORTED_ENCODINGS:
        assert name in message


def test_data_too_short() -> None:
    rows, _ = encode("rgb8", False)
    msg = image_msg(rows, "rgb8", PAD)
    msg.data = msg.data[:-1]  # the last row's padding is required too: step*height
    with pytest.raises(ImageDecodeError) as info:
        image_to_rgb(msg)
    message = str(info.value)
    assert "data" in message
    assert str(msg.step * H) in message
    assert str(msg.step * H - 1) in message


def test_encoding_case_and_whitespace_tolerated() -> None:
    rows, expected = encode("bgr8", False)
    np.testing.assert_array_equal(image_to_rgb(image_msg(rows, " BGR8")), expected)


# ----------------------------------------------------------------------------------------
# compressed_to_rgb


def compressed(payload: bytes, fmt: str) -> CompressedImage:
    msg = CompressedImage()
    msg.format = fmt
    msg.data = array.array("B", payload)
    return msg


def imencode(ext: str, image: np.ndarray, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, image, params or [])
    assert ok
    return buf.tobytes()


SMOOTH = np.zeros((24, 40, 3), dtype=np.uint8)
SMOOTH[..., 0] = np.linspace(180, 240, 40, dtype=np.uint8)[None, :]  # red high
SMOOTH[..., 1] = np.linspace(60, 140, 24, dtype=np.uint8)[:, None]
SMOOTH[..., 2] = 30  # blue low: a channel swap would be obvious


def test_png_colour_lossless() -> None:
    msg = compressed(imencode(".png", RGB[..., ::-1]), "rgb8; png compressed bgr8")
    out = compressed_to_rgb(msg)
    assert out.flags.c_contiguous and out.dtype == np.uint8
    np.testing.assert_array_equal(out, RGB)


def test_png_plain_format_and_alpha() -> None:
    bgra = np.dstack([RGB[..., ::-1], ALPHA])
    np.testing.assert_array_equal(compressed_to_rgb(compressed(imencode(".png", bgra), "png")), RGB)


def test_png_mono8() -> None:
    msg = compressed(imencode(".png", GREY), "mono8; png compressed mono8")
    np.testing.assert_array_equal(compressed_to_rgb(msg), np.repeat(GREY[..., None], 3, axis=2))


def test_png_16bit_mono_and_colour() -> None:
    grey16 = widen16(GREY)
    out = compressed_to_rgb(compressed(imencode(".png", grey16), "mono16; png compressed mono16"))
    np.testing.assert_array_equal(out, np.repeat(GREY[..., None], 3, axis=2))
    bgr16 = widen16(RGB[..., ::-1].copy())
    out = compressed_to_rgb(compressed(imencode(".png", bgr16), "bgr16; png compressed bgr16"))
    np.testing.assert_array_equal(out, RGB)


def test_compressed_depth_png_with_header() -> None:
    depth16 = widen16(GREY)
    header = struct.pack("<iff", 0, 0.0, 0.0)  # compressed_depth_image_transport ConfigHeader
    msg = compressed(header + imencode(".png", depth16), "16UC1; compressedDepth png")
    np.testing.assert_array_equal(compressed_to_rgb(msg), np.repeat(GREY[..., None], 3, axis=2))


def test_jpeg_colour_within_tolerance() -> None:
    payload = imencode(".jpg", SMOOTH[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = compressed_to_rgb(compressed(payload, "rgb8; jpeg compressed bgr8"))
    assert out.shape == SMOOTH.shape
    assert np.abs(out.astype(int) - SMOOTH.astype(int)).max() <= 8


def test_compressed_rgb8_content_not_swapped() -> None:
    # A publisher that encoded RGB bytes directly: cv2 hands them back in RGB order.
    png = compressed(imencode(".png", RGB), "rgb8; png compressed rgb8")
    np.testing.assert_array_equal(compressed_to_rgb(png), RGB)
    jpg = compressed(
        imencode(".jpg", SMOOTH, [cv2.IMWRITE_JPEG_QUALITY, 95]), "rgb8; jpeg compressed rgb8"
    )
    assert np.abs(compressed_to_rgb(jpg).astype(int) - SMOOTH.astype(int)).max() <= 8
    # The same bytes labelled bgr8 come out swapped: the suffix is what decides.
    swapped = compressed(imencode(".png", RGB), "rgb8; png compressed bgr8")
    np.testing.assert_array_equal(compressed_to_rgb(swapped), RGB[..., ::-1])


@pytest.mark.parametrize("payload", [b"", b"\x00garbage bytes\xff" * 7, b"\x89PNG\r\n\x1a\n"])
def test_undecodable_compressed(payload: bytes) -> None:
    with pytest.raises(ImageDecodeError) as info:
        compressed_to_rgb(compressed(payload, "jpeg"))
    message = str(info.value)
    assert "could not decode CompressedImage" in message
    assert "'jpeg'" in message
    assert f"{len(payload)} bytes" in message


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_compressed_size_limit_checked_before_decode(ext: str) -> None:
    payload = imencode(ext, RGB)
    assert codecs._peek_compressed_size(np.frombuffer(payload, np.uint8)) == (H, W)
    with pytest.raises(ImageDecodeError, match="height\\*width"):
        compressed_to_rgb(compressed(payload, ext[1:]), max_pixels=H * W - 1)


def test_compressed_bomb_header_rejected() -> None:
    payload = bytearray(imencode(".png", RGB))
    payload[16:24] = struct.pack(">II", 100_000, 100_000)  # IHDR width, height
    with pytest.raises(ImageDecodeError, match="absurd dimensions"):
        compressed_to_rgb(compressed(bytes(payload), "png"))


# ----------------------------------------------------------------------------------------
# depth_to_image_data / fill_image_msg / image_msg_to_array


def test_depth_32fc1_keeps_nan() -> None:
    depth = np.array([[1.5, np.nan, 0.25], [np.nan, 2.0, 10.0]], dtype=np.float32)
    out, step = depth_to_image_data(depth, "32FC1")
    assert out.dtype == np.float32 and out.shape == (2, 3) and step == 12
    assert np.isnan(out[0, 1]) and np.isnan(out[1, 0])
    assert not (out == 0).any()
    np.testing.assert_array_equal(out, depth)


def test_depth_16uc1_millimetres() -> None:
    depth = np.array(
        [[1.2345, np.nan, 0.0, -1.0], [np.inf, 65.535, 65.536, 0.0004]], dtype=np.float32
    )
    out, step = depth_to_image_data(depth, "16UC1")
    assert out.dtype == np.uint16 and step == 8
    assert out[0, 0] == 1235  # 1.2345 m rounds half up
    assert out[0, 1] == 0 and out[0, 2] == 0 and out[0, 3] == 0 and out[1, 0] == 0
    assert out[1, 1] == 65535
    assert out[1, 2] == 0  # beyond 65535 mm is invalid, not clamped
    assert out[1, 3] == 0  # rounds to 0 mm


def test_depth_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="encoding"):
        depth_to_image_data(np.zeros((2, 2), np.float32), "mono8")
    with pytest.raises(ValueError, match="2-D"):
        depth_to_image_data(np.zeros((2, 2, 1), np.float32), "32FC1")


@pytest.mark.parametrize("encoding", ["32FC1", "16UC1"])
def test_depth_round_trip(encoding: str) -> None:
    depth = RNG.uniform(0.2, 30.0, (H, W)).astype(np.float32)
    depth[2, 3] = np.nan
    data, step = depth_to_image_data(depth, encoding)
    msg = Image()
    fill_image_msg(msg, data, encoding)
    assert (msg.height, msg.width, msg.encoding, msg.step) == (H, W, encoding, step)
    assert msg.is_bigendian is False
    assert isinstance(msg.data, array.array) and msg.data.typecode == "B"
    back = image_msg_to_array(msg)
    if encoding == "32FC1":
        assert back.dtype == np.float32
        np.testing.assert_array_equal(back, depth)  # NaN == NaN for assert_array_equal
    else:
        assert back.dtype == np.uint16
        assert back[2, 3] == 0
        expected = np.floor(depth.astype(np.float64) * 1000 + 0.5)
        expected[2, 3] = 0
        np.testing.assert_array_equal(back, expected)


@pytest.mark.parametrize(
    ("encoding", "image"), [("bgr8", RGB[..., ::-1]), ("rgb8", RGB), ("mono8", GREY)]
)
def test_colour_round_trip(encoding: str, image: np.ndarray) -> None:
    msg = Image()
    fill_image_msg(msg, image, encoding)
    channels = 1 if image.ndim == 2 else 3
    assert msg.step == W * channels
    back = image_msg_to_array(msg)
    assert back.flags.c_contiguous
    np.testing.assert_array_equal(back, image)
    if encoding == "bgr8":
        np.testing.assert_array_equal(image_to_rgb(msg), RGB)


def test_fill_image_msg_checks_dtype() -> None:
    with pytest.raises(ValueError, match="16UC1"):
        fill_image_msg(Image(), np.zeros((2, 2), np.float32), "16UC1")
    with pytest.raises(ValueError, match="bgr8"):
        fill_image_msg(Image(), np.zeros((2, 2), np.uint8), "bgr8")


def test_image_msg_to_array_padding_and_endianness() -> None:
    values = RNG.integers(0, 65536, (H, W), dtype=np.uint16)
    msg = image_msg(values.astype(">u2").view(np.uint8).reshape(H, -1), "16UC1", PAD, True)
    back = image_msg_to_array(msg)
    assert back.dtype == np.dtype("uint16") and back.dtype.isnative
    np.testing.assert_array_equal(back, values)
    depth = RNG.uniform(0, 5, (H, W)).astype(np.float32)
    msg = image_msg(depth.astype(">f4").view(np.uint8).reshape(H, -1), "32FC1", PAD, True)
    np.testing.assert_array_equal(image_msg_to_array(msg), depth)


def test_image_msg_to_array_rejects_unknown_and_short() -> None:
    rows, _ = encode("yuyv", False)
    with pytest.raises(ImageDecodeError, match="encoding"):
        image_msg_to_array(image_msg(rows, "yuyv"))
    msg = image_msg(encode("mono8", False)[0], "mono8")
    msg.data = msg.data[:5]
    with pytest.raises(ImageDecodeError, match="data"):
        image_msg_to_array(msg)


# ----------------------------------------------------------------------------------------
# PointCloud2


XYZ = np.array(
    [
        [[1.0, 2.0, 3.0], [-0.5, 0.25, 4.0], [np.nan, np.nan, np.nan]],
        [[0.0, -1.0, 2.5], [7.0, 8.0, 9.0], [1e-3, -2e3, 0.125]],
    ],
    dtype=np.float32,
)
CLOUD_RGB = np.array(
    [[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[1, 2, 3], [0x12, 0x34, 0x56], [255, 255, 255]]],
    dtype=np.uint8,
)


def test_cloud_layout_constants() -> None:
    assert POINT_FIELD_FLOAT32 == 7
    assert cloud_point_step(False) == 16 and cloud_point_step(True) == 32
    assert cloud_fields(False) == [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1)]
    assert cloud_fields(True) == [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("rgb", 16, 7, 1)]


@pytest.mark.parametrize("with_rgb", [False, True])
def test_pack_cloud_bytes(with_rgb: bool) -> None:
    data = pack_cloud(XYZ, CLOUD_RGB if with_rgb else None)
    step = 32 if with_rgb else 16
    assert data.dtype == np.uint8 and data.shape == (2 * 3 * step,)
    raw = data.tobytes()
    for row in range(2):
        for col in range(3):
            base = (row * 3 + col) * step
            x, y, z = struct.unpack_from("<fff", raw, base)
            for got, want in zip((x, y, z), XYZ[row, col], strict=True):
                assert (math.isnan(got) and math.isnan(want)) or got == want
            assert raw[base + 12 : base + 16] == b"\0" * 4
            if with_rgb:
                r, g, b = (int(c) for c in CLOUD_RGB[row, col])
                assert raw[base + 16 : base + 20] == struct.pack("<I", (r << 16) | (g << 8) | b)
                assert raw[base + 20 : base + 32] == b"\0" * 12


def test_pack_cloud_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="xyz"):
        pack_cloud(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="rgb"):
        pack_cloud(XYZ, np.zeros((2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="rgb"):
        pack_cloud(XYZ, np.zeros((3, 2, 3), np.uint8))


@pytest.mark.parametrize("with_rgb", [False, True])
def test_fill_cloud_msg_and_round_trip(with_rgb: bool) -> None:
    msg = PointCloud2()
    rgb = CLOUD_RGB if with_rgb else None
    fill_cloud_msg(msg, XYZ, rgb)
    step = 32 if with_rgb else 16
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (2, 3, step, 3 * step)
    assert msg.is_bigendian is False and msg.is_dense is False
    assert all(isinstance(f, PointField) for f in msg.fields)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == cloud_fields(with_rgb)
    assert isinstance(msg.data, array.array) and len(msg.data) == 2 * 3 * step
    xyz, rgb_back = cloud_msg_to_arrays(msg)
    assert xyz.dtype == np.float32 and xyz.shape == (2, 3, 3)
    np.testing.assert_array_equal(xyz, XYZ)
    if with_rgb:
        assert rgb_back is not None and rgb_back.dtype == np.uint8
        np.testing.assert_array_equal(rgb_back, CLOUD_RGB)
    else:
        assert rgb_back is None


def _foreign_cloud(big: bool) -> SimpleNamespace:
    """A cloud laid out unlike ours: rgb first (UINT32), z/y/x shuffled, padded rows."""
    h, w, point_step, row_step = 2, 3, 20, 3 * 20 + 7
    buf = bytearray(b"\xcd" * (row_step * h))
    e = ">" if big else "<"
    for row in range(h):
        for col in range(w):
            base = row * row_step + col * point_step
            r, g, b = (int(c) for c in CLOUD_RGB[row, col])
            struct.pack_into(e + "I", buf, base, (r << 16) | (g << 8) | b)
            x, y, z = (float(v) for v in XYZ[row, col])
            struct.pack_into(e + "fff", buf, base + 4, z, y, x)
    fields = [
        SimpleNamespace(name="rgb", offset=0, datatype=6, count=1),
        SimpleNamespace(name="z", offset=4, datatype=7, count=1),
        SimpleNamespace(name="y", offset=8, datatype=7, count=1),
        SimpleNamespace(name="x", offset=12, datatype=7, count=1),
    ]
    return SimpleNamespace(
        height=h, width=w, fields=fields, is_bigendian=big, point_step=point_step,
        row_step=row_step, is_dense=False, data=bytes(buf),
    )


@pytest.mark.parametrize("big", [False, True])
def test_cloud_msg_to_arrays_reads_fields(big: bool) -> None:
    xyz, rgb = cloud_msg_to_arrays(_foreign_cloud(big))
    np.testing.assert_array_equal(xyz, XYZ)
    assert rgb is not None
    np.testing.assert_array_equal(rgb, CLOUD_RGB)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"row_step": 59}, "row_step"),
        ({"point_step": 12}, "point_step"),
        ({"data": b"\0" * 10}, "too short"),
    ],
)
def test_cloud_msg_to_arrays_validates(change: dict[str, Any], match: str) -> None:
    msg = _foreign_cloud(False)
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ValueError, match=match):
        cloud_msg_to_arrays(msg)


def test_cloud_msg_to_arrays_missing_or_bad_field() -> None:
    msg = _foreign_cloud(False)
    msg.fields = msg.fields[:3]
    with pytest.raises(ValueError, match="'x'"):
        cloud_msg_to_arrays(msg)
    msg = _foreign_cloud(False)
    msg.fields[1].datatype = 2
    with pytest.raises(ValueError, match="datatype"):
        cloud_msg_to_arrays(msg)


def test_fill_cloud_msg_rosbags() -> None:
    typesys = pytest.importorskip("rosbags.typesys")
    store = typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)
    msg = SimpleNamespace()
    fill_cloud_msg(msg, XYZ, CLOUD_RGB, point_field_cls=store.types["sensor_msgs/msg/PointField"])
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb"]
    msg.data = np.frombuffer(msg.data, np.uint8)  # as rosbags would deliver it
    xyz, rgb = cloud_msg_to_arrays(msg)
    np.testing.assert_array_equal(xyz, XYZ)
    np.testing.assert_array_equal(rgb, CLOUD_RGB)


def test_fill_cloud_msg_reuses_a_buffer_of_the_same_layout() -> None:
    """A reused buffer gives exactly the bytes a fresh one gives (padding stays zero), and is the same object."""
    rng = np.random.default_rng(7)
    first_xyz = rng.standard_normal((3, 5, 3)).astype(np.float32)
    second_xyz = rng.standard_normal((3, 5, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (3, 5, 3), dtype=np.uint8)
    first = PointCloud2()
    buffer = codecs.fill_cloud_msg(first, first_xyz, rgb, point_field_cls=PointField)
    reused, fresh = PointCloud2(), PointCloud2()
    again = codecs.fill_cloud_msg(reused, second_xyz, rgb, point_field_cls=PointField, buffer=buffer)
    codecs.fill_cloud_msg(fresh, second_xyz, rgb, point_field_cls=PointField)
    assert again is buffer
    assert bytes(reused.data) == bytes(fresh.data) == codecs.pack_cloud(second_xyz, rgb).tobytes()
    # A buffer of another size is not used.
    other = codecs.fill_cloud_msg(PointCloud2(), second_xyz[:2], rgb[:2], point_field_cls=PointField, buffer=buffer)
    assert other is not buffer and len(other) == 2 * 5 * 32


@pytest.mark.parametrize("with_rgb", [False, True])
@pytest.mark.parametrize("shape", [(4, 6), (1, 7), (7, 1), (0, 5)])
def test_pack_cloud_from_planes_is_bit_exact(with_rgb: bool, shape: tuple[int, int]) -> None:
    """Planes and (h, w, 3) points give identical bytes; odd floats keep their exact bits; a reused buffer
    gets every field rewritten; strided inputs and single-row/column or empty clouds work."""
    rng = np.random.default_rng(11)
    bits = rng.integers(0, 2**32, (*shape, 3), dtype=np.uint64).astype(np.uint32)
    if bits.size:
        # A signalling NaN payload, -0.0, the smallest denormal and +inf go through untouched.
        bits.reshape(-1)[:4] = [0x7FA00001, 0x80000000, 0x00000001, 0x7F800000]
    xyz = bits.view(np.float32)
    rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8) if with_rgb else None
    step = 32 if with_rgb else 16
    planes = (xyz[:, :, 0], xyz[:, :, 1], xyz[:, :, 2])  # strided views
    earlier = fill_cloud_msg(PointCloud2(), np.full_like(xyz, 7.0), None if rgb is None else 255 - rgb)
    msg = PointCloud2()
    data = fill_cloud_msg(msg, planes, rgb, buffer=earlier)
    assert data is earlier
    assert bytes(data) == pack_cloud(xyz, rgb).tobytes()
    raw = np.frombuffer(data, np.uint8).reshape(-1, step)
    assert np.array_equal(raw[:, :12].copy().view("<u4"), bits.reshape(-1, 3))
    assert not raw[:, 12:16].any()
    if with_rgb:
        assert rgb is not None
        colour = raw[:, 16:20].copy().view("<u4")[:, 0]
        r, g, b = (rgb.reshape(-1, 3)[:, c].astype(np.uint32) for c in range(3))
        assert np.array_equal(colour, (r << 16) | (g << 8) | b)
        assert not raw[:, 20:].any()


def test_pack_cloud_rejects_bad_planes() -> None:
    with pytest.raises(ValueError, match="planes"):
        pack_cloud((np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="planes"):
        pack_cloud((np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float32)))
