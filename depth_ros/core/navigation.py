"""Navigation outputs as pure functions on arrays: a LaserScan from a band of the depth image, and a
range-clipped, height-filtered, voxel-downsampled cloud for costmaps. No ROS import.

Conventions (depthimage_to_laserscan's, REP-103, REP-117):

- The scan plane is the camera's X-Z optical plane seen as a laser: scan x = optical z (forward),
  scan y = -optical x (left), so a ray's angle is atan2(-x, z) and positive angles are left of
  the optical axis. The scan has one bin per depth-image column, angle_min/angle_max are the
  angles of the rightmost/leftmost pixel rays of the band, angle_increment = span / (n - 1), and
  ranges run from angle_min to angle_max (right to left in the image).
- Pixel rays are not evenly spaced in angle (tan, and lens distortion), so a column's ray is not
  on a bin's ray. depthimage_to_laserscan stores each column's own range at the bin's angle,
  which puts points up to half an increment sideways. Here each bin's range is measured along
  the bin's own ray: over the pixels of the band whose ray falls in the bin (plus, per row, the
  pixel whose ray is nearest the bin's, so that no bin is empty where pixels are sparser than
  bins), the nearest depth Z is taken and r = Z / cos(theta_bin), the range at which the bin's ray
  meets a surface at that depth facing the camera. Exact for surfaces facing the camera;
  otherwise off by at most the depth change across half a bin (half a pixel where pixels are
  sparser than bins), and where a bin holds several pixels the nearest wins.
- Per bin: the nearest range within [range_min, range_max]; if none but some pixel is farther,
  +inf (REP-117 "no return within range": Nav2 clears with it when `inf_is_valid`); if the only
  readings are nearer than range_min, -inf (REP-117 "too close"); no valid depth at all: NaN.
  depthimage_to_laserscan leaves NaN in both out-of-range cases.

Height of a point above the floor, for a camera `height` metres above the floor pitched down by
`pitch` radians (no roll): the optical y axis (down in the image) points (forward -sin p, up -cos p)
and z (the optical axis) points (forward cos p, up -sin p), so

    height(x, y, z) = camera_height - (y cos p + z sin p).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from depth_ros.core.camera import CameraModel
from depth_ros.core.pointcloud import depth_to_points

__all__ = [
    "Mounting",
    "Scan",
    "ScanGeometry",
    "band_rows",
    "depth_to_scan",
    "filter_cloud",
    "filtered_cloud",
    "point_heights",
    "scan_geometry",
    "voxel_downsample",
]


# --------------------------------------------------------------------------------------------- scan


@dataclass(frozen=True)
class Scan:
    """A LaserScan's geometry and ranges. Angles are float32-exact: bin i's angle is
    float64(angle_min) + i * float64(angle_increment), the same numbers the message carries."""

    angle_min: float
    angle_max: float
    angle_increment: float
    ranges: np.ndarray  # (n,) float32, angle_min -> angle_max

    def angles(self) -> np.ndarray:
        return self.angle_min + np.arange(self.ranges.size) * self.angle_increment


@dataclass(frozen=True, eq=False)
class ScanGeometry:
    """Which band pixels feed which bin: computed once per (camera, band), not per frame."""

    angle_min: float
    angle_max: float
    angle_increment: float
    count: int
    rows: tuple[int, int]  # [start, stop) rows of the depth image
    members: np.ndarray  # (M,) flat index into depth[start:stop] of each (pixel, bin) pair, bin-ordered
    inv_cos: np.ndarray  # (M,) 1 / cos(theta_bin) of each pair's bin
    starts: np.ndarray  # (count,) first pair of each bin (every bin has at least one pair)


def band_rows(height: int, scan_height: int, scan_row: int, cy: float) -> tuple[int, int]:
    """[start, stop) of the `scan_height` rows centred on `scan_row` (< 0: the principal point's row).

    The band is clipped to the image (a band larger than the image is the whole image).
    """
    rows = max(1, min(int(scan_height), int(height)))
    centre = float(cy) if scan_row < 0 else float(scan_row)
    start = math.floor(centre - (rows - 1) / 2.0 + 0.5)
    start = min(max(start, 0), height - rows)
    return start, start + rows


def _float32(value: float) -> float:
    return float(np.float32(value))


def _compute_scan_geometry(camera: CameraModel, rows: tuple[int, int]) -> ScanGeometry:
    start, stop = rows
    rays_x, _ = camera.pixel_rays(1)
    # atan2(-x, z) with z = 1: the angle of each pixel ray projected onto the scan plane.
    theta = np.arctan(-rays_x[start:stop].astype(np.float64))  # (band rows, width)
    band, width = theta.shape
    count = width
    # float32-exact angles, so that bin i of the message is exactly angle_min + i * increment.
    angle_min = _float32(theta.min())
    increment = _float32((theta.max() - angle_min) / (count - 1)) if count > 1 else 0.0
    bin_angles = angle_min + np.arange(count) * increment
    angle_max = _float32(bin_angles[-1])

    if count > 1:
        own_bin = np.clip(np.rint((theta - angle_min) / increment), 0, count - 1).astype(np.int64)
    else:
        own_bin = np.zeros(theta.shape, np.int64)
    # Per row, the pixel nearest each bin's ray (keeps bins that are narrower than a pixel filled).
    order = np.argsort(theta, axis=1, kind="stable")
    sorted_theta = np.take_along_axis(theta, order, axis=1)
    nearest = np.empty((band, count), np.int64)
    for r in range(band):  # once per CameraInfo, over the few band rows (not per pixel or frame)
        right = np.clip(np.searchsorted(sorted_theta[r], bin_angles), 1, width - 1) if width > 1 else \
            np.zeros(count, np.int64)
        left = np.maximum(right - 1, 0)
        take_left = np.abs(bin_angles - sorted_theta[r, left]) <= np.abs(sorted_theta[r, right] - bin_angles)
        nearest[r] = order[r, np.where(take_left, left, right)] + r * width

    pixel = np.concatenate([np.arange(band * width), nearest.ravel()])
    bins = np.concatenate([own_bin.ravel(), np.tile(np.arange(count), band)])
    by_bin = np.argsort(bins, kind="stable")
    members = pixel[by_bin]
    bins_sorted = bins[by_bin]
    starts = np.searchsorted(bins_sorted, np.arange(count))
    inv_cos = (1.0 / np.cos(bin_angles))[bins_sorted].astype(np.float32)
    for array in (members, inv_cos, starts):
        array.setflags(write=False)
    return ScanGeometry(angle_min, angle_max, increment, count, (start, stop), members, inv_cos, starts)


class _GeometryCache:
    """A few scan geometries (one camera, one band in practice), LRU, thread-safe."""

    def __init__(self, capacity: int = 4) -> None:
        self._capacity = capacity
        self._items: OrderedDict[tuple, ScanGeometry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, camera: CameraModel, rows: tuple[int, int]) -> ScanGeometry:
        key = (camera.cache_key(), rows)
        with self._lock:
            geometry = self._items.get(key)
            if geometry is not None:
                self._items.move_to_end(key)
                return geometry
        geometry = _compute_scan_geometry(camera, rows)
        with self._lock:
            self._items[key] = geometry
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)
        return geometry


_GEOMETRIES = _GeometryCache()


def scan_geometry(camera: CameraModel, rows: tuple[int, int]) -> ScanGeometry:
    """The (cached) bin layout of a band [start, stop) of this camera's depth image."""
    start, stop = rows
    if not 0 <= start < stop <= camera.height:
        raise ValueError(f"band rows [{start}, {stop}) are outside the {camera.height}-row image")
    return _GEOMETRIES.get(camera, (int(start), int(stop)))


def depth_to_scan(depth: np.ndarray, camera: CameraModel, rows: tuple[int, int], range_min: float,
                  range_max: float) -> Scan:
    """LaserScan ranges from the depth image's rows [start, stop) (see the module notes)."""
    if depth.shape != (camera.height, camera.width):
        raise ValueError(
            f"depth is {depth.shape[1]}x{depth.shape[0]} but the camera model is {camera.width}x{camera.height}"
        )
    geometry = scan_geometry(camera, rows)
    start, stop = geometry.rows
    r = depth[start:stop].reshape(-1)[geometry.members] * geometry.inv_cos  # float32, NaN stays NaN
    with np.errstate(invalid="ignore"):
        in_range = (r >= range_min) & (r <= range_max)
        nearest = np.minimum.reduceat(np.where(in_range, r, np.float32(np.inf)), geometry.starts)
        far = np.logical_or.reduceat(r > range_max, geometry.starts)
        near = np.logical_or.reduceat(r < range_min, geometry.starts)
    ranges = np.where(np.isfinite(nearest), nearest,
                      np.where(far, np.inf, np.where(near, -np.inf, np.nan))).astype(np.float32)
    return Scan(geometry.angle_min, geometry.angle_max, geometry.angle_increment, ranges)


# --------------------------------------------------------------------------------------------- cloud


@dataclass(frozen=True)
class Mounting:
    """Where the camera sits: its optical centre `height` m above a flat floor, pitched down by
    `pitch` rad (positive = looking down), no roll. Points are kept when their height above the
    floor is within [min_height, max_height]."""

    height: float
    pitch: float
    min_height: float
    max_height: float


def point_heights(xyz: np.ndarray, height: float, pitch: float) -> np.ndarray:
    """Height above the floor of optical-frame points (..., 3) (see the module notes)."""
    return height - (xyz[..., 1] * math.cos(pitch) + xyz[..., 2] * math.sin(pitch))


def filter_cloud(xyz: np.ndarray, max_range: float, mounting: Mounting | None = None) -> np.ndarray:
    """Valid points (any shape (..., 3)) within `max_range` m of the camera and, with a mounting,
    within its height band; returns (N, 3) float32 in the order of `xyz`."""
    points = xyz.reshape(-1, 3)
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    with np.errstate(invalid="ignore"):
        keep = x * x + y * y + z * z <= np.float32(max_range) ** 2  # NaN points compare False
        if mounting is not None:
            h = point_heights(points, mounting.height, mounting.pitch)
            keep &= (h >= mounting.min_height) & (h <= mounting.max_height)
    return np.ascontiguousarray(points[keep], dtype=np.float32)


def voxel_downsample(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """One point per occupied voxel: the centroid of the points in it (like PCL's VoxelGrid).

    Voxels are the cubes [k*s, (k+1)*s) per axis (k = floor(coordinate / s) in float64). The
    output is ordered by voxel (x index, then y, then z); `voxel_size` <= 0 returns the input.
    """
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    if voxel_size <= 0 or points.shape[0] == 0:
        return points
    cells = np.floor(points.astype(np.float64) / voxel_size).astype(np.int64)
    cells -= cells.min(axis=0)
    extent = cells.max(axis=0) + 1
    if float(extent[0]) * float(extent[1]) * float(extent[2]) < 2.0**62:
        # One sortable integer per voxel, ordered like the lexicographic (x, y, z) index.
        key = (cells[:, 0] * extent[1] + cells[:, 1]) * extent[2] + cells[:, 2]
        order = np.argsort(key)  # order within a voxel does not matter
        key = key[order]
        new_voxel = np.empty(key.size, bool)
        new_voxel[0] = True
        np.not_equal(key[1:], key[:-1], out=new_voxel[1:])
    else:  # a huge extent (tiny voxels, far points): sort the three indices instead
        order = np.lexsort((cells[:, 2], cells[:, 1], cells[:, 0]))
        sorted_cells = cells[order]
        new_voxel = np.empty(order.size, bool)
        new_voxel[0] = True
        np.any(sorted_cells[1:] != sorted_cells[:-1], axis=1, out=new_voxel[1:])
    starts = np.flatnonzero(new_voxel)
    counts = np.diff(np.append(starts, order.size))
    centroids = np.empty((starts.size, 3), np.float32)
    # Per axis on contiguous float64 columns: twice as fast as reduceat over (N, 3) rows.
    for axis, column in enumerate(points.T.astype(np.float64)):
        centroids[:, axis] = np.add.reduceat(column[order], starts) / counts
    return centroids


def filtered_cloud(depth: np.ndarray, camera: CameraModel, stride: int, max_range: float, voxel_size: float,
                   mounting: Mounting | None = None) -> np.ndarray:
    """The costmap cloud of a depth image: points (every `stride`-th pixel), range-clipped,
    height-filtered when the mounting is known, voxel-downsampled; (N, 3) float32, no NaN."""
    points = filter_cloud(depth_to_points(depth, camera, stride), max_range, mounting)
    return voxel_downsample(points, voxel_size)
