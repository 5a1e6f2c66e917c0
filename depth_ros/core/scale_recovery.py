"""Online scale recovery: fit the model's inverse depth to a metric reference, robustly, over time.

A `relative_disparity` model predicts d with 1/D = s · d + t for an (s, t) unknown per image
(DESIGN.md §2). Given metric reference depths R at some pixels, the fit is done in inverse-depth
space, where the relation is affine:

    1/R ≈ s · x + t      (x = d for relative models; x = 1/D_model and t = 0 for metric models,
                          whose refinement is a scale-only correction D' = D / s)

References (`scale_source`):
- `depth`: a sparse or dense metric depth image registered to the camera (RGB-D sensor, projected
  LiDAR): 32FC1 metres (NaN/0/inf invalid) or 16UC1 millimetres (0 invalid), any resolution with
  the camera's field of view; each valid pixel maps to the nearest pixel of the depth image.
- `points`: a PointCloud2 in the camera's optical frame, projected with the camera model
  (distortion included for raw images); the nearest point wins where several hit one pixel.
- `ground_plane`: a flat floor `camera_height` metres below the camera, the camera pitched down by
  `camera_pitch` radians (no roll). In the optical frame (x right, y down, z forward) the floor's
  "down" direction is g = (0, cos θ, sin θ), the floor is g · X = h, so a pixel with normalised ray
  (x_n, y_n, 1) meets it at 1/Z = (y_n cos θ + sin θ) / h. Pixels whose rays meet the floor within
  `GROUND_MAX_RANGE_HEIGHTS` camera heights are the reference; the ones that do not see the floor
  (furniture, walls) are rejected by the robust fit, which needs the floor to be most of them.

The fit (`fit_inverse_depth`): least median of relative residuals e = (s·x + t)/r − 1 over random
minimal samples (2 points, or 1 for scale only), then iteratively reweighted refits: inliers are
the points with |e| ≤ 3 σ, σ = 1.4826 · median |e| (MAD), refit by least squares in relative terms
(near and far points count alike). A fit is rejected (the last good one held) when too few points
remain, when fewer than `MIN_INLIER_RATIO` of them agree, when the system is degenerate, or when the
scale is not positive.

Over time (`ScaleFilter`): an exponential filter on log(scale) and on shift with time constant
`scale_smoothing` seconds of message time (stamps, so bag replay behaves like live data). When the
reference is missing, stale (`reference_max_age`) or rejected, the last good values are held and the
fit's age grows. Pure numpy: no ROS imports.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from depth_ros.core.camera import CameraModel

SOURCES = ("fixed", "depth", "points", "ground_plane")
MIN_INLIER_RATIO = 0.3  # below this the reference and the model disagree too much to trust a fit
MIN_CORRELATION = 0.5  # of model and reference inverse depth over the inliers (scale + shift fits)
MAX_REFERENCE_POINTS = 5000  # plenty for a two-parameter fit; bounds the per-frame cost (~3 ms)
GROUND_MAX_RANGE_HEIGHTS = 8.0  # floor pixels beyond this many camera heights are near the horizon,
# where a small pitch error changes 1/Z a lot: they are left out of the ground-plane reference
_HYPOTHESES = 64  # 2-point samples: with 50 % outliers P(no clean sample) = 0.75^64 ≈ 1e-8
_SCORE_POINTS = 400  # points each hypothesis is scored on (least median)
_REFITS = 4
_MIN_THRESHOLD = 1e-4  # relative inverse-depth residual always accepted (exact references)


class ReferenceInputError(ValueError):
    """A reference message that cannot be used; the message says what is wrong with it."""


class NoScaleFit(RuntimeError):
    """A relative model's frame before any good fit: it has no metric scale and must not be published."""


