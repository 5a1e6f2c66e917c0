"""Live: `scale_source: points` through raw lenses whose CameraInfo D is zero-padded (6, 9, 16 values).

Drivers publish D longer than the model's count (plumb_bob with 6 values, rational_polynomial with 9
or 16), padded with zeros; OpenCV only takes 4/5/8/12/14 coefficients. A real depth_node process
(rclpy + Fast DDS) gets, for each lens, a raw image of the tilted plane n . X = d, a relative
oracle's disparity of it and a metric reference cloud of it in the optical frame; the published
depth must be the plane's true depth along each raw pixel's ray.

Ground truth comes from the scene and this test's own lens model (oracles.lens_rays inverts the
written-out Brown-Conrady / rational forward model), never from the code under test:
- the oracle outputs d = A_i / Z + B_i at every pixel (network input = image size, stretch, so each
  network pixel is one image pixel); (A_i, B_i) differ per lens and the node is not told them;
- the reference points lie on the rays of pixel centres, at the plane's depth there, so the fit
  is exact: s = 1 / A_i, t = -B_i / A_i, and 1 / (s d + t) = Z at every pixel.
Each frame's scale can only come from that frame's own reference (different A_i, no smoothing).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from oracles import lens_rays, make_contract
from ros_harness import Client, NodeProcess, depth_array
from sensor_msgs.msg import PointCloud2
from test_node_geometry import FRAME, TILTED, Pinhole, save_model, scene_image, scene_model
from test_scale_recovery import cloud_msg

StartNode = Callable[..., tuple[NodeProcess, Client]]
W, H = 160, 120
CAM = Pinhole(150.0, 140.0, 81.3, 58.7)
RTOL = 1e-5  # float32 disparity, reference and depth; the fit itself is exact
REFERENCE_STRIDE = 3  # reference points on every third pixel's ray (2160 points, 26 kB)

# (distortion_model, D as the driver publishes it, the model's own coefficients, the oracle's A, B)
LENSES: list[tuple[str, list[float], list[float], float, float]] = [
    ("plumb_bob", [-0.28, 0.09, 0.0012, -0.0018, -0.01, 0.0], [-0.28, 0.09, 0.0012, -0.0018, -0.01], 2.7, 0.35),
    ("rational_polynomial", [0.12, -0.05, 0.0012, -0.0008, 0.01, 0.08, -0.03, 0.006, 0.0],
     [0.12, -0.05, 0.0012, -0.0008, 0.01, 0.08, -0.03, 0.006], 1.9, 0.6),
    ("rational_polynomial", [-0.25, 0.08, 0.0009, -0.0011, -0.01, 0.05, 0.01, 0.002, *[0.0] * 8],
     [-0.25, 0.08, 0.0009, -0.0011, -0.01, 0.05, 0.01, 0.002], 3.4, 0.1),
]


def plane_truth(model: str, coeffs: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Z, x_n, y_n) at every raw pixel: the plane TILTED met by the pixel's undistorted ray."""
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    xn, yn = lens_rays(u, v, CAM.fx, CAM.fy, CAM.cx, CAM.cy, model, coeffs)
    (nx, ny, nz), distance = TILTED
    z = distance / (nx * xn + ny * yn + nz)
    return z, xn, yn


def test_points_scale_through_zero_padded_distortion(depth_node: StartNode, tmp_path: Path) -> None:
    truths = [plane_truth(model, coeffs) for model, _, coeffs, _, _ in LENSES]
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    (nx, ny, nz), distance = TILTED
    pinhole = distance / (nx * (u - CAM.cx) / CAM.fx + ny * (v - CAM.cy) / CAM.fy + nz)
    for (z, _, _), (model, published, coeffs, _, _) in zip(truths, LENSES, strict=True):
        assert np.all((z > 1.0) & (z < 4.0))
        # The lens really matters: ignoring it, or the rational denominator, is off by far more than RTOL.
        assert np.max(np.abs(pinhole / z - 1.0)) > 100 * RTOL, (model, len(published))
        if model == "rational_polynomial":
            numerator_only = plane_truth("plumb_bob", coeffs[:5])[0]
            assert np.max(np.abs(numerator_only / z - 1.0)) > 100 * RTOL, (model, len(published))
    maps = [(a / z + b).astype(np.float32) for (z, _, _), (_, _, _, a, b) in zip(truths, LENSES, strict=True)]
    path = save_model(scene_model(maps, make_contract("relative_disparity", H, W, "stretch"), (H, W)),
                      tmp_path, "padded_lenses.onnx")
    process, client = depth_node({"model": str(path), "scale_source": "points", "scale_smoothing": 0.0,
                                  "diagnostics_period": 0.2, "min_depth": 0.1, "max_depth": 20.0},
                                 inputs={"reference_points": PointCloud2})
    pub = client.pubs["reference_points"]

    stamp = 1_700_000_100_000_000_000
    for index, ((model, published, _, a, b), (z, xn, yn)) in enumerate(zip(LENSES, truths, strict=True)):
        stamp += 100_000_000
        s = (slice(None, None, REFERENCE_STRIDE), slice(None, None, REFERENCE_STRIDE))
        xyz = np.stack([xn[s] * z[s], yn[s] * z[s], z[s]], axis=-1).reshape(-1, 3)
        client.publish_acked(pub, cloud_msg(xyz, stamp, FRAME))  # in the node before the frame that uses it
        info = CAM.info(W, H, distortion_model=model, d=published)
        out = client.send(scene_image(W, H, index, len(LENSES)), info, stamp, wanted=("depth",))
        assert out.depth is not None
        depth = depth_array(out.depth)
        assert depth.shape == (H, W) and np.all(np.isfinite(depth)), f"{model} D[{len(published)}]"
        np.testing.assert_allclose(depth, z, rtol=RTOL, err_msg=f"{model} with {len(published)} coefficients")

        diag = client.latest_diagnostics()
        for _ in range(20):  # the frame's counters reach the next report
            if int(diag["frames_published"]) == index + 1:
                break
            diag = client.latest_diagnostics()
        assert int(diag.get("skipped_processing_error", "0")) == 0, diag.get("last_problem", diag)
        assert (diag["frames_published"], diag["frames_skipped"], diag["frames_dropped"]) == \
            (str(index + 1), "0", "0"), diag
        assert diag["scale_status"] == "fitting" and diag["scale_fits"] == str(index + 1), diag
        assert float(diag["scale"]) == pytest.approx(1.0 / a, rel=RTOL)
        assert float(diag["scale_shift"]) == pytest.approx(-b / a, rel=1e-4)
    assert process.process.poll() is None
