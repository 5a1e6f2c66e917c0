"""Camera model: the one place that answers intrinsics questions.

`CameraModel` mirrors a sensor_msgs/CameraInfo for ONE image size (binning and ROI already
folded in, following image_geometry's PinholeCameraModel), decides which intrinsics map the
image's pixels (P for rectified images, K + D for raw ones), rescales itself for resized images
and produces the per-pixel viewing rays that turn a depth image into points.

Pure numpy + cv2: no ROS import, so it works on rclpy messages, `rosbags` messages or anything
else with the CameraInfo attribute names.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

__all__ = [
    "DISTORTION_MODELS_SUPPORTED",
    "MAX_IMAGE_SIDE",
    "CameraInfoError",
    "CameraModel",
]

DISTORTION_MODELS_SUPPORTED = ("plumb_bob", "rational_polynomial", "equidistant")

# Anything larger is a corrupt message rather than a real sensor; it also bounds ray-cache memory.
MAX_IMAGE_SIDE = 16384

# Number of coefficients each supported model uses (ROS order == OpenCV order for all three).
_MODEL_COEFFS = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}

# Undistortion is a fixed-point / Newton iteration inside OpenCV; EPS is the reprojection error in
# pixels. These bounds keep rays within ~1e-6 px of the forward model for realistic lenses, and the
# cost is paid once per CameraInfo, not per frame.
_UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-10)

_RAY_CACHE_SIZE = 8


# Plausibility limits for intrinsics (pixels): outside them a CameraInfo is corrupt, not a camera.
MIN_FOCAL_PX = 1e-2
MAX_FOCAL_PX = 1e7
PRINCIPAL_POINT_LIMIT = 100  # |cx| may reach this many image widths (cropped/ROI cameras go outside the image)


class CameraInfoError(ValueError):
    """A CameraInfo (or model) that cannot describe an image; the message names field and value."""


def _as_floats(info: Any, field: str, length: int | None) -> np.ndarray:
    """Read a numeric array field (numpy, array.array, list, tuple) as flat float64."""
    try:
        values = np.asarray(getattr(info, field), dtype=np.float64).ravel()
    except (TypeError, ValueError, AttributeError) as exc:
        raise CameraInfoError(f"{field}: not a numeric array ({exc})") from exc
    if length is not None and values.size != length:
        raise CameraInfoError(f"{field}: expected {length} values, got {values.size}")
    if not np.all(np.isfinite(values)):
        raise CameraInfoError(f"{field}: non-finite value in {values.tolist()}")
    return values


def _as_int(value: Any, field: str) -> int:
    """Convert an integer-like message field, naming it on failure."""
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise CameraInfoError(f"{field}: not an integer ({value!r})") from exc


def _frozen(array: np.ndarray, shape: tuple[int, ...], field: str) -> np.ndarray:
    """Private read-only float64 copy of `array` with the given shape."""
    out = np.array(array, dtype=np.float64)
    if out.size != math.prod(shape):
        raise CameraInfoError(f"{field}: expected {math.prod(shape)} values, got {out.size}")
    out = out.reshape(shape)
    if not np.all(np.isfinite(out)):
        raise CameraInfoError(f"{field}: non-finite value in {out.ravel().tolist()}")
    out.setflags(write=False)
    return out


def _distortion_present(model: str, d: tuple[float, ...]) -> bool:
    """Whether D must be applied; raises for non-zero coefficients of a model we cannot invert."""
    if not any(d):
        # Drivers publish names like "Brown Conrady" with all-zero D: that is simply no distortion.
        return False
    if model not in DISTORTION_MODELS_SUPPORTED:
        raise CameraInfoError(
            f"distortion_model: {model!r} with non-zero coefficients d={list(d)} cannot be "
            f"undistorted; supported models are {', '.join(DISTORTION_MODELS_SUPPORTED)} "
            "(or publish rectified images and use rectified=True)"
        )
    return True


def _distortion_coeffs(model: str, d: tuple[float, ...]) -> np.ndarray:
    """D in the length OpenCV expects for `model`: read-only float64 of _MODEL_COEFFS[model] values.

    Trailing zeros beyond the model's count are dropped (drivers publish zero-padded D of 6, 9, 16
    ... values, while OpenCV accepts only 4, 5, 8, 12 or 14), a 4-value plumb_bob gets k3 = 0; a
    non-zero coefficient beyond the count, or too few coefficients, is a CameraInfoError.
    """
    n = _MODEL_COEFFS[model]
    coeffs = list(d)
    if model == "plumb_bob" and len(coeffs) == 4:
        coeffs.append(0.0)  # k1 k2 p1 p2 without k3 is a valid OpenCV/ROS plumb_bob
    if len(coeffs) < n or any(coeffs[n:]):
        raise CameraInfoError(
            f"d: distortion_model {model!r} needs {n} coefficients, got {len(d)}: {list(d)}"
        )
    out = np.asarray(coeffs[:n], dtype=np.float64)
    out.setflags(write=False)
    return out


def _undistort_points(pts: np.ndarray, k: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    """Normalised undistorted coordinates of pixel points (N, 1, 2) for plumb_bob/rational."""
    # OpenCV 4.x exposes the criteria overload as undistortPointsIter; 5.x folded it into
    # undistortPoints. The default (5 iterations) is far too loose for strong lenses.
    iterative = getattr(cv2, "undistortPointsIter", None)
    if iterative is not None:
        return iterative(pts, k, coeffs, None, None, _UNDISTORT_CRITERIA)
    return cv2.undistortPoints(pts, k, coeffs, None, None, None, _UNDISTORT_CRITERIA)


def _apply_pixel_affine(matrix: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Left-multiply a projection matrix by a pixel-coordinate affine map.

    An all-zero matrix means "not provided" in CameraInfo (e.g. P from some drivers); keeping it
    all-zero preserves that meaning instead of inventing a principal point out of nothing.
    """
    if not np.any(matrix):
        return matrix
    return affine @ matrix