@dataclass(frozen=True)
class RecoverySettings:
    """The runtime-changeable parameters of scale recovery."""

    smoothing_s: float = 0.5  # time constant of the temporal filter (0 = use each fit as is)
    max_age_s: float = 0.5  # a reference further than this from the frame's stamp is stale
    min_points: int = 50  # fewer usable reference points: no fit
    camera_height: float = 0.0  # ground_plane: metres above the floor
    camera_pitch: float = 0.0  # ground_plane: radians, positive = looking down
    max_depth: float = 50.0  # ground_plane: floor samples farther than this are not used


@dataclass(frozen=True)
class ScaleFit:
    scale: float
    shift: float
    inlier_ratio: float
    n_points: int  # usable reference points the fit saw
    sigma: float  # robust spread (1.4826 MAD) of the inliers' relative residuals


@dataclass(frozen=True)
class Samples:
    """Reference inverse depths at pixels (rows, cols) of the depth image."""

    rows: np.ndarray  # int
    cols: np.ndarray  # int
    inverse: np.ndarray  # float64, 1/metres

    def __len__(self) -> int:
        return int(self.rows.size)


@dataclass(frozen=True)
class DepthReference:
    """Valid pixels of a reference depth image (at most MAX_REFERENCE_POINTS, spread evenly)."""

    stamp_s: float
    width: int
    height: int
    u: np.ndarray  # float32 pixel columns in the reference image
    v: np.ndarray  # float32 pixel rows
    inverse: np.ndarray  # float64 1/metres


@dataclass(frozen=True)
class PointsReference:
    stamp_s: float
    xyz: np.ndarray  # (N, 3) float32, optical frame, z > 0
    frame_id: str = ""


Reference = DepthReference | PointsReference


# ----------------------------------------------------------------------------- references


def reference_depth_metres(array: np.ndarray, encoding: str) -> np.ndarray:
    """A reference depth image in metres (float32, NaN where invalid)."""
    if encoding in ("16UC1", "mono16"):
        metres = array.astype(np.float32) * np.float32(1e-3)
        metres[array == 0] = np.nan
        return metres
    if encoding == "32FC1":
        metres = array.astype(np.float32, copy=True)
        metres[~(np.isfinite(metres) & (metres > 0))] = np.nan
        return metres
    raise ReferenceInputError(
        f"reference depth encoding {encoding!r} is not supported: publish 32FC1 metres or 16UC1 millimetres")


