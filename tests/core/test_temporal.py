"""The temporal filter (core.temporal) on sequences with exact depth (synthetic.generator.sequence): the claims
of `depth-ros bench --temporal` at a small size, and the reset rules. Expected values are the truth."""

from __future__ import annotations

import numpy as np
import pytest

from depth_ros.cli.bench_temporal import moving, static_noise, sudden_change
from depth_ros.core.temporal import TemporalFilter, TemporalSettings

SIZE = (160, 120)
RATE = 15.0


@pytest.mark.parametrize("seed", [5, 11])
def test_a_static_camera_settles_three_times_quieter(seed: int) -> None:
    raw, filtered = static_noise(seed, TemporalSettings(), RATE, SIZE)
    assert raw > 0.03  # 3 % scale jitter + 2 % pixel noise: ~5 % frame to frame
    assert filtered * 3.0 <= raw, (raw, filtered)


@pytest.mark.parametrize("kind", ["object", "cut"])
def test_a_sudden_change_is_followed_by_the_second_frame(kind: str) -> None:
    for seed in (5, 11):
        scores = sudden_change(seed, TemporalSettings(), RATE, SIZE, kind)
        assert scores[2] <= 0.05, (seed, scores)


@pytest.mark.parametrize("motion", [(0.5, 0.0), (1.0, 0.0), (0.5, 0.3)])
def test_a_moving_camera_is_no_worse_than_per_frame(motion: tuple[float, float]) -> None:
    for seed in (5, 11):
        raw, filtered = moving(seed, TemporalSettings(), RATE, SIZE, *motion)
        assert filtered <= raw + 0.01, (seed, raw, filtered)


def plane(value: float, shape: tuple[int, int] = (8, 10)) -> np.ndarray:
    return np.full(shape, value, np.float32)


def test_the_first_frame_and_every_restart_are_published_as_they_came() -> None:
    temporal = TemporalFilter(TemporalSettings(time_constant=0.2))
    first = temporal.update(plane(2.0), 0.0)
    assert first.reset and first.depth is not None
    np.testing.assert_array_equal(first.depth, 2.0)
    # 4 % farther, dt = 0.1 s: between the settle band (3 %) and a change (8 %), so weighted above alpha but
    # below 1: the output lies strictly between the two frames.
    blended = temporal.update(plane(2.08), 0.1)
    assert not blended.reset and (blended.depth > 2.0).all() and (blended.depth < 2.08).all()
    # 1 % farther is noise-sized: exactly the alpha blend in log depth.
    settled = TemporalFilter(TemporalSettings(time_constant=0.2))
    settled.update(plane(2.0), 0.0)
    alpha = 1.0 - np.exp(-0.5)
    out = settled.update(plane(2.02), 0.1).depth
    np.testing.assert_allclose(out, np.exp(np.log(2.0) + alpha * np.log(1.01)), rtol=1e-6)
    for stamp, depth in ((0.05, plane(2.02)), (5.0, plane(2.02)), (5.1, plane(2.02, (8, 12)))):
        # time went back; a gap beyond max_gap (a looped or paused bag); a new image size
        result = temporal.update(depth, stamp)
        assert result.reset
        np.testing.assert_array_equal(result.depth, depth)


def test_changed_pixels_follow_at_once_and_invalid_stay_invalid() -> None:
    temporal = TemporalFilter()
    temporal.update(plane(3.0), 0.0)
    frame = plane(3.0)
    frame[2:4, 2:4] = 1.0  # an object appears
    frame[6, 6] = np.nan  # no depth there now
    result = temporal.update(frame, 0.1)
    assert not result.reset and result.changed_fraction == pytest.approx(4 / 79)
    np.testing.assert_array_equal(result.depth[2:4, 2:4], 1.0)
    assert np.isnan(result.depth[6, 6]) and np.isfinite(np.delete(result.depth.ravel(), 66)).all()
    cut = temporal.update(plane(1.5), 0.2)  # everything changed: a cut, published as it came
    assert cut.reset
    np.testing.assert_array_equal(cut.depth, 1.5)
