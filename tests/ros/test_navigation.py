"""Navigation outputs: `scan` (LaserScan) and `points_filtered` (costmap cloud).

Ground truth comes from analytic scenes, computed here independently of depth_ros.core.navigation:

- a fronto-parallel wall at Z = d: along a scan ray at angle theta (x forward, y left) the range is
  d / cos(theta), checked at the message's own angles angle_min + i * angle_increment;
- a wall turned about the vertical axis: the scan must be exact along the bin's ray up to the
  depth change across the bin's pixels, and never farther than the wall (conservative);
- a floor and a box seen by a pitched camera, built in world coordinates (forward, left, up) and
  moved into the optical frame with the camera's rotation written out axis by axis;
- a brute-force voxelisation (a Python dict of voxel index -> points).

The live-node test runs depth_node (real rclpy + Fast DDS, real ONNX Runtime) with an oracle model
whose output, at the image's own resolution, is the exact metric depth of each scene.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rclpy
from oracles import camera_info, make_contract
from ros_harness import Client
from sensor_msgs.msg import LaserScan, PointCloud2
from test_node_geometry import save_model, scene_model, scene_rgb, set_ok

from depth_ros.core.camera import CameraModel
from depth_ros.core.navigation import (
    Mounting,
    band_rows,
    depth_to_scan,
    filter_cloud,
    filtered_cloud,
    point_heights,
    voxel_downsample,
)
from depth_ros.ros.codecs import cloud_msg_to_arrays, image_msg_to_array
from depth_ros.ros.navigation_msgs import scan_frame_id

FloatArray = np.ndarray


def pinhole(width: int, height: int, fx: float, cx: float, cy: float, fy: float | None = None) -> CameraModel:
    return CameraModel.from_camera_info(camera_info(width, height, fx, fy or fx, cx, cy))


def column_of(angle: FloatArray, fx: float, cx: float) -> FloatArray:
    """Image column whose ray has scan angle `angle` (x forward, y left): x_n = -tan(angle)."""
    return cx - fx * np.tan(angle)


# ---------------------------------------------------------------------------------------------------- scan


def test_band_rows() -> None:
    assert band_rows(480, 1, -1, 239.5) in ((239, 240), (240, 241))
    assert band_rows(480, 1, -1, 200.2) == (200, 201)
    assert band_rows(480, 5, -1, 200.2) == (198, 203)
    assert band_rows(480, 4, 100, 0.0) == (99, 103)  # even band: centred on row 100 +- half a row
    assert band_rows(480, 5, 2, 0.0) == (0, 5)  # clipped into the image, keeps its height
    assert band_rows(480, 5, 479, 0.0) == (475, 480)
    assert band_rows(10, 50, -1, 4.5) == (0, 10)  # taller than the image: the whole image


@pytest.mark.parametrize(("fx", "cx"), [(300.0, 190.3), (60.0, 150.0)], ids=["normal", "wide_fov_140deg"])
def test_fronto_parallel_wall_at_the_messages_own_angles(fx: float, cx: float) -> None:
    """r(theta) = d / cos(theta) for every bin; the wide lens has bins narrower than its edge pixels."""
    width, height, d = 320, 40, 2.75
    camera = pinhole(width, height, fx, cx, 20.0)
    depth = np.full((height, width), d, np.float32)
    scan = depth_to_scan(depth, camera, (18, 21), 0.1, 10.0)
    assert scan.ranges.dtype == np.float32 and scan.ranges.shape == (width,)
    # The extreme bins are the rays of the rightmost and leftmost columns (left = positive angle).
    assert scan.angle_min == pytest.approx(-math.atan((width - 1 - cx) / fx), abs=1e-6)
    assert scan.angle_max == pytest.approx(math.atan(cx / fx), abs=1e-6)
    assert scan.angle_increment == pytest.approx((scan.angle_max - scan.angle_min) / (width - 1), rel=1e-6)
    # All three are float32 numbers (what LaserScan carries), so the message's angles are these.
    for value in (scan.angle_min, scan.angle_max, scan.angle_increment):
        assert float(np.float32(value)) == value
    angles = np.float64(np.float32(scan.angle_min)) + np.arange(width) * np.float64(np.float32(scan.angle_increment))
    assert angles[-1] == pytest.approx(scan.angle_max, abs=1e-7)
    np.testing.assert_allclose(scan.ranges, d / np.cos(angles), rtol=2e-7)


def test_wall_turned_about_the_vertical_axis_is_exact_within_half_a_pixel() -> None:
    """A plane nx * x + nz * z = dist (not facing the camera): each bin's range is the wall's depth at a
    pixel within half a bin (or half a pixel, where pixels are sparser) of the bin's ray, put on that
    ray: between the ranges implied by the wall's depth at either end of that window."""
    width, height, fx, cx = 400, 30, 350.0, 210.0
    camera = pinhole(width, height, fx, cx, 15.0)
    nx, nz, dist = 0.45, 1.0, 3.0
    u = np.arange(width, dtype=np.float64)
    z_row = dist / (nz + nx * (u - cx) / fx)  # exact Z of each column (independent of v)
    depth = np.tile(z_row, (height, 1)).astype(np.float32)
    scan = depth_to_scan(depth, camera, (15, 16), 0.1, 100.0)
    angles = scan.angles()

    def z_at(angle: FloatArray) -> FloatArray:  # Z of the wall along the scan ray at `angle`
        return dist / (nz - nx * np.tan(angle))

    exact = z_at(angles) / np.cos(angles)
    pixel_angles = np.arctan(-(u - cx) / fx)
    half_window = max(scan.angle_increment, np.abs(np.diff(pixel_angles)).max()) / 2 * 1.001
    # Z grows with the angle here (nx > 0: the wall recedes to the left).
    lower = z_at(angles - half_window) / np.cos(angles)
    upper = z_at(angles + half_window) / np.cos(angles)
    assert np.all(scan.ranges >= lower * (1 - 1e-6)) and np.all(scan.ranges <= upper * (1 + 1e-6))
    # And the error is of the order of half a pixel: a few millimetres at 3 m here.
    assert np.max(exact - scan.ranges) < 0.01


