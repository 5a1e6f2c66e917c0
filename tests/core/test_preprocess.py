"""Tests for depth_ros.core.preprocess: input planning (letterbox numbers by hand), normalisation,
and mapping the network output back onto the image (crop + resize, half-pixel centres)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from depth_ros.core.contract import InputSpec
from depth_ros.core.preprocess import (
    InputGeometry,
    OutputShapeError,
    output_to_map,
    plan_input,
    postprocess,
    preprocess,
)


def spec(height: int, width: int, resize: str = "stretch", **kw: Any) -> InputSpec:
    return InputSpec(height=height, width=width, resize=resize, **kw)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- plan_input


def test_stretch_uses_contract_size_or_fixed_size() -> None:
    assert plan_input(480, 640, spec(96, 160), None) == InputGeometry(96, 160, 0, 0, 96, 160, 480, 640)
    # A static model input wins over the contract's numbers.
    assert plan_input(480, 640, spec(96, 160), (120, 200)) == InputGeometry(120, 200, 0, 0, 120, 200, 480, 640)


def test_fixed_keep_aspect_letterbox_horizontal() -> None:
    # 640x480 into 160 wide x 96 high: scale min(96/480, 160/640) = 0.2 -> 128x96, left (160-128)/2 = 16.
    g = plan_input(480, 640, spec(96, 160, "keep_aspect"), (96, 160))
    assert g == InputGeometry(96, 160, 0, 16, 96, 128, 480, 640)
    assert g.scale_x == 0.2 and g.scale_y == 0.2


def test_fixed_keep_aspect_letterbox_vertical() -> None:
    # 640x480 into 160x160: scale 0.25 -> 160x120, top (160-120)/2 = 20.
    g = plan_input(480, 640, spec(160, 160, "keep_aspect"), (160, 160))
    assert g == InputGeometry(160, 160, 20, 0, 120, 160, 480, 640)


def test_fixed_keep_aspect_odd_padding() -> None:
    # 640x480 into 160 x 97: scale 97/480 -> 129.33 -> 129 wide, left (160-129)//2 = 15.
    g = plan_input(480, 640, spec(97, 160, "keep_aspect"), (97, 160))
    assert g == InputGeometry(97, 160, 0, 15, 97, 129, 480, 640)


def test_keep_aspect_without_static_size_uses_contract_as_box_when_multiple_is_one() -> None:
    # Dynamic input: shorter side -> min(contract) = 518; 640*518/480 = 690.67 -> 691.
    g = plan_input(480, 640, spec(518, 518, "keep_aspect"), None)
    assert g == InputGeometry(518, 691, 0, 0, 518, 691, 480, 640)


def test_dynamic_keep_aspect_multiple_of_14_depth_anything_rule() -> None:
    # 640x480, contract 518 (DA-V2): scale 518/480 -> 518 x 690.67; 690.67/14 = 49.33 -> 49*14 = 686.
    g = plan_input(480, 640, spec(518, 518, "keep_aspect", multiple_of=14), None)
    assert g == InputGeometry(518, 686, 0, 0, 518, 686, 480, 640)
    assert g.net_height % 14 == 0 and g.net_width % 14 == 0
    # Portrait: the width is the shorter side.
    g = plan_input(640, 480, spec(518, 518, "keep_aspect", multiple_of=14), None)
    assert (g.net_height, g.net_width) == (686, 518)
    # 1280x720: 518/720 -> 920.89 wide -> 65.78*14 -> 66*14 = 924; 518 high.
    g = plan_input(720, 1280, spec(518, 518, "keep_aspect", multiple_of=14), None)
    assert (g.net_height, g.net_width) == (518, 924)


def test_dynamic_keep_aspect_rounds_up_rather_than_below_the_target() -> None:
    # Contract 510: 480x640 -> 510 x 680; 510/14 = 36.43 -> nearest 504 < 510, so up to 37*14 = 518;
    # 680/14 = 48.57 -> 49*14 = 686 (>= 510, nearest kept).
    g = plan_input(480, 640, spec(510, 510, "keep_aspect", multiple_of=14), None)
    assert (g.net_height, g.net_width) == (518, 686)


def test_dynamic_keep_aspect_never_rounds_to_zero() -> None:
    g = plan_input(4, 400, spec(14, 14, "keep_aspect", multiple_of=14), None)
    assert g.net_height == 14 and g.net_width == 1400


# ----------------------------------------------------------------------------- preprocess


def test_normalisation_and_layout_exact() -> None:
    # value = (p * scale - mean) / std; with scale 1, mean (1,2,3), std (1,2,4) every value is exact in float32.
    rgb = np.array([[[10, 20, 30], [0, 255, 1], [7, 8, 9]],
                    [[100, 50, 25], [3, 2, 1], [255, 0, 128]]], dtype=np.uint8)
    s = spec(2, 3, scale=1.0, mean=(1.0, 2.0, 3.0), std=(1.0, 2.0, 4.0))
    tensor = preprocess(rgb, s, plan_input(2, 3, s, (2, 3)))
    assert tensor.shape == (1, 3, 2, 3) and tensor.dtype == np.float32
    expected = np.empty((1, 3, 2, 3), dtype=np.float32)
    for c, (m, sd) in enumerate(((1.0, 1.0), (2.0, 2.0), (3.0, 4.0))):
        expected[0, c] = (rgb[:, :, c].astype(np.float64) - m) / sd
    np.testing.assert_array_equal(tensor, expected)
    assert tensor[0, 0, 0, 0] == 9.0 and tensor[0, 1, 0, 1] == 126.5 and tensor[0, 2, 1, 2] == 31.25


def test_bgr_channel_order() -> None:
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 255, 51, 0  # R, G, B
    s = spec(2, 2, channels="bgr")  # scale 1/255, mean 0, std 1
    tensor = preprocess(rgb, s, plan_input(2, 2, s, None))
    np.testing.assert_array_equal(tensor[0, 0], 0.0)  # B first
    np.testing.assert_allclose(tensor[0, 1], 0.2, rtol=1e-7)
    np.testing.assert_array_equal(tensor[0, 2], 1.0)  # R last


def test_imagenet_normalisation_values() -> None:
    rgb = np.array([[[0, 128, 255]]], dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    s = spec(1, 1, mean=mean, std=std)
    tensor = preprocess(rgb, s, plan_input(1, 1, s, None))
    expected = [(0 / 255 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (255 / 255 - 0.406) / 0.225]
    np.testing.assert_allclose(tensor[0, :, 0, 0], expected, rtol=0, atol=1e-6)
    assert tensor[0, 0, 0, 0] == pytest.approx(-2.1179039, abs=1e-6)


def test_letterbox_padding_is_zero_and_content_exact() -> None:
    # 8 wide x 4 high into 8x8: scale 1, content rows 2..5, padding rows 0, 1, 6, 7 (zero after normalisation).
    rgb = np.random.default_rng(1).integers(0, 256, (4, 8, 3), dtype=np.uint8)
    s = spec(8, 8, "keep_aspect", scale=1.0, mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 8.0))
    g = plan_input(4, 8, s, (8, 8))
    assert (g.top, g.left, g.content_height, g.content_width) == (2, 0, 4, 8)
    tensor = preprocess(rgb, s, g)
    np.testing.assert_array_equal(tensor[0, :, :2], 0.0)
    np.testing.assert_array_equal(tensor[0, :, 6:], 0.0)
    for c, (m, sd) in enumerate(((10.0, 2.0), (20.0, 4.0), (30.0, 8.0))):
        np.testing.assert_array_equal(tensor[0, c, 2:6], (rgb[:, :, c].astype(np.float64) - m) / sd)


def test_letterbox_padding_zero_with_resize() -> None:
    rgb = np.full((480, 640, 3), 200, dtype=np.uint8)
    s = spec(96, 160, "keep_aspect", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    g = plan_input(480, 640, s, (96, 160))
    tensor = preprocess(rgb, s, g)
    np.testing.assert_array_equal(tensor[0, :, :, :16], 0.0)
    np.testing.assert_array_equal(tensor[0, :, :, 144:], 0.0)
    # A uniform image stays uniform through the area resize.
    for c, (m, sd) in enumerate(zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), strict=True)):
        np.testing.assert_allclose(tensor[0, c, :, 16:144], (200 / 255 - m) / sd, rtol=0, atol=1e-6)


def test_preprocess_does_not_modify_image() -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    before = rgb.copy()
    s = spec(24, 32, channels="bgr")
    preprocess(rgb, s, plan_input(48, 64, s, None))
    np.testing.assert_array_equal(rgb, before)


# ----------------------------------------------------------------------------- postprocess


A, B, C = 0.01, 0.02, 1.0  # prediction = A * column + B * row + C at network resolution


def _affine_at_image_pixels(g: InputGeometry, width: int, height: int,
                            out_res: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Expected value at each depth pixel, and where it is interior (no clamping at the crop border)."""
    u = np.arange(width, dtype=np.float64)
    v = np.arange(height, dtype=np.float64)
    # Depth pixel -> image coordinate (half-pixel) -> network coordinate inside the content region.
    j = (u + 0.5) * (g.image_width / width) * g.scale_x - 0.5 + g.left
    i = (v + 0.5) * (g.image_height / height) * g.scale_y - 0.5 + g.top
    jj, ii = np.meshgrid(j, i)
    # The same position on the model's output grid, and the crop of the content region on it.
    ry, rx = out_res[0] / g.net_height, out_res[1] / g.net_width
    jo, io = (jj + 0.5) * rx - 0.5, (ii + 0.5) * ry - 0.5
    left, top = g.left * rx, g.top * ry
    interior = ((jo >= left) & (jo <= left + g.content_width * rx - 1)
                & (io >= top) & (io <= top + g.content_height * ry - 1))
    return A * jj + B * ii + C, interior


