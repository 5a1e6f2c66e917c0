"""Network output -> metric depth (metres along the optical axis), one converter per output kind.

Formulas (DESIGN.md §2): with f_px and W the focal length and width of the image in pixels,
- canonical_inverse_depth: D = (f_px / W) / C
- metric_depth:            D = pred, optionally * (f_px / W) / focal_ratio (training camera's f/W)
- canonical_metric_depth:  D = pred * f_px_at_input / canonical_focal
- relative_disparity:      1 / D = scale * d + shift (scale, shift from a metric reference)
Invalid results (non-positive, non-finite) become NaN (REP-117: NaN = no measurement).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from depth_ros.contract import ModelContract


@dataclass(frozen=True)
class MetricContext:
    """Camera facts a conversion may need, for the frame being converted."""

    f_over_w: float  # fx / width of the image (the ratio does not depend on resolution)
    fx_at_input: float  # focal length in pixels at the network input (after its resize)
    disparity_scale: float = 1.0  # relative_disparity: 1/D = scale * d + shift
    disparity_shift: float = 0.0
    focal_rescale: bool = True  # metric_depth: apply the focal-ratio rescale when declared


Converter = Callable[[np.ndarray, ModelContract, MetricContext], np.ndarray]
CONVERTERS: dict[str, Converter] = {}


def register(kind: str) -> Callable[[Converter], Converter]:
    def wrap(fn: Converter) -> Converter:
        CONVERTERS[kind] = fn
        return fn

    return wrap


def _reciprocal(numerator: float, values: np.ndarray) -> np.ndarray:
    """numerator / values, NaN where values <= 0 or non-finite (no warnings, float32).

    +inf must not pass: numerator / inf = 0 would be published as a valid point at the origin.
    """
    out = np.full(values.shape, np.nan, dtype=np.float32)
    np.divide(np.float32(numerator), values, out=out, where=(values > 0) & np.isfinite(values))
    return out


@register("canonical_inverse_depth")
def _canonical_inverse_depth(pred: np.ndarray, contract: ModelContract, ctx: MetricContext) -> np.ndarray:
    return _reciprocal(ctx.f_over_w, pred)


@register("metric_depth")
def _metric_depth(pred: np.ndarray, contract: ModelContract, ctx: MetricContext) -> np.ndarray:
    factor = 1.0
    if ctx.focal_rescale and contract.focal_ratio is not None:
        factor = ctx.f_over_w / contract.focal_ratio
    return _positive_or_nan(pred * np.float32(factor))


@register("canonical_metric_depth")
def _canonical_metric_depth(pred: np.ndarray, contract: ModelContract, ctx: MetricContext) -> np.ndarray:
    assert contract.canonical_focal is not None  # guaranteed by contract validation
    return _positive_or_nan(pred * np.float32(ctx.fx_at_input / contract.canonical_focal))


@register("relative_disparity")
def _relative_disparity(pred: np.ndarray, contract: ModelContract, ctx: MetricContext) -> np.ndarray:
    inverse = pred * np.float32(ctx.disparity_scale)
    if ctx.disparity_shift:
        inverse += np.float32(ctx.disparity_shift)
    return _reciprocal(1.0, inverse)


def _positive_or_nan(depth: np.ndarray) -> np.ndarray:
    depth = depth.astype(np.float32, copy=False)
    depth[~(depth > 0)] = np.nan  # also catches NaN
    return depth


def to_metric(pred: np.ndarray, contract: ModelContract, ctx: MetricContext) -> np.ndarray:
    """Convert a model output (already resized to the depth image size) to metres."""
    pred = np.asarray(pred, dtype=np.float32)
    depth = CONVERTERS[contract.output_kind](pred, contract, ctx)
    depth[~np.isfinite(depth)] = np.nan
    return depth


def apply_depth_range(depth: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """Mark depth outside [min_depth, max_depth] as NaN, in place; returns depth."""
    with np.errstate(invalid="ignore"):
        depth[(depth < min_depth) | (depth > max_depth)] = np.nan
    return depth
