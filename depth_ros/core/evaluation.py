"""Depth accuracy against ground truth: alignment, the standard metrics and Depth Pro's boundary F1.

Pure numpy (DESIGN.md §5). All functions take depth in metres with invalid pixels as NaN, 0 or
non-finite; ``valid`` masks are computed here, never assumed.

Metrics (over pixels where the ground truth G is valid and within range and the prediction D is valid):
- AbsRel = mean |D − G| / G;  SqRel = mean (D − G)² / G;  RMSE = sqrt(mean (D − G)²)
- RMSE log = sqrt(mean (ln D − ln G)²)
- SILog = 100 · sqrt(mean(e²) − mean(e)²), e = ln D − ln G (the KITTI benchmark's scale-invariant log
  error, λ = 1, in percent)
- δk = fraction of pixels with max(D/G, G/D) < 1.25^k, k = 1, 2, 3
- coverage = fraction of valid ground-truth pixels where the prediction is valid (reported, so a model
  cannot look good by leaving hard pixels empty)

Alignment (``align``) before scoring:
- ``none``: as predicted (metric models);
- ``median``: D · median(G) / median(D) over the scored pixels;
- ``lstsq_disparity``: least-squares scale and shift in disparity space (relative models, as
  MiDaS / Depth Anything evaluate): 1/G ≈ s · x + t over the scored pixels, x the predicted disparity
  (or 1/D for a depth prediction); D = 1 / (s · x + t), with the aligned disparity clamped below at
  1/max_depth so every pixel is still scored.
Predicted depth is clamped into [min_depth, max_depth] before scoring (the usual NYU/KITTI protocol).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

ALIGN_MODES = ("none", "median", "lstsq_disparity")
METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "silog", "delta1", "delta2", "delta3", "boundary_f1",
                "coverage")
BOUNDARY_THRESHOLDS = np.linspace(1.05, 1.25, 10)


@dataclass(frozen=True)
class Alignment:
    mode: str
    scale: float = 1.0
    shift: float = 0.0


@dataclass(frozen=True)
class FrameMetrics:
    abs_rel: float
    sq_rel: float
    rmse: float
    rmse_log: float
    silog: float
    delta1: float
    delta2: float
    delta3: float
    boundary_f1: float  # NaN when neither map has an occluding contour
    coverage: float
    n_pixels: int  # scored pixels

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def valid_depth(depth: np.ndarray, min_depth: float = 0.0, max_depth: float = math.inf) -> np.ndarray:
    """Finite, positive and within [min_depth, max_depth]."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth) & (depth > 0) & (depth >= min_depth) & (depth <= max_depth)


def align(prediction: np.ndarray, kind: str, truth: np.ndarray, mask: np.ndarray, mode: str,
          max_depth: float = math.inf) -> tuple[np.ndarray, Alignment]:
    """Prediction (``kind`` 'depth' metres or 'disparity') -> aligned depth in metres (float64, NaN invalid)."""
    if mode not in ALIGN_MODES:
        raise ValueError(f"alignment {mode!r}: choose one of {', '.join(ALIGN_MODES)}")
    if kind not in ("depth", "disparity"):
        raise ValueError(f"prediction kind {kind!r}: expected 'depth' or 'disparity'")
    pred = prediction.astype(np.float64)
    if mode == "lstsq_disparity":
        with np.errstate(divide="ignore", invalid="ignore"):
            x = pred if kind == "disparity" else 1.0 / pred
            usable = mask & np.isfinite(x)
            if kind == "depth":
                usable &= pred > 0
        if usable.sum() < 2:
            raise ValueError("fewer than 2 pixels to align")
        a = np.stack([x[usable], np.ones(int(usable.sum()))], axis=1)
        (scale, shift), *_ = np.linalg.lstsq(a, 1.0 / truth[usable].astype(np.float64), rcond=None)
        inverse = scale * x + shift
        floor = 1.0 / max_depth if math.isfinite(max_depth) else 1e-12
        with np.errstate(invalid="ignore", divide="ignore"):
            inverse = np.where(np.isfinite(inverse), np.maximum(inverse, floor), np.nan)
            return 1.0 / inverse, Alignment(mode, float(scale), float(shift))
    if kind == "disparity":
        # A disparity scored without an affine fit: its reciprocal is the depth up to scale and shift.
        with np.errstate(divide="ignore", invalid="ignore"):
            pred = np.where(pred > 0, 1.0 / pred, np.nan)
    if mode == "none":
        return pred, Alignment(mode)
    usable = mask & valid_depth(pred)
    if not usable.any():
        raise ValueError("no pixels to align")
    scale = float(np.median(truth[usable]) / np.median(pred[usable]))
    return pred * scale, Alignment(mode, scale)