def test_nearest_over_band_rows_and_range_limits() -> None:
    width, height, fx, cx, cy = 200, 60, 180.0, 99.5, 30.0
    camera = pinhole(width, height, fx, cx, cy)
    depth = np.full((height, width), 3.0, np.float32)
    depth[29, 60:70] = 1.0  # an obstacle seen by one row of the band only
    depth[:28, :] = 0.5  # nearer things above the band are not in the scan
    depth[32:, :] = 0.5  # ... nor below it
    depth[28:32, 150:160] = np.nan  # no measurement in any band row
    depth[28:32, 120:130] = 0.05  # only nearer than range_min in every band row
    band = (28, 32)  # 4 rows centred on row 29 (an even band is half a row off: 29.5)
    assert band_rows(height, 4, 29, cy) == band

    scan = depth_to_scan(depth, camera, band, 0.1, 10.0)
    angles = scan.angles()
    col = column_of(angles, fx, cx)
    cos = np.cos(angles)

    # A bin's pixels lie within half a bin of its ray: under a pixel here (the widest bins, at the
    # image edges, span 1.1 px). One pixel of margin keeps the checks clear of the region borders.
    def bins(lo: float, hi: float) -> np.ndarray:  # bins whose ray is well inside columns [lo, hi]
        return (col >= lo + 1.0) & (col <= hi - 1.0)

    def outside(lo: float, hi: float) -> np.ndarray:
        return (col < lo - 1.0) | (col > hi + 1.0)

    obstacle, nan, near = bins(60, 69), bins(150, 159), bins(120, 129)
    background = outside(60, 69) & outside(150, 159) & outside(120, 129)
    assert obstacle.sum() >= 6 and nan.sum() >= 6 and near.sum() >= 6 and background.sum() > 150
    np.testing.assert_allclose(scan.ranges[obstacle], 1.0 / cos[obstacle], rtol=2e-7)
    np.testing.assert_allclose(scan.ranges[background], 3.0 / cos[background], rtol=2e-7)
    assert np.all(np.isnan(scan.ranges[nan]))
    assert np.all(scan.ranges[near] == -np.inf)  # REP-117: detected, but too close

    # range_min above the obstacle: the nearest reading in range wins (the wall behind it).
    scan = depth_to_scan(depth, camera, band, 1.5, 10.0)
    np.testing.assert_allclose(scan.ranges[obstacle], 3.0 / cos[obstacle], rtol=2e-7)
    # range_max below the wall: nothing within range -> +inf (REP-117), the obstacle stays.
    scan = depth_to_scan(depth, camera, band, 0.1, 2.0)
    assert np.all(scan.ranges[background] == np.inf)
    np.testing.assert_allclose(scan.ranges[obstacle], 1.0 / cos[obstacle], rtol=2e-7)


