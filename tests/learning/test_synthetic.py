"""The procedural scene generator: depth of analytic scenes against pinhole formulas; determinism; throughput."""

from __future__ import annotations

import math
import time

import numpy as np

from depth_ros.synthetic.generator import sample
from depth_ros.synthetic.scene import Box, Material, PinholeCamera, Plane, Scene, render

GREY = Material((0.5, 0.5, 0.5), (0.2, 0.2, 0.2), "checker", 2.0)
W, H, FX, FY, CX, CY = 160, 120, 140.0, 142.0, 81.3, 58.7


def test_fronto_parallel_wall_has_constant_depth() -> None:
    camera = PinholeCamera(W, H, FX, FY, CX, CY, position=(0.3, 1.2, -1.0))
    frame = render(Scene([Plane(2, 4.0, -1.0, GREY)]), camera)
    np.testing.assert_allclose(frame.depth, 5.0, rtol=1e-6)  # wall at Z = 4, camera at Z = -1
    assert frame.rgb.shape == (H, W, 3) and frame.rgb.dtype == np.uint8


def test_floor_depth_per_row_is_h_fy_over_v_minus_cy() -> None:
    h = 1.3
    camera = PinholeCamera(W, H, FX, FY, CX, CY, position=(0.0, h, 0.0))
    frame = render(Scene([Plane(1, 0.0, 1.0, GREY)]), camera)
    v = np.arange(H, dtype=np.float64)[:, None]
    below = (v > CY).ravel()
    expected = h * FY / (v[below] - CY)
    np.testing.assert_allclose(frame.depth[below], np.broadcast_to(expected, (below.sum(), W)), rtol=1e-5)
    assert np.isinf(frame.depth[~below]).all()  # above the horizon nothing is hit


def test_pitched_camera_floor_follows_the_ground_plane_formula() -> None:
    h, pitch = 1.0, math.radians(20.0)
    camera = PinholeCamera(W, H, FX, FY, CX, CY, position=(0.0, h, 0.0), pitch=pitch)
    frame = render(Scene([Plane(1, 0.0, 1.0, GREY)]), camera)
    y_n = (np.arange(H, dtype=np.float64)[:, None] - CY) / FY
    inverse = (y_n * math.cos(pitch) + math.sin(pitch)) / h  # 1/Z of a floor h below a camera pitched down
    seen = (inverse > 0).ravel()
    np.testing.assert_allclose(1.0 / frame.depth[seen], np.broadcast_to(inverse[seen], (seen.sum(), W)), rtol=1e-5)


def test_box_face_and_occlusion() -> None:
    camera = PinholeCamera(W, H, FX, FY, CX, CY, position=(0.0, 1.0, 0.0))
    box = Box(centre=(0.0, 1.0, 3.0), half=(0.5, 0.5, 0.5), yaw=0.0, material=GREY)
    frame = render(Scene([Plane(2, 10.0, -1.0, GREY)], [box]), camera)
    # The box's near face is Z = 2.5 and spans x, y in [-0.5, 0.5] around the optical axis (camera at Y = 1).
    u = np.arange(W)[None, :]
    v = np.arange(H)[:, None]
    inside = (np.abs((u - CX) / FX * 2.5) < 0.49) & (np.abs((v - CY) / FY * 2.5) < 0.49)
    outside = (np.abs((u - CX) / FX * 2.5) > 0.51) | (np.abs((v - CY) / FY * 2.5) > 0.51)
    np.testing.assert_allclose(frame.depth[inside], 2.5, rtol=1e-6)
    np.testing.assert_allclose(frame.depth[outside], 10.0, rtol=1e-6)


def test_rotated_box_corner_is_nearest() -> None:
    # A cube turned 45 degrees shows its vertical edge at Z = 3 − half·√2 straight ahead.
    camera = PinholeCamera(W, H, FX, FY, W / 2 - 0.5, CY, position=(0.0, 1.0, 0.0))
    box = Box(centre=(0.0, 1.0, 3.0), half=(0.5, 0.5, 0.5), yaw=math.pi / 4, material=GREY)
    frame = render(Scene([], [box]), camera)
    centre_row = int(round(CY))
    nearest = frame.depth[centre_row].min()
    assert abs(nearest - (3.0 - 0.5 * math.sqrt(2))) < 0.02  # the edge falls between two pixel columns


def test_random_frames_are_deterministic_varied_and_plausible() -> None:
    a = sample(3, 17, 128, 96)
    b = sample(3, 17, 128, 96)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth, b.depth)
    frames = []
    t0 = time.perf_counter()
    for i in range(24):
        frames.append(sample(1, i, 128, 96))
    seconds = (time.perf_counter() - t0) / len(frames)
    print(f"synthetic 128x96: {1 / seconds:.1f} frames/s on one core")
    focal = {round(f.camera.fx, 3) for f in frames}
    assert len(focal) == len(frames)  # random intrinsics
    for f in frames:
        finite = np.isfinite(f.depth)
        assert finite.mean() > 0.2  # something is hit (outdoors the sky is not)
        assert f.depth[finite].min() > 0.05
        assert f.rgb.std() > 3  # not a flat image