def constant_baseline(truth: np.ndarray, mask: np.ndarray, mode: str, min_depth: float = 1e-3,
                      max_depth: float = math.inf) -> FrameMetrics:
    """The metrics of a constant depth map under the same alignment as the model's (a model that knows nothing
    about the image scores this). Median alignment makes it the truth's median; least-squares disparity the
    truth's mean inverse depth; without alignment (metric models) it is median-aligned: a constant in metres has
    no right value of its own. Boundary F1 is not computed (a constant has no edges)."""
    constant = np.ones(truth.shape, np.float64)
    depth, _ = align(constant, "depth", truth, mask, "median" if mode == "none" else mode, max_depth)
    return depth_metrics(depth, truth, min_depth, max_depth, boundary=False)


def depth_metrics(pred: np.ndarray, truth: np.ndarray, min_depth: float = 1e-3, max_depth: float = math.inf,
                  boundary: bool = True) -> FrameMetrics:
    """Standard metrics of an (aligned) depth prediction against ground truth (both metres)."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction is {pred.shape} but ground truth is {truth.shape}")
    gt_valid = valid_depth(truth, min_depth, max_depth)
    pred_valid = np.isfinite(pred) & (pred > 0)
    scored = gt_valid & pred_valid
    n = int(scored.sum())
    coverage = n / max(int(gt_valid.sum()), 1)
    f1 = boundary_f1(pred, truth) if boundary else math.nan
    if n == 0:
        return FrameMetrics(*(math.nan,) * 8, f1, coverage, 0)
    d = np.clip(pred[scored].astype(np.float64), min_depth, max_depth)
    g = truth[scored].astype(np.float64)
    diff = d - g
    log_diff = np.log(d) - np.log(g)
    ratio = np.maximum(d / g, g / d)
    silog_var = max(float(np.mean(log_diff**2) - np.mean(log_diff) ** 2), 0.0)
    return FrameMetrics(
        abs_rel=float(np.mean(np.abs(diff) / g)),
        sq_rel=float(np.mean(diff**2 / g)),
        rmse=float(np.sqrt(np.mean(diff**2))),
        rmse_log=float(np.sqrt(np.mean(log_diff**2))),
        silog=100.0 * math.sqrt(silog_var),
        delta1=float(np.mean(ratio < 1.25)),
        delta2=float(np.mean(ratio < 1.25**2)),
        delta3=float(np.mean(ratio < 1.25**3)),
        boundary_f1=f1,
        coverage=coverage,
        n_pixels=n,
    )


# ----------------------------------------------------------------------------- boundary F1


def occluding_contours(depth: np.ndarray, valid: np.ndarray, t: float) -> tuple[np.ndarray, ...]:
    """Occluding contours of a depth map for the four neighbour directions, at ratio threshold ``t``.

    For a pixel i and its neighbour j in direction k (k = left, up, right, down), there is a contour
    at i in direction k when depth(j) / depth(i) > t: the neighbour is farther by more than the factor
    t, so i lies on the foreground side of a depth discontinuity. Only pairs where both pixels are
    valid count. Returns four boolean maps, one per direction, each shaped like the pairs it covers
    (left/right: h x (w−1), up/down: (h−1) x w), indexed so that left and right (up and down) share
    one array layout: entry [r, c] of 'right' is the pair (c, c+1) with i = c; of 'left' it is i = c+1.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        horizontal = valid[:, 1:] & valid[:, :-1]
        vertical = valid[1:, :] & valid[:-1, :]
        right = horizontal & (depth[:, 1:] / depth[:, :-1] > t)  # i = (r, c), j = (r, c+1) farther
        left = horizontal & (depth[:, :-1] / depth[:, 1:] > t)  # i = (r, c+1), j = (r, c) farther
        down = vertical & (depth[1:, :] / depth[:-1, :] > t)  # i = (r, c), j = (r+1, c) farther
        up = vertical & (depth[:-1, :] / depth[1:, :] > t)  # i = (r+1, c), j = (r, c) farther
    return left, up, right, down