def test_scan_frame_id() -> None:
    assert scan_frame_id("camera_color_optical_frame", "") == ("camera_color_frame", None)
    assert scan_frame_id("front_cam_optical", "") == ("front_cam", None)
    assert scan_frame_id("camera_color_optical_frame", " base_scan ") == ("base_scan", None)
    frame, warning = scan_frame_id("camera", "")
    assert frame == "camera" and warning is not None and "scan_frame" in warning


# ---------------------------------------------------------------------------------------------------- cloud


def optical_axes(pitch: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """World (forward, left, up) directions of the optical x (right), y (down), z (axis), camera
    pitched down by `pitch`: z tilts towards the floor, x stays horizontal, y = z cross x."""
    x = np.array([0.0, -1.0, 0.0])
    z = np.array([math.cos(pitch), 0.0, -math.sin(pitch)])
    y = np.cross(z, x)
    return x, y, z


def world_to_optical(points: FloatArray, height: float, pitch: float) -> FloatArray:
    x, y, z = optical_axes(pitch)
    relative = points - np.array([0.0, 0.0, height])
    return np.stack([relative @ x, relative @ y, relative @ z], axis=-1)


def optical_to_world(points: FloatArray, height: float, pitch: float) -> FloatArray:
    x, y, z = optical_axes(pitch)
    return points[..., :1] * x + points[..., 1:2] * y + points[..., 2:3] * z + np.array([0.0, 0.0, height])


def test_optical_axes_are_a_right_handed_frame() -> None:
    x, y, z = optical_axes(0.4)
    np.testing.assert_allclose(np.cross(x, y), z, atol=1e-12)
    np.testing.assert_allclose(optical_axes(0.0)[1], [0.0, 0.0, -1.0], atol=1e-12)  # level: y is down


def test_heights_and_height_filter_with_an_analytic_floor_and_box() -> None:
    height, pitch = 0.6, 0.35
    forward, left = np.meshgrid(np.linspace(0.3, 4.0, 60), np.linspace(-1.5, 1.5, 40))
    floor = np.stack([forward, left, np.zeros_like(forward)], axis=-1).reshape(-1, 3)
    # A box on the floor: its front face at 1.8 m, 0.4 m wide, 0.3 m tall.
    f_left, f_up = np.meshgrid(np.linspace(-0.2, 0.2, 9), np.linspace(0.0, 0.3, 12))
    box = np.stack([np.full_like(f_left, 1.8), f_left, f_up], axis=-1).reshape(-1, 3)
    for world in (floor, box):
        heights = point_heights(world_to_optical(world, height, pitch), height, pitch)
        np.testing.assert_allclose(heights, world[:, 2], atol=1e-12)

    cloud = world_to_optical(np.concatenate([floor, box]), height, pitch).astype(np.float32)
    cloud = np.concatenate([cloud, np.full((5, 3), np.nan, np.float32)])  # invalid pixels
    kept = filter_cloud(cloud, 10.0, Mounting(height, pitch, 0.05, 2.0))
    kept_world = optical_to_world(kept.astype(np.float64), height, pitch)
    expected = box[box[:, 2] >= 0.05]
    assert kept.shape == expected.shape, "the floor (and only the floor and the box's bottom row) must go"
    np.testing.assert_allclose(np.sort(kept_world, axis=0), np.sort(expected, axis=0), atol=1e-5)
    # A lower ceiling drops the top of the box too.
    kept = filter_cloud(cloud, 10.0, Mounting(height, pitch, 0.05, 0.2))
    assert np.all(optical_to_world(kept.astype(np.float64), height, pitch)[:, 2] <= 0.2 + 1e-6)
    # No mounting: only invalid points go; a range limit keeps the points within it.
    assert filter_cloud(cloud, 10.0).shape == (floor.shape[0] + box.shape[0], 3)
    near = filter_cloud(cloud, 2.0)
    distances = np.linalg.norm(cloud[:-5].astype(np.float64), axis=1)
    assert near.shape[0] == np.count_nonzero(distances <= 2.0)
    assert np.all(np.linalg.norm(near.astype(np.float64), axis=1) <= 2.0 + 1e-6)


def brute_force_voxels(points: FloatArray, size: float) -> FloatArray:
    """Centroid per voxel, one point at a time, with a dict: the reference for voxel_downsample."""
    groups: dict[tuple[int, int, int], list[tuple[float, float, float]]] = defaultdict(list)
    for x, y, z in points.tolist():
        groups[(math.floor(x / size), math.floor(y / size), math.floor(z / size))].append((x, y, z))
    return np.array([np.mean(np.array(members), axis=0) for members in groups.values()]).reshape(-1, 3)


def sorted_rows(points: FloatArray) -> FloatArray:
    return points[np.lexsort(points.T[::-1])]


@pytest.mark.parametrize("size", [0.1, 0.37, 1e-9], ids=["10cm", "37cm", "tiny_voxels_huge_extent"])
def test_voxel_downsample_matches_brute_force(size: float) -> None:
    rng = np.random.default_rng(7)
    points = rng.uniform(-3.0, 5.0, (4000, 3)).astype(np.float32)
    points[:500] = np.round(points[:500] / 0.1) * 0.1  # many on voxel boundaries
    points = np.concatenate([points, points[:300]])  # duplicates
    got = voxel_downsample(points, size)
    expected = brute_force_voxels(points, size)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(sorted_rows(got.astype(np.float64)), sorted_rows(expected), atol=1e-6)
    assert voxel_downsample(points, 0.0) is not None and voxel_downsample(points, 0.0).shape == points.shape
    assert voxel_downsample(np.empty((0, 3), np.float32), size).shape == (0, 3)


# ---------------------------------------------------------------------------------------------------- live node


WIDTH, HEIGHT, FX, FY, CX, CY = 160, 120, 150.0, 150.0, 88.3, 57.6
NAV_FRAME = "cam_nav_optical_frame"
WALL = 2.2
MOUNT_HEIGHT, PITCH, BOX_FRONT, BOX_HALF_WIDTH, BOX_HEIGHT, BACK_WALL = 0.5, 0.3, 1.6, 0.25, 0.35, 9.0


def rays() -> tuple[FloatArray, FloatArray]:
    u, v = np.meshgrid(np.arange(WIDTH, dtype=np.float64), np.arange(HEIGHT, dtype=np.float64))
    return (u - CX) / FX, (v - CY) / FY


def floor_and_box_depth() -> FloatArray:
    """Exact Z of each pixel: the floor, a box on it, a back wall (beyond the filter's range)."""
    x_n, y_n = rays()
    x_axis, y_axis, z_axis = optical_axes(PITCH)
    # World direction of each pixel's ray for Z = 1: x_n * x + y_n * y + z.
    direction = x_n[..., None] * x_axis + y_n[..., None] * y_axis + z_axis
    fwd, lft, up = direction[..., 0], direction[..., 1], direction[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(up < 0, -MOUNT_HEIGHT / up, np.inf)  # camera at up = MOUNT_HEIGHT
        t_box = BOX_FRONT / fwd
        box_left, box_up = t_box * lft, MOUNT_HEIGHT + t_box * up
        t_box = np.where((np.abs(box_left) <= BOX_HALF_WIDTH) & (box_up >= 0) & (box_up <= BOX_HEIGHT), t_box, np.inf)
        t_back = BACK_WALL / fwd
    z = np.minimum(np.minimum(t_floor, t_box), t_back)
    assert np.all(np.isfinite(z)) and np.all(z > 0)
    return z


def _nav_client(client: Client) -> dict[str, dict[int, Any]]:
    got: dict[str, dict[int, Any]] = {"scan": {}, "points_filtered": {}}

    def store(name: str):  # noqa: ANN202
        def callback(msg: Any) -> None:
            got[name][msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = msg
        return callback

    client.add_subscription(LaserScan, "scan", store("scan"))
    client.add_subscription(PointCloud2, "points_filtered", store("points_filtered"))
    return got


def _send(client: Client, got: dict[str, dict[int, Any]], index: int, stamp: int) -> tuple[Any, Any, Any]:
    info = camera_info(WIDTH, HEIGHT, FX, FY, CX, CY, frame_id=NAV_FRAME)
    from oracles import rgb_image

    image = rgb_image(scene_rgb(WIDTH, HEIGHT, index, 2), frame_id=NAV_FRAME)
    out = client.send(image, info, stamp, wanted=("depth", "points"))
    for _ in range(500):
        if stamp in got["scan"] and stamp in got["points_filtered"]:
            break
        rclpy.spin_once(client.node, timeout_sec=0.02)
    assert stamp in got["scan"] and stamp in got["points_filtered"], "no navigation output for this frame"
    return out, got["scan"][stamp], got["points_filtered"][stamp]


def test_navigation_outputs_through_the_node(depth_node: Any, tmp_path: Path) -> None:
    wall = np.full((HEIGHT, WIDTH), WALL, np.float32)
    scene = floor_and_box_depth().astype(np.float32)
    # Output maps at the image's own size: the depth image is exactly the map (no resampling).
    contract = make_contract("metric_depth", 24, 32)
    model = save_model(scene_model([wall, scene], contract, (24, 32)), tmp_path, "nav_scenes.onnx")
    params = {"model": str(model), "navigation_outputs": True, "scan_height": 3, "range_min": 0.2,
              "range_max": 4.0, "voxel_size": 0.1, "filter_max_range": 5.0, "camera_height": MOUNT_HEIGHT,
              "camera_pitch": PITCH, "min_obstacle_height": 0.05, "max_obstacle_height": 2.0}
    process, client = depth_node(params)
    assert client.node.count_publishers(f"{process.namespace}/scan") == 1
    got = _nav_client(client)
    client.wait_ready(process)  # the node's scan and points_filtered writers match the new subscriptions

    # 1. Fronto-parallel wall: r(theta) = d / cos(theta) at the message's own angles; headers.
    stamp = 1_700_000_000_123_456_789
    out, scan, cloud = _send(client, got, 0, stamp)
    np.testing.assert_array_equal(image_msg_to_array(out.depth), wall)
    for msg in (scan, cloud):
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == stamp
    assert scan.header.frame_id == "cam_nav_frame"  # the optical frame's x-forward sibling
    assert cloud.header.frame_id == NAV_FRAME
    ranges = np.asarray(scan.ranges, np.float64)
    assert ranges.size == WIDTH
    angles = scan.angle_min + np.arange(WIDTH) * np.float64(scan.angle_increment)
    assert scan.angle_min == pytest.approx(-math.atan((WIDTH - 1 - CX) / FX), abs=1e-6)
    assert scan.angle_max == pytest.approx(math.atan(CX / FX), abs=1e-6)
    assert angles[-1] == pytest.approx(scan.angle_max, abs=1e-6)
    np.testing.assert_allclose(ranges, WALL / np.cos(angles), rtol=3e-7)
    assert (scan.range_min, scan.range_max, scan.time_increment) == (pytest.approx(0.2), 4.0, 0.0)
    assert scan.scan_time == 0.0  # the first frame: the period is not known yet

    # 2. Pitched camera over a floor with a box: the floor is dropped, the box stays, the back wall
    #    (9 m) is beyond filter_max_range; the cloud is the brute-force voxelisation of the node's
    #    own organised cloud after the same (independently written) filters.
    stamp2 = stamp + 100_000_000
    out, scan, cloud = _send(client, got, 1, stamp2)
    assert scan.scan_time == pytest.approx(0.1)  # the frame period, from the stamps
    assert (cloud.height, cloud.is_dense) == (1, True)
    filtered, _ = cloud_msg_to_arrays(cloud)
    filtered = filtered.reshape(-1, 3).astype(np.float64)
    organised, _ = cloud_msg_to_arrays(out.points)
    source = organised.reshape(-1, 3).astype(np.float64)
    world = optical_to_world(source, MOUNT_HEIGHT, PITCH)
    keep = (np.linalg.norm(source, axis=1) <= 5.0) & (world[:, 2] >= 0.05) & (world[:, 2] <= 2.0)
    expected = brute_force_voxels(organised.reshape(-1, 3)[keep], 0.1)
    assert filtered.shape == expected.shape
    np.testing.assert_allclose(sorted_rows(filtered), sorted_rows(expected), atol=1e-5)
    # Against the scene itself: only box points (front face at 1.6 m, up to 0.35 m), none of the floor.
    filtered_world = optical_to_world(filtered, MOUNT_HEIGHT, PITCH)
    assert filtered.shape[0] >= 10
    assert np.all(filtered_world[:, 2] >= 0.05 - 1e-5) and np.all(filtered_world[:, 2] <= BOX_HEIGHT + 1e-5)
    assert np.all(np.abs(filtered_world[:, 0] - BOX_FRONT) < 1e-4)
    assert np.all(np.abs(filtered_world[:, 1]) <= BOX_HALF_WIDTH + 1e-4)

    # 3. Runtime changes: an explicit scan frame; the wall beyond range_max reads +inf; the floor
    #    comes back once the mounting is unknown (camera_height 0).
    set_ok(client, scan_frame="base_scan", range_max=2.0, camera_height=0.0, voxel_size=0.0)
    stamp3 = stamp2 + 100_000_000
    out, scan, cloud = _send(client, got, 0, stamp3)
    assert scan.header.frame_id == "base_scan"
    assert np.all(np.asarray(scan.ranges) == np.inf)
    stamp4 = stamp3 + 100_000_000
    out, scan, cloud = _send(client, got, 1, stamp4)
    filtered, _ = cloud_msg_to_arrays(cloud)
    organised, _ = cloud_msg_to_arrays(out.points)
    source = organised.reshape(-1, 3)
    assert filtered.shape[1] == np.count_nonzero(np.linalg.norm(source.astype(np.float64), axis=1) <= 5.0)
    heights = optical_to_world(filtered.reshape(-1, 3).astype(np.float64), MOUNT_HEIGHT, PITCH)[:, 2]
    assert np.count_nonzero(np.abs(heights) < 1e-4) > 100, "the floor must be back without a mounting"


def test_filtered_cloud_of_the_analytic_scene() -> None:
    """The pure pipeline on the same floor + box scene (no DDS), with a stride."""
    camera = CameraModel.from_camera_info(camera_info(WIDTH, HEIGHT, FX, FY, CX, CY))
    depth = floor_and_box_depth().astype(np.float32)
    points = filtered_cloud(depth, camera, 2, 5.0, 0.0, Mounting(MOUNT_HEIGHT, PITCH, 0.05, 2.0))
    world = optical_to_world(points.astype(np.float64), MOUNT_HEIGHT, PITCH)
    assert points.shape[0] > 10
    assert np.all(np.abs(world[:, 0] - BOX_FRONT) < 1e-4) and np.all(world[:, 2] >= 0.05 - 1e-6)


# ---------------------------------------------------------------------------------------------------- Nav2 recipe


def test_nav2_recipe_matches_the_node() -> None:
    """config/nav2_costmap_depth.yaml: the node's topics (launch namespace), types, and ranges within
    the node's own limits (depth.yaml defaults)."""
    import yaml

    from depth_ros.ros.parameters import SPECS

    repo = Path(__file__).resolve().parents[2]
    launch_namespace = "camera"  # launch/depth.launch.py's default
    recipe = yaml.safe_load((repo / "config" / "nav2_costmap_depth.yaml").read_text())
    layer = recipe["local_costmap"]["local_costmap"]["ros__parameters"]["voxel_layer"]
    assert layer["plugin"] == "nav2_costmap_2d::VoxelLayer"
    assert layer["observation_sources"].split() == ["depth_points"]
    points, scan = layer["depth_points"], layer["depth_scan"]
    assert (points["topic"], points["data_type"]) == (f"/{launch_namespace}/points_filtered", "PointCloud2")
    assert (scan["topic"], scan["data_type"]) == (f"/{launch_namespace}/scan", "LaserScan")
    assert scan["inf_is_valid"] is True
    for source, node_limit in ((points, SPECS["filter_max_range"].default), (scan, SPECS["range_max"].default)):
        assert source["marking"] and source["clearing"]
        assert source["obstacle_max_range"] < source["raytrace_max_range"] <= node_limit
        assert source["observation_persistence"] == 0.0
        assert source["expected_update_rate"] > 0
    assert points["min_obstacle_height"] == SPECS["min_obstacle_height"].default
