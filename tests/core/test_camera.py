"""Tests for depth_ros.core.camera against ground truth computed independently here.

Expected numbers are written out by hand from the rules (image_geometry binning/ROI, cv2.resize
half-pixel centres) and the distortion forward models are re-implemented below, so the tests never
compare the code with its own output.
"""

from __future__ import annotations

import array
import math
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, RegionOfInterest

from depth_ros.core.camera import DISTORTION_MODELS_SUPPORTED, CameraInfoError, CameraModel

# Real RealSense D435 colour camera at 640x480: P all zeros, "Brown Conrady" with zero D.
D435_K = (613.2037, 0.0, 319.9388, 0.0, 613.4193, 239.1830, 0.0, 0.0, 1.0)
# TUM RGB-D freiburg2 colour camera (plumb_bob).
TUM_K = (520.9, 0.0, 325.1, 0.0, 521.0, 249.7, 0.0, 0.0, 1.0)
TUM_D = (0.2312, -0.7849, -0.0033, -0.0001, 0.9172)
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
ZERO_P = (0.0,) * 12


def make_info(
    width: int = 640,
    height: int = 480,
    k: tuple[float, ...] = D435_K,
    p: tuple[float, ...] = ZERO_P,
    d: tuple[float, ...] = (0.0,) * 5,
    model: str = "Brown Conrady",
    r: tuple[float, ...] = IDENTITY,
    binning: tuple[int, int] = (0, 0),
    roi: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> CameraInfo:
    """A real sensor_msgs/CameraInfo; roi is (x_offset, y_offset, width, height)."""
    info = CameraInfo()
    info.header.frame_id = "camera_color_optical_frame"
    info.width = width
    info.height = height
    info.distortion_model = model
    info.d = list(d)
    info.k = list(k)
    info.r = list(r)
    info.p = list(p)
    info.binning_x, info.binning_y = binning
    info.roi = RegionOfInterest(x_offset=roi[0], y_offset=roi[1], width=roi[2], height=roi[3])
    return info


def info_from_fields(fields: dict[str, Any]) -> CameraInfo:
    """Fill a CameraInfo from CameraModel.camera_info_fields() the way a node would."""
    info = CameraInfo()
    for name, value in fields.items():
        if name == "roi":
            info.roi = RegionOfInterest(**value)
        else:
            setattr(info, name, value)
    return info


def pixel_grid(width: int, height: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) float64 grids of the sampled pixels."""
    return np.meshgrid(
        np.arange(0, width, stride, dtype=np.float64),
        np.arange(0, height, stride, dtype=np.float64),
    )


# ---------------------------------------------------------------- hand-written forward models


def plumb_bob_forward(
    x: np.ndarray, y: np.ndarray, d: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Brown-Conrady: radial k1 k2 k3, tangential p1 p2 (ROS/OpenCV order k1 k2 p1 p2 k3)."""
    k1, k2, p1, p2, k3 = d
    r2 = x * x + y * y
    radial = 1.0 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return xd, yd


def rational_forward(
    x: np.ndarray, y: np.ndarray, d: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Rational polynomial: (1+k1 r2+k2 r4+k3 r6)/(1+k4 r2+k5 r4+k6 r6) plus tangential."""
    k1, k2, p1, p2, k3, k4, k5, k6 = d
    r2 = x * x + y * y
    radial = (1.0 + k1 * r2 + k2 * r2**2 + k3 * r2**3) / (1.0 + k4 * r2 + k5 * r2**2 + k6 * r2**3)
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return xd, yd


def equidistant_forward(
    x: np.ndarray, y: np.ndarray, d: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Kannala-Brandt: theta_d = theta (1 + k1 t^2 + k2 t^4 + k3 t^6 + k4 t^8), t = atan(r)."""
    k1, k2, k3, k4 = d
    r = np.hypot(x, y)
    theta = np.arctan(r)
    t2 = theta * theta
    theta_d = theta * (1.0 + k1 * t2 + k2 * t2**2 + k3 * t2**3 + k4 * t2**4)
    scale = np.where(r > 1e-12, theta_d / np.where(r > 1e-12, r, 1.0), 1.0)
    return x * scale, y * scale


def reprojection_error(
    model: CameraModel, forward: Any, k: tuple[float, ...], d: tuple[float, ...]
) -> float:
    """Worst pixel distance between each pixel and its ray pushed through the forward model + K."""
    xs, ys = model.pixel_rays()
    xd, yd = forward(xs.astype(np.float64), ys.astype(np.float64), d)
    fx, cx, fy, cy = k[0], k[2], k[4], k[5]
    u_hat = fx * xd + cx
    v_hat = fy * yd + cy
    u, v = pixel_grid(model.width, model.height)
    return float(np.max(np.hypot(u_hat - u, v_hat - v)))


# ---------------------------------------------------------------- which intrinsics


def test_module_imports_no_ros() -> None:
    code = (
        "import sys, depth_ros.core.camera; "
        "bad = [m for m in ('rclpy', 'sensor_msgs') if m in sys.modules]; "
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_realsense_p_zero_falls_back_to_k() -> None:
    model = CameraModel.from_camera_info(make_info())
    # "Brown Conrady" with all-zero D is no distortion: rectified, intrinsics from K.
    assert model.rectified is True
    assert (model.fx, model.fy, model.cx, model.cy) == (613.2037, 613.4193, 319.9388, 239.1830)
    assert model.size == (640, 480)
    assert model.f_over_w == pytest.approx(613.2037 / 640, rel=1e-15)


def test_nonzero_p_is_used_when_rectified() -> None:
    p = (600.5, 0.0, 322.25, -36.03, 0.0, 601.5, 241.75, 0.0, 0.0, 0.0, 1.0, 0.0)
    model = CameraModel.from_camera_info(make_info(p=p, model="plumb_bob"))
    assert model.rectified is True
    assert (model.fx, model.fy, model.cx, model.cy) == (600.5, 601.5, 322.25, 241.75)


def test_distorted_camera_is_raw_and_uses_k() -> None:
    p = (510.0, 0.0, 320.0, 0.0, 0.0, 511.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    model = CameraModel.from_camera_info(make_info(k=TUM_K, p=p, d=TUM_D, model="plumb_bob"))
    assert model.rectified is False
    assert (model.fx, model.fy, model.cx, model.cy) == (520.9, 521.0, 325.1, 249.7)


def test_forced_rectified_uses_p_and_ignores_d() -> None:
    p = (510.0, 0.0, 320.0, 0.0, 0.0, 511.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    info = make_info(k=TUM_K, p=p, d=TUM_D, model="plumb_bob")
    model = CameraModel.from_camera_info(info, rectified=True)
    assert model.rectified is True
    assert (model.fx, model.fy, model.cx, model.cy) == (510.0, 511.0, 320.0, 240.0)
    xs, ys = model.pixel_rays()
    assert xs[0, 0] == pytest.approx((0.0 - 320.0) / 510.0, abs=1e-6)
    assert ys[479, 0] == pytest.approx((479.0 - 240.0) / 511.0, abs=1e-6)


def test_forced_rectified_tolerates_unknown_model() -> None:
    # D of a model we cannot invert is irrelevant for an already rectified image.
    info = make_info(d=(0.1, 0.2, 0.0, 0.0), model="kannala_brandt")
    model = CameraModel.from_camera_info(info, rectified=True)
    assert model.fx == 613.2037


def test_forced_raw_without_distortion_uses_k() -> None:
    p = (600.0, 0.0, 300.0, 0.0, 0.0, 600.0, 200.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    model = CameraModel.from_camera_info(make_info(p=p, model="plumb_bob"), rectified=False)
    assert model.rectified is False
    assert model.fx == 613.2037
    xs, _ = model.pixel_rays()
    assert xs[0, 10] == pytest.approx((10.0 - 319.9388) / 613.2037, abs=1e-6)


def test_duck_typed_rosbags_like_message() -> None:
    info = SimpleNamespace(
        header=SimpleNamespace(frame_id="cam"),
        width=640,
        height=480,
        distortion_model="plumb_bob",
        d=array.array("d", TUM_D),
        k=np.array(TUM_K),
        r=list(IDENTITY),
        p=tuple(ZERO_P),
        binning_x=0,
        binning_y=0,
        roi=SimpleNamespace(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )
    model = CameraModel.from_camera_info(info)
    assert model.d == TUM_D
    assert model.rectified is False
    assert model.k.dtype == np.float64 and not model.k.flags.writeable


# ---------------------------------------------------------------- binning and ROI


def test_binning_and_roi_are_folded_in() -> None:
    p = (610.0, 0.0, 318.5, -30.5, 0.0, 611.0, 240.5, 0.0, 0.0, 0.0, 1.0, 0.0)
    info = make_info(p=p, binning=(2, 2), roi=(100, 40, 320, 240))
    model = CameraModel.from_camera_info(info)
    assert model.size == (160, 120)
    # P: fx/2, (cx - 100)/2, fy/2, (cy - 40)/2, Tx/2.
    assert model.p[0, 0] == pytest.approx(305.0, abs=1e-12)
    assert model.p[0, 2] == pytest.approx(109.25, abs=1e-12)
    assert model.p[0, 3] == pytest.approx(-15.25, abs=1e-12)
    assert model.p[1, 1] == pytest.approx(305.5, abs=1e-12)
    assert model.p[1, 2] == pytest.approx(100.25, abs=1e-12)
    assert model.p[2].tolist() == [0.0, 0.0, 1.0, 0.0]
    # K: 613.2037/2, (319.9388-100)/2, 613.4193/2, (239.1830-40)/2.
    assert model.k[0, 0] == pytest.approx(306.60185, abs=1e-9)
    assert model.k[0, 2] == pytest.approx(109.9694, abs=1e-9)
    assert model.k[1, 1] == pytest.approx(306.70965, abs=1e-9)
    assert model.k[1, 2] == pytest.approx(99.5915, abs=1e-9)
    assert (model.fx, model.cx) == (pytest.approx(305.0), pytest.approx(109.25))
    fields = model.camera_info_fields()
    assert (fields["width"], fields["height"]) == (160, 120)
    assert (fields["binning_x"], fields["binning_y"]) == (0, 0)
    assert fields["roi"] == {
        "x_offset": 0,
        "y_offset": 0,
        "height": 0,
        "width": 0,
        "do_rectify": False,
    }


def test_anisotropic_binning_and_odd_roi() -> None:
    # ROI 321x243 at (1, 3) binned 2x3: 160x81 pixels (integer division as image_geometry).
    info = make_info(binning=(2, 3), roi=(1, 3, 321, 243))
    model = CameraModel.from_camera_info(info)
    assert model.size == (160, 81)
    assert model.fx == pytest.approx(613.2037 / 2, abs=1e-12)
    assert model.cx == pytest.approx((319.9388 - 1) / 2, abs=1e-12)
    assert model.fy == pytest.approx(613.4193 / 3, abs=1e-12)
    assert model.cy == pytest.approx((239.1830 - 3) / 3, abs=1e-12)
    assert not np.any(model.p)  # an absent P stays absent


def test_zero_binning_and_zero_roi_mean_full_image() -> None:
    plain = CameraModel.from_camera_info(make_info())
    explicit = CameraModel.from_camera_info(make_info(binning=(1, 1), roi=(0, 0, 640, 480)))
    assert plain == explicit
    assert plain.size == (640, 480)


# ---------------------------------------------------------------- scaled_to


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        # 0.5: fx*0.5, (cx+0.5)*0.5-0.5
        ((320, 240), (306.60185, 306.70965, 159.7194, 119.3415)),
        # 0.4 both ways: (319.9388+0.5)*0.4-0.5 = 127.67552, (239.1830+0.5)*0.4-0.5 = 95.3732
        ((256, 192), (245.28148, 245.36772, 127.67552, 95.3732)),
        # non-uniform: sx 0.5, sy 0.4
        ((320, 192), (306.60185, 245.36772, 159.7194, 95.3732)),
    ],
)
def test_scaled_to_by_hand(
    size: tuple[int, int], expected: tuple[float, float, float, float]
) -> None:
    model = CameraModel.from_camera_info(make_info()).scaled_to(*size)
    assert model.size == size
    got = (model.fx, model.fy, model.cx, model.cy)
    assert got == pytest.approx(expected, abs=1e-9)
    assert model.f_over_w == pytest.approx(613.2037 / 640, abs=1e-12)


def test_scaled_to_scales_p_and_keeps_d_r() -> None:
    p = (600.0, 0.0, 322.0, -30.0, 0.0, 601.0, 241.0, 4.0, 0.0, 0.0, 1.0, 0.0)
    r = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    model = CameraModel.from_camera_info(make_info(k=TUM_K, p=p, d=TUM_D, model="plumb_bob", r=r))
    small = model.scaled_to(320, 192)
    expected_p = [
        [300.0, 0.0, (322.0 + 0.5) * 0.5 - 0.5, -15.0],
        [0.0, 240.4, (241.0 + 0.5) * 0.4 - 0.5, 1.6],
        [0.0, 0.0, 1.0, 0.0],
    ]
    np.testing.assert_allclose(small.p, expected_p, atol=1e-12)
    assert small.k[0, 0] == pytest.approx(260.45, abs=1e-12)
    assert small.k[1, 2] == pytest.approx((249.7 + 0.5) * 0.4 - 0.5, abs=1e-12)
    assert small.d == TUM_D
    assert small.r.ravel().tolist() == list(r)
    assert small.rectified is False


def test_scaled_to_same_size_returns_self() -> None:
    model = CameraModel.from_camera_info(make_info())
    assert model.scaled_to(640, 480) is model


@pytest.mark.parametrize("size", [(320, 240), (256, 192), (320, 192), (1000, 700)])
def test_scaled_to_geometry(size: tuple[int, int]) -> None:
    """A 3D point seen at u in the original image is seen at (u+0.5)*s-0.5 after resizing."""
    model = CameraModel.from_camera_info(make_info())
    small = model.scaled_to(*size)
    sx, sy = size[0] / 640, size[1] / 480
    for x, y, z in [(0.3, -0.2, 2.0), (-1.1, 0.7, 1.3), (0.0, 0.0, 5.0)]:
        u, v = model.fx * x / z + model.cx, model.fy * y / z + model.cy
        u2, v2 = small.fx * x / z + small.cx, small.fy * y / z + small.cy
        assert u2 == pytest.approx((u + 0.5) * sx - 0.5, abs=1e-9)
        assert v2 == pytest.approx((v + 0.5) * sy - 0.5, abs=1e-9)


# ---------------------------------------------------------------- pixel rays


def test_pixel_rays_rectified_by_hand() -> None:
    model = CameraModel.from_camera_info(make_info())
    xs, ys = model.pixel_rays()
    assert xs.shape == ys.shape == (480, 640)
    assert xs.dtype == ys.dtype == np.float32
    for v, u in [(0, 0), (239, 320), (479, 639), (100, 17)]:
        assert xs[v, u] == pytest.approx((u - 319.9388) / 613.2037, abs=1e-6)
        assert ys[v, u] == pytest.approx((v - 239.1830) / 613.4193, abs=1e-6)


def test_pixel_rays_stride() -> None:
    model = CameraModel.from_camera_info(make_info())
    xs, ys = model.pixel_rays(stride=3)
    assert xs.shape == ys.shape == (160, 214)  # ceil(480/3), ceil(640/3)
    u, v = pixel_grid(640, 480, 3)
    assert u[0, -1] == 639.0 and v[-1, 0] == 477.0
    np.testing.assert_allclose(xs, (u - 319.9388) / 613.2037, atol=1e-6)
    np.testing.assert_allclose(ys, (v - 239.1830) / 613.4193, atol=1e-6)
    odd = model.scaled_to(7, 5).pixel_rays(stride=2)[0]
    assert odd.shape == (3, 4)


def test_pixel_rays_cached_and_read_only() -> None:
    model = CameraModel.from_camera_info(make_info(k=TUM_K, d=TUM_D, model="plumb_bob"))
    first = model.pixel_rays()
    second = model.pixel_rays()
    assert first[0] is second[0] and first[1] is second[1]
    # An equal model from a fresh message shares the grid: once per CameraInfo, not per frame.
    again = CameraModel.from_camera_info(make_info(k=TUM_K, d=TUM_D, model="plumb_bob"))
    assert again.pixel_rays()[0] is first[0]
    assert model.pixel_rays(stride=2)[0] is not first[0]
    assert not first[0].flags.writeable
    with pytest.raises(ValueError):
        first[0][0, 0] = 1.0


def test_pixel_rays_bad_stride() -> None:
    with pytest.raises(ValueError):
        CameraModel.from_camera_info(make_info()).pixel_rays(stride=0)


def test_plumb_bob_tum_reprojection() -> None:
    model = CameraModel.from_camera_info(make_info(k=TUM_K, d=TUM_D, model="plumb_bob"))
    assert model.rectified is False
    err = reprojection_error(model, plumb_bob_forward, TUM_K, TUM_D)
    print(f"TUM plumb_bob worst reprojection error: {err:.3e} px")
    assert err < 1e-3
    # The corner ray really is distorted: it differs from the pinhole ray by many pixels.
    xs, _ = model.pixel_rays()
    assert abs(xs[0, 0] * 520.9 - (0.0 - 325.1)) > 5.0


def test_rational_polynomial_reprojection() -> None:
    d = (0.12, -0.05, 0.0012, -0.0008, 0.01, 0.08, -0.03, 0.006)
    info = make_info(k=TUM_K, d=d, model="rational_polynomial")
    model = CameraModel.from_camera_info(info)
    assert reprojection_error(model, rational_forward, TUM_K, d) < 1e-3


def test_equidistant_reprojection() -> None:
    k = (300.0, 0.0, 320.0, 0.0, 300.0, 240.0, 0.0, 0.0, 1.0)
    d = (-0.01, 0.002, -0.0005, 0.0001)
    model = CameraModel.from_camera_info(make_info(k=k, d=d, model="equidistant"))
    assert model.rectified is False
    assert reprojection_error(model, equidistant_forward, k, d) < 1e-3


def test_scaled_distorted_model_reprojects() -> None:
    # Distortion lives in normalised coordinates, so a resized raw image keeps the same D.
    small = CameraModel.from_camera_info(make_info(k=TUM_K, d=TUM_D, model="plumb_bob")).scaled_to(
        320, 240
    )
    k_small = tuple(float(x) for x in small.k.ravel())
    assert k_small[0] == pytest.approx(260.45) and k_small[2] == pytest.approx(162.3)
    assert reprojection_error(small, plumb_bob_forward, k_small, TUM_D) < 1e-3


# ---------------------------------------------------------------- validation


def _bad(**changes: Any) -> Any:
    """A valid duck-typed message with some fields replaced (for lengths rclpy refuses)."""
    info = make_info(k=TUM_K, d=TUM_D, model="plumb_bob")
    fields = {
        name: getattr(info, name)
        for name in ("width", "height", "distortion_model", "d", "k", "r", "p")
    }
    fields.update(binning_x=0, binning_y=0, roi=info.roi, header=info.header)
    fields.update(changes)
    return SimpleNamespace(**fields)


@pytest.mark.parametrize(
    ("info", "field"),
    [
        (make_info(width=0), "width"),
        (make_info(height=20000), "height"),
        (make_info(k=(math.nan, *D435_K[1:])), "k"),
        (make_info(p=(math.inf, *ZERO_P[1:])), "p"),
        (make_info(d=(0.0, math.nan, 0.0, 0.0, 0.0)), "d"),
        (make_info(r=(math.nan, *IDENTITY[1:])), "r"),
        (make_info(k=(0.0,) * 9), "all-zero intrinsics"),
        (make_info(k=(-613.2037, *D435_K[1:])), "fx"),
        (make_info(k=(*D435_K[:4], 0.0, *D435_K[5:])), "fy"),
        (make_info(d=(0.1, 0.0, 0.0, 0.0, 0.0), model="Brown Conrady"), "distortion_model"),
        (make_info(roi=(400, 0, 320, 240)), "roi"),
        (make_info(roi=(0, 300, 320, 240)), "roi"),
        (make_info(binning=(641, 1)), "binning_x"),
        (make_info(binning=(1, 481)), "binning_y"),
        (make_info(d=(0.1, 0.01, 0.0), model="plumb_bob"), "d"),
        (_bad(k=list(TUM_K[:8])), "k"),
        (_bad(p=[1.0] * 11), "p"),
        (_bad(r=[1.0] * 10), "r"),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_validation_errors_name_the_field(info: Any, field: str) -> None:
    with pytest.raises(CameraInfoError, match=field):
        CameraModel.from_camera_info(info)


def test_camera_info_error_is_value_error() -> None:
    assert issubclass(CameraInfoError, ValueError)
    assert DISTORTION_MODELS_SUPPORTED == ("plumb_bob", "rational_polynomial", "equidistant")
    with pytest.raises(CameraInfoError, match="plumb_bob"):
        CameraModel.from_camera_info(make_info(d=(0.1,) * 5, model="fov"))


# ---------------------------------------------------------------- export and identity


@pytest.mark.parametrize(
    "info",
    [
        make_info(),
        make_info(k=TUM_K, d=TUM_D, model="plumb_bob"),
        make_info(
            p=(610.0, 0.0, 318.5, -30.5, 0.0, 611.0, 240.5, 0.0, 0.0, 0.0, 1.0, 0.0),
            binning=(2, 2),
            roi=(100, 40, 320, 240),
        ),
    ],
    ids=["d435", "tum", "binned_roi"],
)
def test_camera_info_fields_round_trip(info: CameraInfo) -> None:
    model = CameraModel.from_camera_info(info)
    again = CameraModel.from_camera_info(info_from_fields(model.camera_info_fields()))
    assert_same_geometry(again, model)
    # Exporting is idempotent: a second round trip gives an identical model.
    assert CameraModel.from_camera_info(info_from_fields(again.camera_info_fields())) == again
    # The scaled model exports consistently too.
    small = model.scaled_to(model.width // 2, model.height // 2)
    assert_same_geometry(CameraModel.from_camera_info(info_from_fields(small.camera_info_fields())), small)


def assert_same_geometry(a: CameraModel, b: CameraModel) -> None:
    """Same pixels -> same rays (the exported P/distortion name may be normalised)."""
    assert a.size == b.size and a.rectified == b.rectified
    assert (a.fx, a.fy, a.cx, a.cy) == (b.fx, b.fy, b.cx, b.cy)
    np.testing.assert_array_equal(a.pixel_rays(7)[0], b.pixel_rays(7)[0])
    np.testing.assert_array_equal(a.pixel_rays(7)[1], b.pixel_rays(7)[1])


def test_camera_info_fields_normalise_driver_quirks() -> None:
    """D435 quirks: P all zeros -> [K | 0]; 'Brown Conrady' with zeros -> plumb_bob with zeros."""
    fields = CameraModel.from_camera_info(make_info()).camera_info_fields()
    k = fields["k"]
    assert fields["p"] == [k[0], k[1], k[2], 0.0, k[3], k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0]
    assert fields["distortion_model"] == "plumb_bob"
    assert fields["d"] == [0.0] * 5


def test_camera_info_fields_content() -> None:
    fields = CameraModel.from_camera_info(
        make_info(k=TUM_K, d=TUM_D, model="plumb_bob")
    ).camera_info_fields()
    assert fields["k"] == list(TUM_K)
    assert fields["d"] == list(TUM_D)
    assert fields["r"] == list(IDENTITY)
    # An all-zero P is exported as [K | 0] (depth_image_proc projects with P).
    assert fields["p"] == [*TUM_K[0:3], 0.0, *TUM_K[3:6], 0.0, 0.0, 0.0, 1.0, 0.0]
    assert fields["distortion_model"] == "plumb_bob"
    assert all(type(x) is float for x in fields["k"] + fields["p"] + fields["d"] + fields["r"])


def test_cache_key_distinguishes_models() -> None:
    model = CameraModel.from_camera_info(make_info())
    assert hash(model.cache_key()) == hash(CameraModel.from_camera_info(make_info()).cache_key())
    assert model != model.scaled_to(320, 240)
    raw = CameraModel.from_camera_info(make_info(), rectified=False)
    assert raw != model


# ---------------------------------------------------------------- OpenCV's distortion vector

# A wide-angle rational_polynomial lens: k4..k6 non-zero, so the denominator matters.
RATIONAL_D = (0.12, -0.05, 0.0012, -0.0008, 0.01, 0.08, -0.03, 0.006)
FISHEYE_D = (-0.01, 0.002, -0.0005, 0.0001)
PLUMB_BOB_4 = (-0.12, 0.03, 0.0008, -0.0006)  # k1 k2 p1 p2: a calibration without k3
# A 160x120 camera (TUM's optics at a quarter of the resolution): full undistortion grids stay cheap.
SMALL_K = (130.225, 0.0, 81.15, 0.0, 130.25, 62.3, 0.0, 0.0, 1.0)

# (distortion_model, D as the driver publishes it, the model's own coefficients)
PADDED = [
    ("plumb_bob", (*TUM_D, 0.0), TUM_D),  # 6: five plus a zero
    ("plumb_bob", PLUMB_BOB_4, (*PLUMB_BOB_4, 0.0)),  # 4: k3 absent means k3 = 0
    ("rational_polynomial", (*RATIONAL_D, 0.0), RATIONAL_D),  # 9
    ("rational_polynomial", (*RATIONAL_D, *(0.0,) * 8), RATIONAL_D),  # 16
    ("rational_polynomial", (*TUM_D, 0.0, 0.0, 0.0, *(0.0,) * 8), (*TUM_D, 0.0, 0.0, 0.0)),  # 16, plumb_bob-like
    ("equidistant", (*FISHEYE_D, 0.0), FISHEYE_D),  # 5
]
PADDED_IDS = [f"{model}-{len(d)}" + ("-k456" if any(c[5:]) else "") for model, d, c in PADDED]


@pytest.mark.parametrize(("model_name", "d", "coeffs"), PADDED, ids=PADDED_IDS)
def test_opencv_distortion_is_the_models_own_count(
    model_name: str, d: tuple[float, ...], coeffs: tuple[float, ...]
) -> None:
    model = CameraModel.from_camera_info(make_info(k=TUM_K, d=d, model=model_name))
    assert model.rectified is False and model.d == d  # the message's D itself is kept as sent
    got = model.opencv_distortion
    assert got is not None
    assert got.dtype == np.float64 and got.shape == (len(coeffs),)
    assert got.tolist() == list(coeffs)
    assert not got.flags.writeable
    # D acts on normalised coordinates: a resized image has the same vector.
    scaled = model.scaled_to(320, 240).opencv_distortion
    assert scaled is not None and scaled.tolist() == list(coeffs)


@pytest.mark.parametrize(
    ("info", "rectified"),
    [
        (make_info(), None),  # "Brown Conrady", all zeros: no distortion
        (make_info(k=TUM_K, d=TUM_D, model="plumb_bob"), True),  # rectified image: D ignored
        (make_info(k=TUM_K, d=(*RATIONAL_D, 0.0, 0.5), model="rational_polynomial"), True),
        (make_info(k=TUM_K, d=(0.0,) * 16, model="rational_polynomial"), False),  # raw, but no distortion
        (make_info(d=(0.0,) * 9, model="kannala_brandt"), False),  # unknown name, all zeros
    ],
    ids=["zero-d", "rectified", "rectified-unusable-d", "raw-zero-16", "unknown-zero"],
)
def test_opencv_distortion_is_none_without_distortion(info: CameraInfo, rectified: bool | None) -> None:
    model = CameraModel.from_camera_info(info, rectified=rectified)
    assert model.opencv_distortion is None
    # ... and pixels follow the pinhole model of K (P is all zeros in these messages).
    xs, ys = model.pixel_rays(37)
    u, v = pixel_grid(model.width, model.height, 37)
    np.testing.assert_allclose(xs, (u - model.k[0, 2]) / model.k[0, 0], atol=1e-6)
    np.testing.assert_allclose(ys, (v - model.k[1, 2]) / model.k[1, 1], atol=1e-6)


@pytest.mark.parametrize(
    ("model_name", "d", "count"),
    [
        ("plumb_bob", (*TUM_D, 0.01), 5),
        ("rational_polynomial", (*RATIONAL_D, 0.0, 0.0, 1e-3), 8),
        ("rational_polynomial", (*RATIONAL_D, *(0.0,) * 7, -2e-4), 8),
        ("equidistant", (*FISHEYE_D, 0.1), 4),
        ("rational_polynomial", TUM_D, 8),  # too few
    ],
)
def test_nonzero_coefficient_beyond_the_models_count_is_refused(
    model_name: str, d: tuple[float, ...], count: int
) -> None:
    with pytest.raises(CameraInfoError, match=f"d: distortion_model '{model_name}' needs {count} coefficients"):
        CameraModel.from_camera_info(make_info(k=TUM_K, d=d, model=model_name))


_FORWARD = {"plumb_bob": plumb_bob_forward, "rational_polynomial": rational_forward,
            "equidistant": equidistant_forward}


@pytest.mark.parametrize(("model_name", "d", "coeffs"), PADDED, ids=PADDED_IDS)
def test_pixel_rays_of_a_padded_d_are_those_of_the_models_own_d(
    model_name: str, d: tuple[float, ...], coeffs: tuple[float, ...]
) -> None:
    padded = CameraModel.from_camera_info(make_info(160, 120, k=SMALL_K, d=d, model=model_name))
    canonical = CameraModel.from_camera_info(make_info(160, 120, k=SMALL_K, d=coeffs, model=model_name))
    assert padded != canonical  # different messages, different cache entries: computed twice
    for stride in (1, 3):
        np.testing.assert_array_equal(padded.pixel_rays(stride)[0], canonical.pixel_rays(stride)[0])
        np.testing.assert_array_equal(padded.pixel_rays(stride)[1], canonical.pixel_rays(stride)[1])
    # And they are the right rays: the hand-written forward model puts each back on its pixel.
    assert reprojection_error(padded, _FORWARD[model_name], SMALL_K, coeffs) < 1e-3


def test_rational_denominator_changes_the_rays() -> None:
    """k4..k6 of RATIONAL_D move the corner rays by pixels: the 9/16-value tests exercise them."""
    rational = CameraModel.from_camera_info(
        make_info(160, 120, k=SMALL_K, d=(*RATIONAL_D, *(0.0,) * 8), model="rational_polynomial"))
    numerator_only = CameraModel.from_camera_info(
        make_info(160, 120, k=SMALL_K, d=RATIONAL_D[:5], model="plumb_bob"))
    shift = np.abs(rational.pixel_rays()[0] - numerator_only.pixel_rays()[0]) * SMALL_K[0]
    assert shift.max() > 2.0