def boundary_f1_at(pred: np.ndarray, truth: np.ndarray, t: float, valid: np.ndarray | None = None) -> float:
    """F1 of predicted vs ground-truth occluding contours at one threshold.

    Per direction k: precision_k = |P_k ∧ G_k| / |P_k|, recall_k = |P_k ∧ G_k| / |G_k|. Precision and
    recall are each averaged over the directions in which the prediction (for precision) or the
    ground truth (for recall) has at least one contour; a direction with contours in one map and none
    in the other scores 0 for the map that has them. F1 = 2 P R / (P + R) (0 when P + R = 0). NaN
    when neither map has any contour at this threshold (nothing to score).

    Where Depth Pro's reference divides by max(count, 1), a direction empty in BOTH maps would score 0
    although both agree; here it is left out instead, so identical maps always score 1.
    """
    if valid is None:
        valid = valid_depth(pred) & valid_depth(truth)
    predicted = occluding_contours(pred, valid, t)
    actual = occluding_contours(truth, valid, t)
    precisions, recalls = [], []
    for p, g in zip(predicted, actual, strict=True):
        n_p, n_g = int(p.sum()), int(g.sum())
        both = int((p & g).sum())
        if n_p:
            precisions.append(both / n_p)
        if n_g:
            recalls.append(both / n_g)
    if not precisions and not recalls:
        return math.nan
    precision = float(np.mean(precisions)) if precisions else 0.0
    recall = float(np.mean(recalls)) if recalls else 0.0
    return 0.0 if precision + recall == 0 else 2.0 * precision * recall / (precision + recall)


def boundary_f1(pred: np.ndarray, truth: np.ndarray, thresholds: np.ndarray = BOUNDARY_THRESHOLDS) -> float:
    """Depth Pro's scale-invariant boundary F1: F1 averaged over t = linspace(1.05, 1.25, 10), weights ∝ t.

    Scale-invariant because contours depend only on depth ratios of neighbours. Thresholds where the
    F1 is undefined (no contour in either map) are left out and the weights renormalised; NaN when
    all are.
    """
    valid = valid_depth(pred) & valid_depth(truth)
    scores = np.array([boundary_f1_at(pred, truth, float(t), valid) for t in thresholds])
    defined = np.isfinite(scores)
    if not defined.any():
        return math.nan
    weights = thresholds[defined] / thresholds[defined].sum()
    return float(np.sum(scores[defined] * weights))


def summarise(frames: list[FrameMetrics]) -> dict[str, dict[str, float]]:
    """Mean and median of each metric over frames (NaN frames left out), and the frame count."""
    out: dict[str, dict[str, float]] = {}
    for name in METRIC_NAMES:
        values = np.array([getattr(f, name) for f in frames], dtype=np.float64)
        values = values[np.isfinite(values)]
        out[name] = {"mean": float(values.mean()) if values.size else math.nan,
                     "median": float(np.median(values)) if values.size else math.nan,
                     "frames": int(values.size)}
    return out


# ----------------------------------------------------------------------------- flying pixels


def network_like_inverse(truth: np.ndarray, net_width: int, net_height: int) -> np.ndarray:
    """What a perfect network at ``net_width`` x ``net_height`` would output: the true inverse depth
    area-averaged down to its resolution over valid pixels only (NaN where under half a cell is valid)."""
    import cv2

    valid = valid_depth(truth)
    inverse = np.zeros(truth.shape, np.float32)
    np.divide(np.float32(1.0), truth, out=inverse, where=valid)
    total = cv2.resize(inverse, (net_width, net_height), interpolation=cv2.INTER_AREA)
    weight = cv2.resize(valid.astype(np.float32), (net_width, net_height), interpolation=cv2.INTER_AREA)
    low = np.full(total.shape, np.nan, np.float32)
    np.divide(total, weight, out=low, where=weight > 0.5)
    return low


