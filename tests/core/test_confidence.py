"""The confidence of a depth image (core.confidence) against its definition on analytic inputs, the temporal
filter's spread against the RMS it estimates, and the measured claim: the more confident half of the pixels has
at most half the error of the less confident half on sequences with exact depth and on the real TUM frames."""

from __future__ import annotations

import math

import numpy as np
import pytest

from depth_ros.bags.samples import read_depth_file
from depth_ros.cli.bench_confidence import sequence_halves
from depth_ros.core.confidence import (
    TOLERANCE,
    depth_confidence,
    frame_confidence,
    halves_error,
    local_range,
    network_sigma,
    noise_reduction,
)
from depth_ros.core.edges import window_radius
from depth_ros.core.evaluation import network_like_depth, valid_depth
from depth_ros.core.temporal import TemporalFilter
from depth_ros.resources import package_file


def expected(sigma: float) -> float:
    """The definition: 1 / (1 + (sigma / tolerance)^2)."""
    return 1.0 / (1.0 + (sigma / TOLERANCE) ** 2)


def test_local_range_of_a_step_and_a_plane() -> None:
    depth = np.full((20, 30), 2.0, np.float32)
    depth[:, 15:] = 3.0
    got = local_range(depth, 2)
    np.testing.assert_allclose(got[:, :13], 0.0, atol=1e-7)  # farther than 2 columns from the step: flat
    np.testing.assert_allclose(got[:, 17:], 0.0, atol=1e-7)
    np.testing.assert_allclose(got[:, 13:17], 0.5, rtol=1e-6)  # 3 / 2 - 1 within the window
    depth[4, 4] = np.nan
    got = local_range(depth, 2)
    assert np.isnan(got[4, 4]) and np.isfinite(np.delete(got.ravel(), 4 * 30 + 4)).all()


def test_confidence_follows_its_definition() -> None:
    depth = np.full((20, 30), 2.0, np.float32)
    depth[:, 15:] = 3.0
    depth[0, 0] = np.nan
    sigma = np.full(depth.shape, 0.02, np.float32)
    sigma[10:] = 0.1
    spread = np.full(depth.shape, 0.04, np.float32)
    spread[:, :5] = np.nan  # unknown spread: no term
    got = depth_confidence(depth, 2, spread, sigma, None, reduction=0.5)
    assert got.dtype == np.float32 and got.shape == depth.shape
    assert got[0, 0] == 0.0  # invalid depth
    assert got[2, 2] == pytest.approx(expected(0.5 * 0.02), rel=1e-6)
    assert got[2, 8] == pytest.approx(expected(0.5 * math.hypot(0.02, 0.04)), rel=1e-6)
    assert got[15, 8] == pytest.approx(expected(0.5 * math.hypot(0.1, 0.04)), rel=1e-6)
    edge = math.sqrt((0.5 * 0.5) ** 2 + (0.5 * 0.02) ** 2 + (0.5 * 0.04) ** 2)  # half the 50 % range, not reduced
    assert got[2, 14] == pytest.approx(1.0 / (1.0 + (0.25 ** 2 + (0.5 * 0.02) ** 2 + (0.5 * 0.04) ** 2)
                                              / TOLERANCE ** 2), rel=1e-5)
    assert got[2, 14] == pytest.approx(expected(edge), rel=1e-5)
    factor = np.full(depth.shape, 0.5, np.float32)
    np.testing.assert_allclose(depth_confidence(depth, 2, None, None, factor)[2:, :12], 0.5, rtol=1e-6)


