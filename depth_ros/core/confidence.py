"""Per-pixel confidence of a depth image: how likely each depth is to be within a few per cent of the truth.

Every cue the node has is turned into an estimate of the pixel's relative depth error (a standard deviation in
log depth), the independent ones add as variances, and the total becomes a confidence in [0, 1]:

    confidence = 1 / (1 + (sigma / tolerance)^2)        (sigma = tolerance -> 0.5; invalid depth -> 0)

The cues (README "Navigation-grade depth: confidence"):
- **local depth range**: half the relative range (farthest / nearest - 1) of the depths within the edge
  filter's window. Large on occlusion edges (a network's smooth ramp lies between two surfaces) and where the prediction
  is locally noisy; near zero on smooth surfaces.
- **temporal consistency** (with the temporal filter on): the RMS of how far each pixel's new depths fell from
  its filtered state (core.temporal, ``TemporalResult.spread``): a pixel that flickers is unreliable.
- **the network's own uncertainty**, where the model contract declares a second output for it
  (``confidence_output``): a relative standard deviation (``sigma`` / ``log_sigma``), or a confidence.
Noise-like terms (the temporal spread, the network's sigma) describe one frame; averaged by the temporal filter
the published depth's noise is lower by ``noise_reduction`` (sqrt(alpha / (2 - alpha)) for blend weight alpha).
"""

from __future__ import annotations

import math

import numpy as np

from depth_ros.core.edges import window_extremes
from depth_ros.core.temporal import TemporalResult

TOLERANCE = 0.05  # relative error at which the confidence is 0.5 (the flying-pixel tolerance of core.edges' bench)


def local_range(depth: np.ndarray, radius: int) -> np.ndarray:
    """farthest / nearest - 1 over the valid depths within ``radius`` pixels of each pixel: the relative depth
    range around it (float32; NaN where ``depth`` is invalid), from the edge filter's window extremes."""
    farthest, nearest_inverse, depths = window_extremes(depth, radius)
    farthest *= nearest_inverse
    farthest -= np.float32(1.0)
    farthest[depths == 0] = np.nan
    return farthest


def noise_reduction(alpha: float) -> float:
    """How much an exponential moving average with weight ``alpha`` lowers independent per-frame noise (std)."""
    alpha = min(1.0, max(0.0, alpha))
    return math.sqrt(alpha / (2.0 - alpha)) if alpha < 1.0 else 1.0


def network_sigma(output: np.ndarray, kind: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A model's uncertainty output (already at the depth image's size) -> (sigma, confidence factor):
    ``sigma`` and ``log_sigma`` give a relative standard deviation, ``confidence`` a factor in [0, 1]."""
    if kind == "sigma":
        return np.abs(output).astype(np.float32, copy=False), None
    if kind == "log_sigma":
        return np.exp(np.clip(output, -20.0, 5.0), dtype=np.float32), None
    if kind == "confidence":
        return None, np.clip(output, 0.0, 1.0).astype(np.float32, copy=False)
    raise ValueError(f"unknown confidence output kind {kind!r}")


def depth_confidence(depth: np.ndarray, radius: int, temporal_spread: np.ndarray | None = None,
                     net_sigma: np.ndarray | None = None, net_confidence: np.ndarray | None = None,
                     reduction: float = 1.0, tolerance: float = TOLERANCE) -> np.ndarray:
    """Confidence in [0, 1] (float32, ``depth``'s shape) of ``depth`` (metres, NaN = invalid -> 0).

    ``radius``: the local-range window (the edge filter's); ``temporal_spread``: RMS log residual per pixel from
    the temporal filter; ``net_sigma`` / ``net_confidence``: the network's uncertainty (``network_sigma``);
    ``reduction``: the temporal filter's noise reduction, applied to the two noise-like terms.
    """
    variance = local_range(depth, radius)
    variance *= np.float32(0.5 / tolerance)
    np.square(variance, out=variance)  # (half range / tolerance)^2, NaN where depth is invalid
    weight = np.float32(reduction / tolerance)
    for term in (temporal_spread, net_sigma):
        if term is not None:
            noise = np.multiply(term, weight, dtype=np.float32)
            np.square(noise, out=noise)
            np.add(variance, noise, out=variance, where=~np.isnan(noise))  # unknown spread: no term
    variance += np.float32(1.0)
    confidence = np.reciprocal(variance, out=variance)
    if net_confidence is not None:
        confidence *= net_confidence
    np.nan_to_num(confidence, copy=False, nan=0.0)
    return confidence


def frame_confidence(depth: np.ndarray, radius: int, stabilised: TemporalResult | None = None,
                     uncertainty: np.ndarray | None = None, uncertainty_kind: str = "log_sigma") -> np.ndarray:
    """The confidence of one published frame (what DepthEstimator and the benchmarks call): ``depth`` after the
    filters, the temporal filter's result for it (None when the filter is off) and the model's uncertainty
    output at the depth image's size (None when it has none)."""
    sigma = factor = None
    if uncertainty is not None:
        sigma, factor = network_sigma(uncertainty, uncertainty_kind)
    spread, reduction = None, 1.0
    if stabilised is not None:
        spread, reduction = stabilised.spread, noise_reduction(stabilised.alpha)
    return depth_confidence(depth, radius, spread, sigma, factor, reduction)


def halves_error(confidence: np.ndarray, error: np.ndarray) -> tuple[float, float, int]:
    """(sum of ``error`` over the more confident half of the pixels where it is finite, sum over the less
    confident half, pixels per half): the test of a confidence (README "confidence"). Ties broken by position."""
    valid = np.isfinite(error) & np.isfinite(confidence)
    values, errors = confidence[valid], error[valid]
    order = np.argsort(-values, kind="stable")
    half = order.size // 2
    return float(errors[order[:half]].sum()), float(errors[order[half: 2 * half]].sum()), int(half)
