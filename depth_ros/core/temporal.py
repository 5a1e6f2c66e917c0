"""Temporal stabilisation of a depth stream: static parts settle, changes are followed at once.

Every frame is estimated from scratch, so a network's depth and its global scale jitter from frame to frame
on a static scene (costmaps mark and clear, clouds shimmer). ``TemporalFilter`` keeps one log-depth image and
blends each new frame into it with weight alpha = 1 - exp(-dt / time_constant), dt in message time (replayed
bags behave like live data). Log depth, so the global scale jitter is one offset shared by all pixels.

What is *not* blended, so changes are followed at once:
- a pixel whose new depth differs from the state by more than ``change_threshold`` (relative, after the
  frame's median offset is taken out): a new object, a door opening; it takes the new depth as it is
  (between ``settle_band`` and ``change_threshold`` its weight rises from alpha to 1);
- the whole image when more than ``reset_fraction`` of its pixels changed (a camera jump, a scene cut),
  when message time goes back or leaps (a looped bag), and when the image size changes: the state restarts
  from the new frame, which is published unfiltered; also when the frame's median change exceeds
  ``max_offset``: smaller median changes are the global scale jitter this filter is for, and are blended.
Pixels invalid in the new frame stay invalid (nothing is invented); their state is kept for when they return.
No odometry: a moving camera's slow depth changes are blended too, a lag of about one time constant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_MEDIAN_STRIDE = 7  # every 7th valid pixel: the median of ~40 k of a 640x480 frame, 4x cheaper


@dataclass(frozen=True)
class TemporalSettings:
    time_constant: float = 0.2  # seconds of message time
    change_threshold: float = 0.08  # relative depth change (log) above which a pixel follows at once
    settle_band: float = 0.03  # relative depth change below which a pixel is blended with weight alpha
    reset_fraction: float = 0.5  # changed share of the pixels above which the whole state restarts
    max_offset: float = 0.15  # a median change (log) beyond it is no scale jitter (5 sigma of 3 %): restart
    max_gap: float = 1.0  # seconds: a longer gap between frames (or time going back) restarts the state


@dataclass(frozen=True)
class TemporalResult:
    depth: np.ndarray  # float32 metres, NaN = invalid
    reset: bool  # the state restarted from this frame (published as it came)
    changed_fraction: float  # of the valid pixels, those that followed the new depth at once
    alpha: float = 1.0  # the blend weight of a settled pixel this frame (1 after a restart: nothing was averaged)
    # When asked (update(track_spread=True)): per pixel, the RMS of recent surprises (log depth, after the frame's
    # median offset) between new depth and state; NaN where not yet known. None after a restart.
    spread: np.ndarray | None = None


class TemporalFilter:
    """The stabilised depth of one camera (not thread-safe: one per camera, updated in frame order)."""

    def __init__(self, settings: TemporalSettings | None = None) -> None:
        self.settings = settings or TemporalSettings()
        self._log_depth: np.ndarray | None = None  # float32, NaN where never seen
        self._stamp: float | None = None
        self._mean_square: np.ndarray | None = None  # the spread's state (mean squared surprise), when tracked

    def reset(self) -> None:
        self._log_depth = None
        self._stamp = None
        self._mean_square = None

    def update(self, depth: np.ndarray, stamp: float, track_spread: bool = False) -> TemporalResult:
        """Blend ``depth`` (float32 metres, NaN = invalid) taken at ``stamp`` (seconds) into the state.

        ``track_spread``: also keep and return each pixel's temporal spread (``TemporalResult.spread``, what the
        confidence output needs; the state starts at the first frame asked for it)."""
        settings = self.settings
        with np.errstate(invalid="ignore", divide="ignore"):
            log_depth = np.log(depth, dtype=np.float32)
        state, last = self._log_depth, self._stamp
        dt = None if last is None else stamp - last
        if state is None or state.shape != depth.shape or dt is None or not 0.0 < dt <= settings.max_gap:
            return self._restart(depth, log_depth, stamp)
        new = np.isfinite(log_depth)
        both = new & np.isfinite(state)
        if np.count_nonzero(both) < 0.01 * depth.size:
            return self._restart(depth, log_depth, stamp)
        residual = log_depth - state
        offset = float(np.median(residual[both][::_MEDIAN_STRIDE]))  # the frame's global scale change
        surprise = np.abs(residual - np.float32(offset))
        changed = both & (surprise > settings.change_threshold)
        changed_fraction = np.count_nonzero(changed) / max(1, np.count_nonzero(both))
        if changed_fraction > settings.reset_fraction or abs(offset) > settings.max_offset:
            return self._restart(depth, log_depth, stamp)
        alpha = np.float32(1.0 - math.exp(-dt / settings.time_constant))
        # The weight of the new frame rises from alpha (noise-sized residuals) to 1 (a change) between
        # settle_band and change_threshold: residuals in between are partly change, partly noise.
        band = np.float32(settings.settle_band)
        ramp = np.clip((surprise - band) / np.float32(max(1e-6, settings.change_threshold - band)), 0.0, 1.0)
        weight = alpha + (np.float32(1.0) - alpha) * ramp
        blended = np.where(both, state + weight * residual, log_depth)  # new pixels: as they came
        np.copyto(state, blended, where=new)  # invalid now: keep what was known
        self._stamp = stamp
        out = np.exp(blended, dtype=np.float32)
        out[~new] = np.nan
        spread = self._track_spread(surprise, both, float(alpha)) if track_spread else None
        return TemporalResult(out, False, float(changed_fraction), float(alpha), spread)

    def _track_spread(self, surprise: np.ndarray, both: np.ndarray, alpha: float) -> np.ndarray:
        """Average the squared surprises with weight alpha (as the depth); returns their root."""
        square = np.square(surprise)
        mean_square = self._mean_square
        if mean_square is None or mean_square.shape != square.shape:
            mean_square = self._mean_square = np.where(both, square, np.float32(np.nan))
        else:
            known = both & np.isfinite(mean_square)
            change = np.subtract(square, mean_square)
            change *= np.float32(alpha)
            np.add(mean_square, change, out=mean_square, where=known)
            np.copyto(mean_square, square, where=both & ~known)  # seen in both for the first time
        return np.sqrt(mean_square)

    def _restart(self, depth: np.ndarray, log_depth: np.ndarray, stamp: float) -> TemporalResult:
        self._log_depth = log_depth  # a new array of this frame's: the state owns it
        self._stamp = stamp
        self._mean_square = None  # what flickered before belongs to another scene or time
        return TemporalResult(depth, True, 1.0)