class _RayCache:
    """Small thread-safe LRU of read-only ray grids keyed by (model cache_key, stride)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> tuple[np.ndarray, np.ndarray] | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(
        self, key: tuple, value: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            # Another thread may have computed the same grid meanwhile: keep the first one so
            # callers always share one object per key.
            existing = self._items.get(key)
            if existing is not None:
                self._items.move_to_end(key)
                return existing
            self._items[key] = value
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)
            return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_RAYS = _RayCache(_RAY_CACHE_SIZE)


@dataclass(frozen=True, eq=False)
class CameraModel:
    """Intrinsics of ONE image size.

    `width` x `height` are the pixel dimensions of the image described (binning/ROI folded in).
    `k` (3x3), `p` (3x4), `r` (3x3), `d` and `distortion_model` mirror CameraInfo. `rectified` is
    True when pixels follow the pinhole model of (fx, fy, cx, cy) with no distortion; intrinsics
    then come from P (or K when P is all zeros), otherwise from K with D applied.
    `opencv_distortion` is D as OpenCV takes it: the only form of D to hand to cv2.
    Equality and hashing go through `cache_key()`.
    """

    width: int
    height: int
    k: np.ndarray
    p: np.ndarray
    r: np.ndarray
    d: tuple[float, ...]
    distortion_model: str
    rectified: bool
    # Derived in __post_init__ (see `opencv_distortion`); not a constructor argument.
    _opencv_distortion: np.ndarray | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        # Frozen dataclass: normalise through object.__setattr__ so every instance holds private,
        # read-only float64 arrays regardless of what the caller passed.
        width = _as_int(self.width, "width")
        height = _as_int(self.height, "height")
        for name, value in (("width", width), ("height", height)):
            if not 0 < value <= MAX_IMAGE_SIDE:
                raise CameraInfoError(f"{name}: {value} is outside 1..{MAX_IMAGE_SIDE}")
        object.__setattr__(self, "width", width)
        object.__setattr__(self, "height", height)
        object.__setattr__(self, "k", _frozen(self.k, (3, 3), "k"))
        object.__setattr__(self, "p", _frozen(self.p, (3, 4), "p"))
        object.__setattr__(self, "r", _frozen(self.r, (3, 3), "r"))
        d = tuple(float(x) for x in self.d)
        if not all(math.isfinite(x) for x in d):
            raise CameraInfoError(f"d: non-finite value in {list(d)}")
        object.__setattr__(self, "d", d)
        object.__setattr__(self, "distortion_model", str(self.distortion_model))
        object.__setattr__(self, "rectified", bool(self.rectified))

        if not np.any(self.k) and not np.any(self.p):
            raise CameraInfoError("k, p: all-zero intrinsics (camera not calibrated?)")
        # The one place D becomes OpenCV's vector (validates the coefficient count on the way).
        coeffs: np.ndarray | None = None
        if not self.rectified and _distortion_present(self.distortion_model, self.d):
            coeffs = _distortion_coeffs(self.distortion_model, self.d)
        object.__setattr__(self, "_opencv_distortion", coeffs)
        source = "p" if self._uses_p() else "k"
        for label, index, value in (("fx", 0, self.fx), ("fy", 4 if source == "k" else 5, self.fy)):
            if not (math.isfinite(value) and value > 0.0):
                raise CameraInfoError(f"{source}[{index}] ({label}): must be > 0, got {value}")
            # Absurd focal lengths make rays overflow float32; real lenses are far inside this range.
            if not (MIN_FOCAL_PX <= value <= MAX_FOCAL_PX):
                raise CameraInfoError(
                    f"{source}[{index}] ({label}): {value} px is not a plausible focal length "
                    f"({MIN_FOCAL_PX}..{MAX_FOCAL_PX:g})"
                )
        for label, index, value, size in (("cx", 2, self.cx, self.width),
                                          ("cy", 5 if source == "k" else 6, self.cy, self.height)):
            if abs(value) > PRINCIPAL_POINT_LIMIT * size:
                raise CameraInfoError(
                    f"{source}[{index}] ({label}): principal point {value} is absurdly far from a {size}-pixel image"
                )

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_camera_info(cls, info: Any, rectified: bool | None = None) -> CameraModel:
        """Build the model of the image a CameraInfo-like message describes.

        `rectified`: None = auto (rectified iff no distortion is present), True = the image is
        rectified (D ignored, P used as depth_image_proc does for image_rect), False = raw (K + D).
        """
        full_w = _as_int(getattr(info, "width", None), "width")
        full_h = _as_int(getattr(info, "height", None), "height")
        for name, value in (("width", full_w), ("height", full_h)):
            if not 0 < value <= MAX_IMAGE_SIDE:
                raise CameraInfoError(f"{name}: {value} is outside 1..{MAX_IMAGE_SIDE}")
        k = _as_floats(info, "k", 9).reshape(3, 3)
        p = _as_floats(info, "p", 12).reshape(3, 4)
        r = _as_floats(info, "r", 9).reshape(3, 3)
        d = tuple(_as_floats(info, "d", None).tolist())
        model = str(getattr(info, "distortion_model", "") or "")
        if not np.any(k) and not np.any(p):
            raise CameraInfoError("k, p: all-zero intrinsics (camera not calibrated?)")

        if rectified is None:
            rectified = not _distortion_present(model, d)

        # image_geometry convention: binning 0 == 1, an ROI with zero width/height == full image.
        bx = _as_int(getattr(info, "binning_x", 0), "binning_x") or 1
        by = _as_int(getattr(info, "binning_y", 0), "binning_y") or 1
        roi = getattr(info, "roi", None)
        x_off = _as_int(getattr(roi, "x_offset", 0), "roi.x_offset")
        y_off = _as_int(getattr(roi, "y_offset", 0), "roi.y_offset")
        roi_w = _as_int(getattr(roi, "width", 0), "roi.width")
        roi_h = _as_int(getattr(roi, "height", 0), "roi.height")
        if roi_w == 0 or roi_h == 0:
            x_off, y_off, roi_w, roi_h = 0, 0, full_w, full_h
        if min(x_off, y_off, roi_w, roi_h) < 0 or x_off + roi_w > full_w or y_off + roi_h > full_h:
            raise CameraInfoError(
                f"roi: x_offset={x_off} y_offset={y_off} width={roi_w} height={roi_h} lies "
                f"outside the {full_w}x{full_h} image"
            )
        # Checked against the ROI (not just the full image) so the binned size is never zero.
        if bx < 0 or bx > roi_w:
            raise CameraInfoError(f"binning_x: {bx} is not in 1..{roi_w} (image/ROI width)")
        if by < 0 or by > roi_h:
            raise CameraInfoError(f"binning_y: {by} is not in 1..{roi_h} (image/ROI height)")

        # u' = (u - x_offset) / bx, v' = (v - y_offset) / by as a pixel affine on K and P:
        # gives fx/bx, (cx - x_offset)/bx, P[0,3]/bx ... exactly image_geometry's formulas
        # (P[2,3] is 0 for every ROS camera, so the Tx/Ty terms agree too).
        affine = np.array(
            [[1.0 / bx, 0.0, -x_off / bx], [0.0, 1.0 / by, -y_off / by], [0.0, 0.0, 1.0]]
        )
        if bx != 1 or by != 1 or x_off or y_off:
            k = _apply_pixel_affine(k, affine)
            p = _apply_pixel_affine(p, affine)
        return cls(
            width=roi_w // bx,
            height=roi_h // by,
            k=k,
            p=p,
            r=r,
            d=d,
            distortion_model=model,
            rectified=bool(rectified),
        )

    # ------------------------------------------------------------------ intrinsics

    def _uses_p(self) -> bool:
        """Rectified images use P's left 3x3 unless the driver left P empty."""
        return self.rectified and self.p[0, 0] > 0.0 and self.p[1, 1] > 0.0

    @property
    def input_model(self) -> str:
        """How this image's pixels are interpreted, for logs and diagnostics."""
        if not self.rectified:
            return "raw (K + D)" if self.opencv_distortion is not None else "raw (K, no distortion)"
        return "rectified (P)" if self._uses_p() else "rectified (K: P is all zero)"

    @property
    def _intrinsic_matrix(self) -> np.ndarray:
        """The 3x3 matrix that maps this image's (undistorted) pixels."""
        return self.p[:, :3] if self._uses_p() else self.k

    @property
    def fx(self) -> float:
        """Horizontal focal length in pixels of this image."""
        return float(self._intrinsic_matrix[0, 0])

    @property
    def fy(self) -> float:
        """Vertical focal length in pixels of this image."""
        return float(self._intrinsic_matrix[1, 1])

    @property
    def cx(self) -> float:
        """Principal point column of this image."""
        return float(self._intrinsic_matrix[0, 2])

    @property
    def cy(self) -> float:
        """Principal point row of this image."""
        return float(self._intrinsic_matrix[1, 2])

    @property
    def f_over_w(self) -> float:
        """fx / width: the resolution-independent focal ratio used by metric conversion."""
        return self.fx / self.width

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return (self.width, self.height)

    @property
    def opencv_distortion(self) -> np.ndarray | None:
        """The distortion vector OpenCV expects for this image, or None when no distortion applies.

        None for a rectified image (D is ignored) and for an all-zero D: pixels follow the pinhole
        model of (fx, fy, cx, cy). Otherwise a read-only float64 array of exactly the model's count,
        in ROS order (which is OpenCV's): plumb_bob k1 k2 p1 p2 k3 (5; a 4-value D gets k3 = 0),
        rational_polynomial k1 k2 p1 p2 k3 k4 k5 k6 (8), equidistant k1 k2 k3 k4 (4, for
        cv2.fisheye). Trailing zeros of a padded D (6, 9, 16 values ...) are dropped; a non-zero
        coefficient beyond the count was already refused when the model was built. Use it with K
        (`k`), never with `camera.d`: cv2.projectPoints refuses lengths other than 4/5/8/12/14.
        """
        return self._opencv_distortion

    # ------------------------------------------------------------------ derived models

    def scaled_to(self, width: int, height: int) -> CameraModel:
        """Model of the same camera after resizing the image to width x height.

        Uses the half-pixel-centre convention of cv2.resize (INTER_LINEAR / INTER_AREA):
        new = (old + 0.5) * s - 0.5. D and R act on normalised coordinates, so they are unchanged.
        """
        width = _as_int(width, "width")
        height = _as_int(height, "height")
        if (width, height) == self.size:
            return self
        if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
            raise CameraInfoError(f"width, height: {width}x{height} is not a valid image size")
        sx = width / self.width
        sy = height / self.height
        affine = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
        return CameraModel(
            width=width,
            height=height,
            k=_apply_pixel_affine(self.k, affine),
            p=_apply_pixel_affine(self.p, affine),
            r=self.r,
            d=self.d,
            distortion_model=self.distortion_model,
            rectified=self.rectified,
        )

    # ------------------------------------------------------------------ rays

    def pixel_rays(self, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Normalised ray coordinates (x_n, y_n) for pixels (u, v) = (j*stride, i*stride).

        The point at depth Z seen by pixel (u, v) is (x_n*Z, y_n*Z, Z) in the camera's optical
        frame. Arrays are float32, shape (ceil(h/stride), ceil(w/stride)), read-only, and cached
        per (model, stride) so they are computed once per CameraInfo, not per frame.
        """
        stride = _as_int(stride, "stride")
        if stride < 1:
            raise ValueError(f"stride: must be >= 1, got {stride}")
        key = (self.cache_key(), stride)
        cached = _RAYS.get(key)
        if cached is not None:
            return cached
        return _RAYS.put(key, self._compute_rays(stride))

    def _compute_rays(self, stride: int) -> tuple[np.ndarray, np.ndarray]:
        """Uncached ray computation (float64 internally, float32 out)."""
        u = np.arange(0, self.width, stride, dtype=np.float64)
        v = np.arange(0, self.height, stride, dtype=np.float64)
        uu, vv = np.meshgrid(u, v)
        coeffs = self.opencv_distortion
        if coeffs is None:
            # Pure pinhole; skew is ignored as in OpenCV (ROS K has K[0,1] == 0 by convention).
            x_n = (uu - self.cx) / self.fx
            y_n = (vv - self.cy) / self.fy
        else:
            pts = np.stack([uu.ravel(), vv.ravel()], axis=-1).reshape(-1, 1, 2)
            k = np.ascontiguousarray(self.k)
            if self.distortion_model == "equidistant":
                und = cv2.fisheye.undistortPoints(
                    pts, k, coeffs, None, None, None, _UNDISTORT_CRITERIA
                )
            else:
                und = _undistort_points(pts, k, coeffs)
            und = und.reshape((*uu.shape, 2))
            x_n, y_n = und[..., 0], und[..., 1]
        xs = np.ascontiguousarray(x_n, dtype=np.float32)
        ys = np.ascontiguousarray(y_n, dtype=np.float32)
        xs.setflags(write=False)
        ys.setflags(write=False)
        return xs, ys

    # ------------------------------------------------------------------ export / identity

    def camera_info_fields(self) -> dict[str, Any]:
        """CameraInfo fields (minus header) for an image of exactly this model's size.

        Normalised for consumers such as depth_image_proc: an all-zero P (some drivers) is filled
        with [K | 0], and an unknown distortion model name with all-zero coefficients becomes
        plumb_bob with zeros, which is what it means.
        """
        p = self.p
        if not p.any():
            p = np.hstack([self.k, np.zeros((3, 1))])
        model, d = self.distortion_model, [float(x) for x in self.d]
        if model not in DISTORTION_MODELS_SUPPORTED and not any(d):
            model, d = "plumb_bob", [0.0] * 5
        return {
            "width": self.width,
            "height": self.height,
            "distortion_model": model,
            "d": d,
            "k": [float(x) for x in self.k.ravel()],
            "r": [float(x) for x in self.r.ravel()],
            "p": [float(x) for x in p.ravel()],
            # Binning and ROI are already folded into size, K and P.
            "binning_x": 0,
            "binning_y": 0,
            "roi": {"x_offset": 0, "y_offset": 0, "height": 0, "width": 0, "do_rectify": False},
        }

    def cache_key(self) -> tuple:
        """Hashable identity: equal for models that describe the same pixels the same way."""
        return (
            self.width,
            self.height,
            tuple(float(x) for x in self.k.ravel()),
            tuple(float(x) for x in self.p.ravel()),
            tuple(float(x) for x in self.r.ravel()),
            self.d,
            self.distortion_model,
            self.rectified,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CameraModel):
            return NotImplemented
        return self.cache_key() == other.cache_key()

    def __hash__(self) -> int:
        return hash(self.cache_key())