def spread(indices: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` of ``indices``, evenly spaced (deterministic, keeps spatial coverage)."""
    if indices.size <= limit:
        return indices
    return indices[np.linspace(0, indices.size - 1, limit).astype(np.int64)]


def depth_reference(metres: np.ndarray, stamp_s: float, max_points: int = MAX_REFERENCE_POINTS) -> DepthReference:
    """The valid pixels of a (sparse or dense) metric depth image."""
    if metres.ndim != 2:
        raise ReferenceInputError(f"reference depth must be a single-channel image, got shape {metres.shape}")
    height, width = metres.shape
    flat = spread(np.flatnonzero(np.isfinite(metres) & (metres > 0)), max_points)
    v, u = np.divmod(flat, width)
    inverse = 1.0 / metres.ravel()[flat].astype(np.float64)
    return DepthReference(stamp_s, width, height, u.astype(np.float32), v.astype(np.float32), inverse)


def depth_samples(ref: DepthReference, width: int, height: int) -> Samples:
    """Reference pixels mapped to the nearest pixel of a width x height image (same field of view)."""
    # Half-pixel centres (OpenCV's resize convention): x_out = (x_in + 0.5) * W_out / W_in - 0.5.
    # Round half up: a reference pixel centred between two image pixels always goes the same way.
    cols = np.floor((ref.u + 0.5) * (width / ref.width)).astype(np.int64)
    rows = np.floor((ref.v + 0.5) * (height / ref.height)).astype(np.int64)
    np.clip(cols, 0, width - 1, out=cols)
    np.clip(rows, 0, height - 1, out=rows)
    return Samples(rows, cols, ref.inverse)


_RAY_BOXES: dict[tuple, tuple[float, float, float, float]] = {}


def _ray_box(camera: CameraModel) -> tuple[float, float, float, float]:
    """Bounds of the normalised rays of the image's pixels, one pixel of margin (once per camera)."""
    key = camera.cache_key()
    box = _RAY_BOXES.get(key)
    if box is None:
        rays_x, rays_y = camera.pixel_rays(1)
        mx, my = 1.0 / camera.fx, 1.0 / camera.fy
        box = (float(rays_x.min()) - mx, float(rays_x.max()) + mx, float(rays_y.min()) - my, float(rays_y.max()) + my)
        if len(_RAY_BOXES) > 8:
            _RAY_BOXES.clear()
        _RAY_BOXES[key] = box
    return box


def project_points(xyz: np.ndarray, camera: CameraModel, max_points: int = MAX_REFERENCE_POINTS) -> Samples:
    """Project optical-frame points into the camera's image; the nearest point per pixel is kept."""
    import cv2

    xyz = xyz[xyz[:, 2] > 0]  # behind the camera (also drops NaN)
    z = xyz[:, 2].astype(np.float64)
    coeffs = camera.opencv_distortion  # the camera model owns D's OpenCV form (length per model)
    if coeffs is not None:
        # Raw image: project through the lens model. Points far outside the field of view can fold
        # back into the image through the distortion polynomial, so keep rays inside the pixel rays' box.
        x_low, x_high, y_low, y_high = _ray_box(camera)
        xn, yn = xyz[:, 0] / z, xyz[:, 1] / z
        inside = (xn >= x_low) & (xn <= x_high) & (yn >= y_low) & (yn <= y_high)
        pts = np.ascontiguousarray(xyz[inside], dtype=np.float64).reshape(-1, 1, 3)
        z = z[inside]
        zero = np.zeros(3)
        if pts.shape[0] == 0:
            uv = np.zeros((0, 2))
        elif camera.distortion_model == "equidistant":
            uv = cv2.fisheye.projectPoints(pts, zero, zero, np.ascontiguousarray(camera.k), coeffs)[0]
        else:
            uv = cv2.projectPoints(pts, zero, zero, np.ascontiguousarray(camera.k), coeffs)[0]
        uv = uv.reshape(-1, 2)
        u, v = uv[:, 0], uv[:, 1]
    else:
        u = camera.fx * xyz[:, 0] / z + camera.cx
        v = camera.fy * xyz[:, 1] / z + camera.cy
    cols = np.rint(u)
    rows = np.rint(v)
    inside = (cols >= 0) & (cols < camera.width) & (rows >= 0) & (rows < camera.height)
    cols, rows, z = cols[inside].astype(np.int64), rows[inside].astype(np.int64), z[inside]
    # Nearest point per pixel: a LiDAR beside the camera sees surfaces the camera sees occluded.
    pixel = rows * camera.width + cols
    order = np.lexsort((z, pixel))
    pixel_sorted = pixel[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = pixel_sorted[1:] != pixel_sorted[:-1]
    keep = spread(order[first], max_points)
    return Samples(rows[keep], cols[keep], 1.0 / z[keep])


_FLOOR_CACHE: dict[tuple, Samples] = {}
_FLOOR_LOCK = threading.Lock()


def floor_samples(camera: CameraModel, height: float, pitch: float, max_range: float,
                  max_points: int = MAX_REFERENCE_POINTS) -> Samples:
    """Analytic inverse depth of a flat floor ``height`` m below a camera pitched down by ``pitch`` rad.

    1/Z = (y_n cos θ + sin θ) / h for each pixel whose ray meets the floor within ``max_range``
    metres (along the optical axis). Computed once per (camera, height, pitch, range).
    """
    key = (camera.cache_key(), height, pitch, max_range, max_points)
    with _FLOOR_LOCK:
        cached = _FLOOR_CACHE.get(key)
    if cached is not None:
        return cached
    stride = max(1, math.ceil(math.sqrt(camera.width * camera.height / max_points)))
    _, rays_y = camera.pixel_rays(stride)
    inverse = (rays_y.astype(np.float64) * math.cos(pitch) + math.sin(pitch)) / height
    rows, cols = np.nonzero(inverse >= 1.0 / max_range)
    samples = Samples(rows * stride, cols * stride, inverse[rows, cols])
    with _FLOOR_LOCK:
        if len(_FLOOR_CACHE) > 8:
            _FLOOR_CACHE.clear()
        _FLOOR_CACHE[key] = samples
    return samples


# ----------------------------------------------------------------------------- the fit


@dataclass(frozen=True)
class Rejection:
    key: str  # short, for diagnostics counters
    message: str


def _weighted_lstsq(x: np.ndarray, r: np.ndarray, with_shift: bool) -> tuple[float, float] | None:
    """Minimise Σ ((s x + t − r) / r)²: relative residuals, so near and far points count alike."""
    w = 1.0 / r
    if with_shift:
        a = np.stack([x * w, w], axis=1)
    else:
        a = (x * w)[:, None]
    solution, _, rank, singular = np.linalg.lstsq(a, np.ones_like(r), rcond=None)
    if rank < a.shape[1] or singular[-1] < 1e-9 * singular[0]:
        return None
    return float(solution[0]), float(solution[1]) if with_shift else 0.0


def fit_inverse_depth(x: np.ndarray, r: np.ndarray, with_shift: bool = True, min_points: int = 50,
                      rng: np.random.Generator | None = None) -> ScaleFit | Rejection:
    """Robust fit of r ≈ s · x + t (t = 0 when not ``with_shift``); r = reference inverse depth."""
    x = np.asarray(x, dtype=np.float64).ravel()
    r = np.asarray(r, dtype=np.float64).ravel()
    usable = np.isfinite(x) & np.isfinite(r) & (r > 0)
    if not usable.all():
        x, r = x[usable], r[usable]
    n = x.size
    if n < max(min_points, 3):
        return Rejection("too_few_points", f"{n} usable reference points (reference_min_points is {min_points})")
    rng = rng if rng is not None else np.random.default_rng(0)

    # Least median of relative residuals over minimal samples.
    i = rng.integers(0, n, _HYPOTHESES)
    if with_shift:
        j = rng.integers(0, n, _HYPOTHESES)
        dx = x[i] - x[j]
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (r[i] - r[j]) / dx
        t = r[i] - s * x[i]
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            s = r[i] / x[i]
        t = np.zeros_like(s)
    good = np.isfinite(s) & np.isfinite(t) & (s > 0)
    if not good.any():
        return Rejection("degenerate", "no positive scale fits the reference (model and reference disagree)")
    s, t = s[good], t[good]
    probe = spread(np.arange(n), _SCORE_POINTS)
    residual = np.abs((s[:, None] * x[probe] + t[:, None]) / r[probe] - 1.0)
    best = int(np.argmin(np.median(residual, axis=1)))
    scale, shift = float(s[best]), float(t[best])

    inliers = np.ones(n, dtype=bool)
    p = 2 if with_shift else 1
    for _ in range(_REFITS):
        e = np.abs((scale * x + shift) / r - 1.0)
        sigma = 1.4826 * (1.0 + 5.0 / max(n - p, 1)) * float(np.median(e))  # Rousseeuw's LMedS scale
        inliers = e <= max(3.0 * sigma, _MIN_THRESHOLD)
        if inliers.sum() < max(min_points, p + 1):
            return Rejection("inconsistent", f"only {int(inliers.sum())} of {n} reference points agree with "
                             "the model")
        solved = _weighted_lstsq(x[inliers], r[inliers], with_shift)
        if solved is None:
            return Rejection("degenerate", "the reference points do not constrain scale and shift "
                             "(too little spread in depth)")
        scale, shift = solved
    e = (scale * x + shift) / r - 1.0
    inliers = np.abs(e) <= max(3.0 * 1.4826 * float(np.median(np.abs(e))), _MIN_THRESHOLD)
    ratio = float(inliers.mean())
    if not (math.isfinite(scale) and scale > 0):
        return Rejection("degenerate", f"fitted scale {scale:.4g} is not positive")
    if ratio < MIN_INLIER_RATIO:
        return Rejection("inconsistent", f"only {ratio:.0%} of the reference agrees with the model")
    if with_shift:
        # With a free shift, a model unrelated to the reference still "fits" (s ≈ 0, t ≈ mean): demand that
        # the model's inverse depth actually follows the reference's.
        correlation = float(np.corrcoef(x[inliers], r[inliers])[0, 1])
        if not correlation >= MIN_CORRELATION:
            return Rejection("inconsistent", f"the model's inverse depth does not follow the reference "
                             f"(correlation {correlation:.2f})")
    sigma = 1.4826 * float(np.median(np.abs(e[inliers])))
    return ScaleFit(scale, shift, ratio, n, sigma)


# ----------------------------------------------------------------------------- over time


class ScaleFilter:
    """Exponential smoothing of log(scale) and shift over message time; holds when not updated."""

    def __init__(self) -> None:
        self.log_scale: float | None = None
        self.shift = 0.0
        self.stamp_s = 0.0

    @property
    def value(self) -> tuple[float, float] | None:
        return None if self.log_scale is None else (math.exp(self.log_scale), self.shift)

    def update(self, scale: float, shift: float, stamp_s: float, time_constant_s: float) -> None:
        log_scale = math.log(scale)
        # First fit, no smoothing, or time ran backwards (a looped or restarted bag, however short): take the
        # fit as it is; smoothing from a later stamp would ignore every fit until time passed it again.
        if self.log_scale is None or time_constant_s <= 0 or stamp_s < self.stamp_s:
            self.log_scale, self.shift, self.stamp_s = log_scale, shift, stamp_s
            return
        alpha = 1.0 - math.exp(-max(stamp_s - self.stamp_s, 0.0) / time_constant_s)
        self.log_scale += alpha * (log_scale - self.log_scale)
        self.shift += alpha * (shift - self.shift)
        self.stamp_s = max(self.stamp_s, stamp_s)

    def reset(self) -> None:
        self.log_scale = None


@dataclass
class RecoveryState:
    scale: float | None = None
    shift: float | None = None
    inlier_ratio: float = 0.0
    n_reference_points: int = 0
    fit_stamp_s: float | None = None  # stamp of the frame of the last good fit
    frame_stamp_s: float | None = None  # stamp of the newest frame
    status: str = "no fit yet"
    fits: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    @property
    def age_s(self) -> float | None:
        if self.fit_stamp_s is None or self.frame_stamp_s is None:
            return None
        return max(0.0, self.frame_stamp_s - self.fit_stamp_s)


class ScaleRecoverer:
    """Keeps the newest reference and the smoothed fit; `update` runs once per frame (worker thread)."""

    def __init__(self, source: str, settings: RecoverySettings | None = None) -> None:
        if source not in SOURCES or source == "fixed":
            raise ValueError(f"scale source {source!r}: expected one of {', '.join(SOURCES[1:])}")
        self.source = source
        self.settings = settings or RecoverySettings()
        self._reference: Reference | None = None
        self._lock = threading.Lock()
        self._filter = ScaleFilter()
        self._state = RecoveryState()
        self._rng = np.random.default_rng(12345)  # reproducible hypotheses
        self._frame_stamp_s = 0.0

    # -- the pipeline's scale hook (DepthEstimator.scale_hook): begin_frame, then the estimator calls it
    def begin_frame(self, stamp_s: float) -> None:
        """The stamp (seconds) of the frame the next call belongs to (message time, not wall time)."""
        self._frame_stamp_s = stamp_s

    def __call__(self, values: np.ndarray, kind: str, camera: CameraModel) -> tuple[float, float] | None:
        fitted = self.update(values, kind, camera, self._frame_stamp_s)
        if fitted is None and kind == "disparity":
            raise NoScaleFit(f"relative depth has no metric scale yet ({self.state().status}); frame not published")
        return fitted

    # -- inputs (callback thread)
    def set_reference(self, reference: Reference) -> None:
        with self._lock:
            self._reference = reference

    def reference_rejected(self, key: str) -> None:
        with self._lock:
            self._state.rejected[f"reference_{key}"] += 1

    # -- per frame (worker thread)
    def _samples(self, camera: CameraModel, stamp_s: float, settings: RecoverySettings) -> Samples | Rejection:
        if self.source == "ground_plane":
            max_range = min(settings.max_depth, GROUND_MAX_RANGE_HEIGHTS * settings.camera_height)
            return floor_samples(camera, settings.camera_height, settings.camera_pitch, max_range)
        with self._lock:
            reference = self._reference
        if reference is None:
            topic = "reference_depth" if self.source == "depth" else "reference_points"
            return Rejection("no_reference", f"no reference received on '{topic}' yet")
        age = abs(stamp_s - reference.stamp_s)
        if age > settings.max_age_s:
            return Rejection("stale_reference", f"newest reference is {age:.2f} s from the frame "
                             f"(reference_max_age {settings.max_age_s} s)")
        if isinstance(reference, DepthReference):
            return depth_samples(reference, camera.width, camera.height)
        return project_points(reference.xyz, camera)

    def update(self, values: np.ndarray, kind: str, camera: CameraModel, stamp_s: float) -> tuple[float, float] | None:
        """Fit on this frame when the reference allows; returns the (smoothed) (s, t) or None before any fit.

        ``kind`` 'disparity': ``values`` is the model's d (1/D = s d + t); 'depth': metric depth,
        refined by scale only (1/D' = s / D, i.e. D' = D / s).
        """
        settings = self.settings
        samples = self._samples(camera, stamp_s, settings)
        result: ScaleFit | Rejection
        if isinstance(samples, Rejection):
            result = samples
        else:
            x = values[samples.rows, samples.cols].astype(np.float64)
            if kind == "depth":
                with np.errstate(divide="ignore", invalid="ignore"):
                    x = 1.0 / x
            result = fit_inverse_depth(x, samples.inverse, with_shift=(kind == "disparity"),
                                       min_points=settings.min_points, rng=self._rng)
        with self._lock:
            state = self._state
            state.frame_stamp_s = stamp_s
            if isinstance(result, ScaleFit):
                self._filter.update(result.scale, result.shift, stamp_s, settings.smoothing_s)
                state.fits += 1
                state.fit_stamp_s = stamp_s
                state.inlier_ratio = result.inlier_ratio
                state.n_reference_points = result.n_points
                state.status = "fitting"
            else:
                state.rejected[result.key] += 1
                state.status = ("holding the last fit: " if state.fit_stamp_s is not None else "no fit yet: ") + \
                    result.message
            value = self._filter.value
            if value is not None:
                state.scale, state.shift = value
        return value

    @property
    def has_fit(self) -> bool:
        with self._lock:
            return self._filter.value is not None

    def state(self) -> RecoveryState:
        with self._lock:
            s = self._state
            return RecoveryState(s.scale, s.shift, s.inlier_ratio, s.n_reference_points, s.fit_stamp_s,
                                 s.frame_stamp_s, s.status, s.fits, Counter(s.rejected))

    def diagnostics(self) -> list[tuple[str, str]]:
        s = self.state()
        age = s.age_s
        pairs = [
            ("scale_source", self.source),
            ("scale_status", s.status),
            ("scale", "" if s.scale is None else f"{s.scale:.6g}"),
            ("scale_shift", "" if s.shift is None else f"{s.shift:.6g}"),
            ("scale_inlier_ratio", f"{s.inlier_ratio:.3f}"),
            ("scale_reference_points", str(s.n_reference_points)),
            ("scale_fit_age_s", "" if age is None else f"{age:.3f}"),
            ("scale_fits", str(s.fits)),
        ]
        pairs += [(f"scale_rejected_{key}", str(n)) for key, n in sorted(s.rejected.items())]
        return pairs