def network_like_depth(truth: np.ndarray, net_width: int, net_height: int) -> np.ndarray:
    """``network_like_inverse`` through the pipeline: resized back up bilinearly (as the pipeline resizes the
    prediction) and converted to depth. Invalid -> NaN."""
    import cv2

    height, width = truth.shape
    up = cv2.resize(network_like_inverse(truth, net_width, net_height), (width, height),
                    interpolation=cv2.INTER_LINEAR)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.float32(1.0) / up
    depth[~valid_depth(depth)] = np.nan
    return depth


def flying_pixels(depth: np.ndarray, truth: np.ndarray, radius: int, tolerance: float = 0.05
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(flying, on_surface) masks of the valid pixels of ``depth``: flying when it is more than ``tolerance``
    (relative) from the true depth of every valid pixel within ``radius`` (a (2 radius + 1)^2 window), i.e.
    from every true surface nearby; on a surface otherwise. Pixels with no valid truth nearby are neither."""
    height, width = depth.shape
    truth = np.where(valid_depth(truth), truth, np.nan).astype(np.float32)
    padded = np.pad(truth, radius, constant_values=np.nan)
    best = np.full(depth.shape, np.inf, np.float32)
    with np.errstate(invalid="ignore"):
        for dy in range(2 * radius + 1):
            for dx in range(2 * radius + 1):
                near = padded[dy:dy + height, dx:dx + width]
                error = np.abs(depth - near) / near
                np.fmin(best, error, out=best)  # NaN (no truth there) never wins
    known = valid_depth(depth) & np.isfinite(best)
    return known & (best > tolerance), known & (best <= tolerance)


# ----------------------------------------------------------------------------- temporal stability


def jittered_prediction(truth: np.ndarray, rng: np.random.Generator, scale_jitter: float = 0.03,
                        pixel_noise: float | np.ndarray = 0.02) -> np.ndarray:
    """A noisy per-frame estimate of ``truth``: one global scale error N(0, scale_jitter) for the frame and
    independent per-pixel errors N(0, pixel_noise), both relative; invalid truth -> NaN. ``pixel_noise`` may be
    a map of ``truth``'s shape (noise that varies over the image, ``noise_level_map``)."""
    scale = np.float32(1.0 + rng.normal(0.0, scale_jitter))
    noise = (1.0 + rng.normal(0.0, pixel_noise, truth.shape)).astype(np.float32)
    depth = (truth * scale * noise).astype(np.float32)
    depth[~valid_depth(truth)] = np.nan
    return depth


def noise_level_map(shape: tuple[int, int], rng: np.random.Generator, mean: float = 0.02,
                    log_spread: float = 0.7, cell: int = 40) -> np.ndarray:
    """A per-pixel noise level that varies smoothly over the image, as a network's error does (larger on
    textureless, reflective or distant parts): log-normal with median ``mean`` * exp(-log_spread^2 / 2) (so
    its mean is ``mean``) and log standard deviation ``log_spread``, correlated over ``cell`` pixels."""
    import cv2

    height, width = shape
    coarse = rng.normal(0.0, 1.0, (max(2, height // cell), max(2, width // cell))).astype(np.float32)
    field = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    field /= max(1e-6, float(field.std()))
    return (mean * np.exp(log_spread * field - log_spread ** 2 / 2)).astype(np.float32)


def frame_to_frame_noise(depth: np.ndarray, previous: np.ndarray) -> float:
    """RMS of the log depth change between two frames over the pixels valid in both (0 when none)."""
    both = valid_depth(depth) & valid_depth(previous)
    if not both.any():
        return 0.0
    return float(np.sqrt(np.mean((np.log(depth[both]) - np.log(previous[both])) ** 2)))
