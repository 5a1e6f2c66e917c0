"""Network output -> metric depth (metres along the optical axis), one converter per output kind.

Formulas (DESIGN.md §2): with f_px and W the focal length and width of the image in pixels,
- canonical_inverse_depth: D = (f_px / W) / C
- metric_depth:            D = pred, optionally * (f_px / W) / focal_ratio (training camera's f/W)
- canonical_metric_depth:  D = pred * f_px_at_input / canonical_focal
- relative_disparity:      1 / D = scale * d + shift (scale, shift from a metric reference)
Invalid results (non-positive, non-finite) become NaN (REP-117: NaN = no measurement).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from depth_ros.core.contract import ModelContract


@dataclass(frozen=True)
class MetricContext:
    """Camera facts a conversion may need, for the frame being converted."""

    f_over_w: float  # fx / width of the image (the ratio does not depend on resolution)
    fx_at_input: float  # focal length in pixels at the network input (after its resize)
    disparity_scale: float = 1.0  # relative_disparity: 1/D = scale * d + shift
    disparity_shift: float = 0.0
    focal_rescale: bool = True  # metric_depth: apply the focal-ratio rescale when declared


Converter = Callable[[np.ndarray, ModelContract, MetricContext], np.ndarray]
Fn = TypeVar("Fn")


def registrar(table: dict[str, Fn]) -> Callable[[str], Callable[[Fn], Fn]]:
    """A decorator factory that files converters in ``table`` by output kind (shared by the numpy
    converters here and their torch twins in torch_ops)."""
    def register(kind: str) -> Callable[[Fn], Fn]:
        def wrap(fn: Fn) -> Fn:
            table[kind] = fn
            return fn

        return wrap

    return register


CONVERTERS: dict[str, Converter] = {}
register = registrar(CONVERTERS)


def metric_depth_factor(contract: ModelContract, ctx: MetricContext) -> float:
    """metric_depth: the focal-ratio rescale (f/W of this camera over the training camera's), or 1."""
    if ctx.focal_rescale and contract.focal_ratio is not None:
        return ctx.f_over_w / contract.focal_ratio
    return 1.0


def canonical_metric_factor(contract: ModelContract, ctx: MetricContext) -> float:
    """canonical_metric_depth: focal length at the network input over the canonical focal length."""
    assert contract.canonical_focal is not None  # guaranteed by contract validation
    return ctx.fx_at_input / contract.canonical_focal


def _reciprocal(numerator: float, values: np.ndarray) -> np.ndarray:
    """numerator / values as float32; 0, negative and non-finite inputs give values to_metric drops.

    A plain divide (0.3 ms at 1280x720) rather than a masked one (3 ms): +-0 -> +-inf, +inf -> 0,
    negative -> negative, NaN -> NaN, and none of those survives to_metric's positive-and-finite
    rule (+inf must not pass as 0 m: it would be a valid point at the origin).
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.divide(np.float32(numerator), values, dtype=np.float32)


@register("canonical_inverse_depth")
def _canonical_inverse_depth(pred: np.ndarray, contract: ModelContract, ctx: MetricContext) -> np.ndarray:
    return _reciprocal(ctx.f_over_w, pred)


@register("metric_depth")
def _metric_depth(pred: np.ndarray, contract: ModelContract, ctx: MetricContext) -> np.ndarray:
    return _scaled(pred, metric_depth_factor(contract, ctx))


@register("canonical_metric_depth")
def _canonical_metric_depth(pred: np.ndarray, contract: ModelContract, ctx: MetricContext) -> np.ndarray:
    return _scaled(pred, canonical_metric_factor(contract, ctx))


@register("relative_disparity")
def _relative_disparity(pred: np.ndarray, contract: ModelContract, ctx: MetricContext) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        inverse = pred * np.float32(ctx.disparity_scale)
        if ctx.disparity_shift:
            inverse += np.float32(ctx.disparity_shift)
    return _reciprocal(1.0, inverse)


def _scaled(pred: np.ndarray, factor: float) -> np.ndarray:
    """pred * factor as a new float32 array (the input is never modified)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.multiply(pred, np.float32(factor), dtype=np.float32)


def _nan_where_not(depth: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Set depth to NaN where ``keep`` is False, in place (``keep`` is consumed)."""
    np.logical_not(keep, out=keep)
    np.putmask(depth, keep, np.float32(np.nan))
    return depth


def to_metric(pred: np.ndarray, contract: ModelContract, ctx: MetricContext,
              depth_range: tuple[float, float] = (0.0, math.inf)) -> np.ndarray:
    """Convert a model output (already resized to the depth image size) to metres.

    Returns a new float32 array: positive finite metres within ``depth_range`` (inclusive),
    NaN everywhere else (REP-117). The range costs nothing extra: validity and range are one mask.
    """
    pred = np.asarray(pred, dtype=np.float32)
    depth = CONVERTERS[contract.output_kind](pred, contract, ctx)
    low, high = valid_depth_bounds(*depth_range)
    keep = np.greater_equal(depth, low)
    np.logical_and(keep, np.less_equal(depth, high), out=keep)
    return _nan_where_not(depth, keep)


def apply_depth_range(depth: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """Mark depth outside [min_depth, max_depth] as NaN, in place; returns depth."""
    keep = np.greater_equal(depth, _as_float32_bound(min_depth))
    np.logical_and(keep, np.less_equal(depth, _as_float32_bound(max_depth)), out=keep)
    return _nan_where_not(depth, keep)


def scale_depth(depth: np.ndarray, factor: float) -> np.ndarray:
    """depth *= float32(factor), in place (online scale recovery refining a metric model); returns depth."""
    return np.multiply(depth, np.float32(factor), out=depth)


_SMALLEST_POSITIVE = np.finfo(np.float32).smallest_subnormal
_LARGEST_FINITE = np.finfo(np.float32).max


def valid_depth_bounds(min_depth: float, max_depth: float) -> tuple[np.float32, np.float32]:
    """Inclusive float32 bounds of a valid depth within [min_depth, max_depth]: they exclude 0 and +-inf
    whatever range is asked for, and NaN fails every comparison, so one range test is the whole rule."""
    return (max(_as_float32_bound(min_depth), _SMALLEST_POSITIVE),
            min(_as_float32_bound(max_depth), _LARGEST_FINITE))


def _as_float32_bound(value: float) -> np.float32:
    """A comparison bound as float32 (bounds beyond float32's range become +-inf without a warning)."""
    if abs(value) > float(_LARGEST_FINITE):
        return np.float32(math.copysign(math.inf, value))
    return np.float32(value)