def _net_affine(net_h: int, net_w: int, out_h: int, out_w: int) -> np.ndarray:
    """The affine map sampled at the centres of an out_h x out_w output grid covering the network input."""
    j = (np.arange(out_w) + 0.5) * (net_w / out_w) - 0.5
    i = (np.arange(out_h) + 0.5) * (net_h / out_h) - 0.5
    jj, ii = np.meshgrid(j, i)
    return (A * jj + B * ii + C).astype(np.float32)


@pytest.mark.parametrize(("net", "out_res", "size"), [
    ((96, 160), (96, 160), (640, 480)),  # horizontal letterbox, upsample to the image
    ((160, 160), (160, 160), (640, 480)),  # vertical letterbox
    ((160, 160), (80, 80), (640, 480)),  # model outputs half its input resolution
    ((160, 160), (160, 160), (64, 48)),  # depth image smaller than the content (output_scale 0.1)
    ((48, 64), (48, 64), (640, 480)),  # stretch
], ids=["letterbox_h", "letterbox_v", "half_res_output", "downscale", "stretch"])
def test_postprocess_affine_exact_in_interior(net: tuple[int, int], out_res: tuple[int, int],
                                              size: tuple[int, int]) -> None:
    resize_mode = "stretch" if net == (48, 64) else "keep_aspect"
    g = plan_input(480, 640, spec(net[0], net[1], resize_mode), net)
    prediction = _net_affine(net[0], net[1], *out_res)
    width, height = size
    out = postprocess(prediction, g, width, height)
    assert out.shape == (height, width) and out.dtype == np.float32
    expected, interior = _affine_at_image_pixels(g, width, height, out_res)
    assert interior.mean() > 0.9
    np.testing.assert_allclose(out[interior], expected[interior], rtol=0, atol=2e-5)


