"""Tests for depth_ros.core.metric: each output kind against hand-computed metres (DESIGN.md §2)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from depth_ros.core.contract import OUTPUT_KINDS, ModelContract
from depth_ros.core.metric import CONVERTERS, MetricContext, apply_depth_range, to_metric

FX, WIDTH = 500.0, 640
F_OVER_W = FX / WIDTH  # 0.78125, exact in binary


def contract(kind: str, **extra: Any) -> ModelContract:
    return ModelContract.from_dict({
        "output_kind": kind,
        "input": {"height": 48, "width": 64, "resize": "stretch", "channels": "rgb",
                  "scale": 1.0 / 255.0, "mean": [0, 0, 0], "std": [1, 1, 1]},
        **extra,
    })


def ctx(**overrides: Any) -> MetricContext:
    values: dict[str, Any] = {"f_over_w": F_OVER_W, "fx_at_input": 50.0}
    values.update(overrides)
    return MetricContext(**values)


def arr(*values: float) -> np.ndarray:
    return np.array([values], dtype=np.float32)


def test_every_output_kind_has_a_converter() -> None:
    assert set(CONVERTERS) == set(OUTPUT_KINDS)


# ----------------------------------------------------------------------------- canonical_inverse_depth


def test_canonical_inverse_depth_hand_values() -> None:
    # D = (fx / W) / C: (500/640)/0.5 = 1.5625, /0.25 = 3.125, /0.78125 = 1, /2 = 0.390625 (all exact).
    depth = to_metric(arr(0.5, 0.25, 0.78125, 2.0), contract("canonical_inverse_depth"), ctx())
    assert depth.dtype == np.float32
    np.testing.assert_array_equal(depth, arr(1.5625, 3.125, 1.0, 0.390625))


def test_canonical_inverse_depth_does_not_depend_on_resolution() -> None:
    # Same camera at half resolution: fx 250, W 320 -> same f/W, same depth.
    c = contract("canonical_inverse_depth")
    full = to_metric(arr(0.1, 0.3), c, ctx(f_over_w=500.0 / 640))
    half = to_metric(arr(0.1, 0.3), c, ctx(f_over_w=250.0 / 320))
    np.testing.assert_array_equal(full, half)
    np.testing.assert_allclose(full, arr(7.8125, 2.6041667), rtol=1e-6)


# ----------------------------------------------------------------------------- metric_depth


def test_metric_depth_without_focal_ratio_is_identity() -> None:
    depth = to_metric(arr(0.5, 2.0, 19.75), contract("metric_depth"), ctx())
    np.testing.assert_array_equal(depth, arr(0.5, 2.0, 19.75))


def test_metric_depth_focal_rescale_on_and_off() -> None:
    # Trained at f/W = 0.5; this camera has 0.78125: factor 1.5625 -> 2 m becomes 3.125 m.
    c = contract("metric_depth", focal_ratio=0.5)
    np.testing.assert_array_equal(to_metric(arr(2.0, 0.64), c, ctx()), arr(3.125, 1.0))
    np.testing.assert_array_equal(to_metric(arr(2.0, 0.64), c, ctx(focal_rescale=False)), arr(2.0, 0.64))


def test_metric_depth_matching_camera_is_unchanged() -> None:
    c = contract("metric_depth", focal_ratio=F_OVER_W)
    np.testing.assert_array_equal(to_metric(arr(1.25, 7.5), c, ctx()), arr(1.25, 7.5))


# ----------------------------------------------------------------------------- canonical_metric_depth


def test_canonical_metric_depth_uses_focal_at_input() -> None:
    # Metric3D: D = pred * fx_at_input / canonical_focal = pred * 250 / 1000.
    c = contract("canonical_metric_depth", canonical_focal=1000.0)
    np.testing.assert_array_equal(to_metric(arr(4.0, 10.0, 1.0), c, ctx(fx_at_input=250.0)), arr(1.0, 2.5, 0.25))
    # f/W of the original image is irrelevant for this kind: only the focal at the network input counts.
    np.testing.assert_array_equal(to_metric(arr(4.0), c, ctx(fx_at_input=250.0, f_over_w=3.0)), arr(1.0))
    np.testing.assert_array_equal(to_metric(arr(4.0), c, ctx(fx_at_input=500.0)), arr(2.0))


# ----------------------------------------------------------------------------- relative_disparity


def test_relative_disparity_default_is_reciprocal() -> None:
    np.testing.assert_array_equal(to_metric(arr(0.5, 4.0), contract("relative_disparity"), ctx()), arr(2.0, 0.25))


def test_relative_disparity_scale_and_shift() -> None:
    # 1/D = 2 d + 0.5: d = 0.75 -> D = 1/2 = 0.5; d = 0 -> D = 1/0.5 = 2; d = 1.75 -> D = 1/4 = 0.25.
    c = contract("relative_disparity")
    depth = to_metric(arr(0.75, 0.0, 1.75), c, ctx(disparity_scale=2.0, disparity_shift=0.5))
    np.testing.assert_array_equal(depth, arr(0.5, 2.0, 0.25))


def test_relative_disparity_non_positive_inverse_is_nan() -> None:
    # 1/D = 2 d - 1: d = 0.5 -> 0, d = 0.25 -> -0.5: no metric depth -> NaN.
    c = contract("relative_disparity")
    depth = to_metric(arr(0.5, 0.25, 1.0), c, ctx(disparity_scale=2.0, disparity_shift=-1.0))
    assert np.isnan(depth[0, 0]) and np.isnan(depth[0, 1])
    assert depth[0, 2] == 1.0


# ----------------------------------------------------------------------------- invalid predictions


KINDS_AND_EXTRA = [
    ("canonical_inverse_depth", {}),
    ("metric_depth", {}),
    ("metric_depth", {"focal_ratio": 0.5}),
    ("canonical_metric_depth", {"canonical_focal": 1000.0}),
    ("relative_disparity", {}),
]


@pytest.mark.parametrize(("kind", "extra"), KINDS_AND_EXTRA, ids=[f"{k}{'+' if e else ''}" for k, e in KINDS_AND_EXTRA])
def test_invalid_predictions_become_nan_never_zero(kind: str, extra: dict[str, Any]) -> None:
    pred = arr(0.0, -0.0, -1.0, np.nan, np.inf, -np.inf, 1.0)
    depth = to_metric(pred, contract(kind, **extra), ctx())
    assert np.isnan(depth[0, :6]).all(), f"{kind}: {depth}"
    assert np.isfinite(depth[0, 6]) and depth[0, 6] > 0
    assert not (depth == 0).any()


@pytest.mark.parametrize(("kind", "extra"), KINDS_AND_EXTRA, ids=[f"{k}{'+' if e else ''}" for k, e in KINDS_AND_EXTRA])
@pytest.mark.filterwarnings("error")
def test_overflow_to_infinity_becomes_nan_without_warnings(kind: str, extra: dict[str, Any]) -> None:
    """Extreme but finite outputs whose conversion overflows float32 (or underflows to 0) are invalid."""
    tiny = np.finfo(np.float32).smallest_subnormal
    pred = arr(3e38, tiny, 1.0)
    depth = to_metric(pred, contract(kind, **extra), ctx(f_over_w=2.0, fx_at_input=5000.0))
    assert np.isfinite(depth[0, 2]) and depth[0, 2] > 0
    finite = depth[np.isfinite(depth)]
    assert (finite > 0).all() and np.isfinite(depth).sum() >= 1
    assert not np.isinf(depth).any()


@pytest.mark.parametrize(("kind", "extra"), KINDS_AND_EXTRA, ids=[f"{k}{'+' if e else ''}" for k, e in KINDS_AND_EXTRA])
def test_to_metric_leaves_prediction_untouched(kind: str, extra: dict[str, Any]) -> None:
    pred = np.array([[0.0, 2.0, -1.0, np.nan]], dtype=np.float32)
    before = pred.copy()
    to_metric(pred, contract(kind, **extra), ctx())
    np.testing.assert_array_equal(pred, before)


def test_float64_prediction_gives_float32_depth() -> None:
    depth = to_metric(np.array([[0.5, 0.25]], dtype=np.float64), contract("canonical_inverse_depth"), ctx())
    assert depth.dtype == np.float32 and depth.shape == (1, 2)
    np.testing.assert_array_equal(depth, arr(1.5625, 3.125))


# ----------------------------------------------------------------------------- depth range


def test_apply_depth_range_inclusive_boundaries_in_place() -> None:
    depth = arr(0.5, 2.0, np.nextafter(np.float32(0.5), np.float32(0)), np.nextafter(np.float32(2.0), np.float32(3)),
                1.0, np.nan)
    out = apply_depth_range(depth, 0.5, 2.0)
    assert out is depth
    assert depth[0, 0] == 0.5 and depth[0, 1] == 2.0 and depth[0, 4] == 1.0
    assert np.isnan(depth[0, 2]) and np.isnan(depth[0, 3]) and np.isnan(depth[0, 5])


def test_apply_depth_range_infinite_max() -> None:
    depth = arr(0.05, 0.1, 1e6)
    apply_depth_range(depth, 0.1, np.inf)
    assert np.isnan(depth[0, 0]) and depth[0, 1] == np.float32(0.1) and depth[0, 2] == np.float32(1e6)


@pytest.mark.parametrize(("kind", "extra"), KINDS_AND_EXTRA, ids=[f"{k}{'+' if e else ''}" for k, e in KINDS_AND_EXTRA])
def test_to_metric_with_range_equals_conversion_then_range(kind: str, extra: dict[str, Any]) -> None:
    """The fused range gives exactly to_metric followed by apply_depth_range, boundaries included."""
    rng = np.random.default_rng(3)
    pred = rng.uniform(-0.5, 4.0, (30, 40)).astype(np.float32)
    pred.reshape(-1)[:6] = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-30]
    c, context = contract(kind, **extra), ctx()
    separate = to_metric(pred, c, context)
    low, high = float(np.nanpercentile(separate, 20)), float(np.nanpercentile(separate, 80))
    apply_depth_range(separate, low, high)
    fused = to_metric(pred, c, context, (low, high))
    np.testing.assert_array_equal(fused, separate)
    assert np.isfinite(fused).sum() > 0.5 * fused.size * 0.5
    assert np.nanmin(fused) == np.float32(low) or np.nanmin(fused) > np.float32(low)
    # A range of [0, inf] still never lets 0 or inf through.
    wide = to_metric(pred, c, context, (0.0, np.inf))
    assert not (wide == 0).any() and not np.isinf(wide).any()