def test_network_sigma_kinds_and_noise_reduction() -> None:
    out = np.array([[-2.0, 0.0]], np.float32)
    np.testing.assert_allclose(network_sigma(out, "log_sigma")[0], np.exp(out), rtol=1e-6)
    np.testing.assert_allclose(network_sigma(out, "sigma")[0], [[2.0, 0.0]])
    np.testing.assert_allclose(network_sigma(np.array([[1.5, 0.3]], np.float32), "confidence")[1], [[1.0, 0.3]])
    with pytest.raises(ValueError, match="kind"):
        network_sigma(out, "variance")
    # An exponential moving average of independent unit noise has variance alpha / (2 - alpha).
    rng = np.random.default_rng(0)
    alpha = 0.3
    average, values = 0.0, []
    for x in rng.normal(0.0, 1.0, 200_000):
        average += alpha * (x - average)
        values.append(average)
    assert np.std(values[100:]) == pytest.approx(noise_reduction(alpha), rel=0.02)
    assert noise_reduction(1.0) == 1.0


def test_temporal_spread_is_the_rms_of_the_surprises() -> None:
    """A static scene whose right third alternates by +-d (log) around its truth every frame. The frame's median
    change is 0 (two thirds do not move), so the left's surprise is 0; on the right the state settles into
    +-a around the truth, a = alpha d / (2 - alpha) (an average of weight alpha of an alternating input), and the
    surprise is d + a every frame: the spread (their RMS) converges to it."""
    temporal = TemporalFilter()
    truth = np.full((40, 60), 2.0, np.float32)
    d = math.log(1.02)
    alpha = 1.0 - math.exp(-(1 / 15.0) / temporal.settings.time_constant)
    result = None
    for index in range(80):
        depth = truth.copy()
        depth[:, 40:] *= np.float32(math.exp(d if index % 2 else -d))
        result = temporal.update(depth, index / 15.0, track_spread=True)
        if index == 0:
            assert result.reset and result.spread is None
    assert result is not None and result.spread is not None and not result.reset
    assert result.alpha == pytest.approx(alpha)
    np.testing.assert_allclose(result.spread[:, :40], 0.0, atol=1e-6)
    np.testing.assert_allclose(result.spread[:, 40:], d + alpha * d / (2 - alpha), rtol=2e-3)
    temporal.reset()
    assert temporal.update(truth, 100.0, track_spread=True).spread is None  # a restart forgets it


def test_halves_error_splits_by_confidence() -> None:
    confidence = np.array([0.9, 0.8, 0.2, 0.1, np.nan], np.float32)
    error = np.array([0.01, 0.03, 0.10, 0.30, 5.0], np.float32)
    top, bottom, half = halves_error(confidence, error)
    assert half == 2 and top == pytest.approx(0.04) and bottom == pytest.approx(0.40)


@pytest.mark.parametrize("spec", [("static", 12, 0.0, 0.0, None, ""), ("ahead 1.0 m/s", 12, 1.0, 0.0, None, ""),
                                  ("object", 14, 0.0, 0.0, 10, "object")])
def test_measured_claim_on_sequences_with_varying_noise(spec: tuple) -> None:
    """README "confidence": with noise that varies over the image (as a network's), the more confident half has
    at most half the (median-aligned) error of the less confident half, per frame and with the temporal filter."""
    for mode in ("per frame", "temporal"):
        halves = sequence_halves(5, spec, "varying", mode)
        assert halves.ratio() <= 0.5, (spec[0], mode, halves)


@pytest.mark.parametrize("index", [1, 2])
def test_measured_claim_on_real_tum_frames(index: int) -> None:
    """A network-like prediction of a real Kinect frame: its confidence finds the occlusion edges (ratio 0.12
    to 0.13 measured; the claim is <= 0.5)."""
    path = package_file(f"data/tum_fr2_desk/depth_{index}.png")
    assert path is not None
    truth = read_depth_file(path, 5000.0)
    depth = network_like_depth(truth, 256, 192)
    confidence = frame_confidence(depth, window_radius(truth.shape[1], 256))
    valid = valid_depth(depth) & valid_depth(truth)
    error = np.where(valid, np.abs(depth - truth) / np.where(valid, truth, 1.0), np.nan)
    top, bottom, half = halves_error(confidence, error)
    assert half > 0.3 * truth.size / 2
    assert top / bottom <= 0.5