def test_postprocess_same_size_is_a_copy_of_the_crop() -> None:
    g = plan_input(480, 640, spec(96, 160, "keep_aspect"), (96, 160))
    prediction = np.random.default_rng(3).random((96, 160)).astype(np.float32)
    out = postprocess(prediction, g, 128, 96)
    np.testing.assert_array_equal(out, prediction[:, 16:144])
    out[0, 0] = -1.0
    assert prediction[0, 16] != -1.0  # never a view into the model output


# ----------------------------------------------------------------------------- output_to_map


@pytest.mark.parametrize("shape", [(1, 1, 5, 7), (1, 5, 7), (5, 7), (1, 1, 1, 5, 7)])
def test_output_to_map_accepted_shapes(shape: tuple[int, ...]) -> None:
    raw = np.arange(35, dtype=np.float64).reshape(shape)
    out = output_to_map(raw)
    assert out.shape == (5, 7) and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.arange(35).reshape(5, 7))


@pytest.mark.parametrize("shape", [(1, 2, 5, 7), (2, 5, 7), (35,), (1, 1, 0, 7), ()])
def test_output_to_map_bad_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(OutputShapeError) as info:
        output_to_map(np.zeros(shape, dtype=np.float32))
    assert str(shape) in str(info.value)
    assert "[1,1,h,w]" in str(info.value)
