"""Online scale recovery: the robust inverse-depth fit, its references, and the live node.

Ground truth is independent of the code under test: the real RealSense D435 and TUM RGB-D depth
frames in data/, and an analytic floor + wall scene ray-cast here in a world frame. The "relative
oracle" is an ONNX model (real ONNX Runtime) whose output is the ground-truth disparity under an
affine map the node is not told (d = a / D + b, plus 1 % multiplicative noise): the node must find
the metric scale from the reference alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from oracles import camera_info as make_camera_info
from oracles import lens_distort, lens_rays, make_contract, rgb_image, save_oracle
from ros_harness import Client, NodeProcess
from sensor_msgs.msg import Image, PointCloud2, PointField
from test_real_data import (
    TUM_CX,
    TUM_CY,
    TUM_D,
    TUM_FX,
    TUM_FY,
    d435_ground_truth_mm,
    d435_messages,
    depth_32fc1,
    plumb_bob_project,
    tum_ground_truth,
)

from depth_ros.core.camera import CameraModel
from depth_ros.core.scale_recovery import (
    DepthReference,
    Rejection,
    ScaleFilter,
    ScaleFit,
    depth_samples,
    fit_inverse_depth,
    floor_samples,
    project_points,
    reference_depth_metres,
)

StartNode = Callable[..., tuple[NodeProcess, Client]]
RANGE = {"min_depth": 0.1, "max_depth": 20.0}
# The unknown affine map of the relative oracle: d = A / D + B.
A, B = 2.7, 0.35
FRAME_S = 100_000_000  # 10 Hz stamps


# ----------------------------------------------------------------------------- scenes and oracles


def relative_oracle(truth_m: np.ndarray, noise: float = 0.01, seed: int = 0) -> np.ndarray:
    """d = A / D + B with multiplicative noise; holes (D = 0) get a plausible value, never scored."""
    valid = truth_m > 0
    d = np.full(truth_m.shape, A / 2.0 + B, dtype=np.float64)
    d[valid] = A / truth_m[valid].astype(np.float64) + B
    d *= 1.0 + noise * np.random.default_rng(seed).standard_normal(d.shape)
    return d.astype(np.float32)


def sparse_reference(truth_m: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A float32 image holding ``fraction`` of the valid ground-truth pixels, NaN elsewhere."""
    rng = np.random.default_rng(seed)
    valid = np.flatnonzero(truth_m.ravel() > 0)
    chosen = rng.choice(valid, size=int(fraction * valid.size), replace=False)
    out = np.full(truth_m.size, np.nan, dtype=np.float32)
    out[chosen] = truth_m.ravel()[chosen]
    return out.reshape(truth_m.shape)


def depth_msg(metres: np.ndarray, encoding: str, stamp_ns: int, frame_id: str = "camera") -> Image:
    if encoding == "16UC1":
        data = np.where(np.isfinite(metres), np.rint(metres * 1000.0), 0).astype("<u2")
    else:
        data = metres.astype("<f4")
    msg = Image(height=metres.shape[0], width=metres.shape[1], encoding=encoding, is_bigendian=False,
                step=metres.shape[1] * data.itemsize)
    msg.data = data.tobytes()
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    return msg


def cloud_msg(xyz: np.ndarray, stamp_ns: int, frame_id: str) -> PointCloud2:
    """An unorganised xyz FLOAT32 cloud (height 1), as a LiDAR driver publishes."""
    msg = PointCloud2(height=1, width=xyz.shape[0], is_bigendian=False, point_step=12,
                      row_step=12 * xyz.shape[0], is_dense=True)
    msg.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, n in enumerate("xyz")]
    msg.data = np.ascontiguousarray(xyz, dtype="<f4").tobytes()
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    return msg


def floor_wall_scene(width: int, height: int, f: float, camera_height: float, pitch: float,
                     wall: float) -> np.ndarray:
    """Depth Z (optical axis) of a floor and a vertical wall ``wall`` m ahead, by ray casting in a world frame.

    World: X right, Y forward (horizontal), Z up; camera at (0, 0, camera_height) pitched down by
    ``pitch``. Optical axes in the world: z = (0, cos p, -sin p), y (image down) = (0, -sin p, -cos p),
    x = y × z = (1, 0, 0). A ray (x_n, y_n, 1) has optical depth = its parameter λ.
    """
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    xn, yn = (u - (width - 1) / 2) / f, (v - (height - 1) / 2) / f
    c, s = math.cos(pitch), math.sin(pitch)
    dir_forward = yn * -s + c  # world Y component of the ray
    dir_up = yn * -c - s  # world Z component
    with np.errstate(divide="ignore", invalid="ignore"):
        to_floor = np.where(dir_up < 0, camera_height / -dir_up, np.inf)
        to_wall = np.where(dir_forward > 0, wall / dir_forward, np.inf)
    del xn
    return np.minimum(to_floor, to_wall)


def tum_rays(pixels: np.ndarray) -> np.ndarray:
    """Normalised undistorted rays (N, 2) of TUM pixels (N, 2): fixed-point inversion of plumb_bob."""
    k1, k2, p1, p2, k3 = TUM_D
    xd, yd = (pixels[:, 0] - TUM_CX) / TUM_FX, (pixels[:, 1] - TUM_CY) / TUM_FY
    x, y = xd.copy(), yd.copy()
    for _ in range(500):
        r2 = x * x + y * y
        radial = 1.0 + k1 * r2 + k2 * r2**2 + k3 * r2**3
        x = (xd - (2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x))) / radial
        y = (yd - (p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y)) / radial
    u, v = plumb_bob_project(np.stack([x, y, np.ones_like(x)], axis=1), TUM_FX, TUM_FY, TUM_CX, TUM_CY, TUM_D)
    assert np.abs(u - pixels[:, 0]).max() < 1e-4 and np.abs(v - pixels[:, 1]).max() < 1e-4
    return np.stack([x, y], axis=1)


def absrel(depth: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(AbsRel over GT-valid pixels the node published, fraction of GT-valid pixels published)."""
    valid = truth > 0
    published = valid & np.isfinite(depth)
    rel = np.abs(depth[published].astype(np.float64) - truth[published]) / truth[published]
    return float(rel.mean()), float(published.sum() / valid.sum())


# ----------------------------------------------------------------------------- the fit (pure)


def test_fit_recovers_exact_affine_map_and_rejects_outliers() -> None:
    rng = np.random.default_rng(3)
    depth = rng.uniform(0.4, 8.0, 5000)
    x = A / depth + B
    fit = fit_inverse_depth(x, 1.0 / depth)
    assert isinstance(fit, ScaleFit)
    assert fit.scale == pytest.approx(1.0 / A, rel=1e-9) and fit.shift == pytest.approx(-B / A, rel=1e-9)
    assert fit.inlier_ratio == 1.0

    # 40 % of the reference is garbage (another surface, a misregistered LiDAR): the fit ignores it.
    noisy_x = x * (1.0 + 0.01 * rng.standard_normal(x.size))
    reference = 1.0 / depth
    wrong = rng.random(x.size) < 0.4
    reference[wrong] = rng.uniform(0.1, 3.0, wrong.sum())
    fit = fit_inverse_depth(noisy_x, reference)
    assert isinstance(fit, ScaleFit)
    assert fit.scale == pytest.approx(1.0 / A, rel=0.01) and fit.shift == pytest.approx(-B / A, abs=0.01)
    assert 0.55 < fit.inlier_ratio < 0.65

    # Scale-only (metric models): x = 1 / (1.25 D) -> s = 1.25.
    fit = fit_inverse_depth(1.0 / (1.25 * depth), 1.0 / depth, with_shift=False)
    assert isinstance(fit, ScaleFit) and fit.scale == pytest.approx(1.25, rel=1e-9) and fit.shift == 0.0


def test_fit_refuses_what_it_cannot_know() -> None:
    rng = np.random.default_rng(4)
    few = fit_inverse_depth(rng.random(10) + 1, rng.random(10) + 1, min_points=50)
    assert isinstance(few, Rejection) and few.key == "too_few_points"
    for seed in range(5):  # a model unrelated to the reference
        noise = np.random.default_rng(seed).random((2, 2000)) + 1
        unrelated = fit_inverse_depth(noise[0], noise[1])
        assert isinstance(unrelated, Rejection) and unrelated.key in ("inconsistent", "degenerate"), unrelated
    flat = fit_inverse_depth(np.full(500, 2.0), np.full(500, 0.5))  # one depth: shift undetermined
    assert isinstance(flat, Rejection) and flat.key == "degenerate"
    nans = fit_inverse_depth(np.full(500, np.nan), np.full(500, 0.5))
    assert isinstance(nans, Rejection) and nans.key == "too_few_points"


def test_filter_is_exponential_in_message_time_and_resets_when_time_runs_back() -> None:
    f = ScaleFilter()
    f.update(2.0, 0.1, stamp_s=10.0, time_constant_s=0.5)
    assert f.value == pytest.approx((2.0, 0.1))  # first fit taken as is
    f.update(2.0 * math.e, 0.3, stamp_s=10.5, time_constant_s=0.5)  # one time constant later
    alpha = 1.0 - math.exp(-1.0)
    assert f.value == pytest.approx((2.0 * math.exp(alpha), 0.1 + 0.2 * alpha))
    f.update(5.0, 0.0, stamp_s=10.5, time_constant_s=0.5)  # same stamp: no time passed, no change
    assert f.value == pytest.approx((2.0 * math.exp(alpha), 0.1 + 0.2 * alpha))
    f.update(5.0, 0.0, stamp_s=2.0, time_constant_s=0.5)  # a bag restarted
    assert f.value == pytest.approx((5.0, 0.0))
    f.update(3.0, 0.2, stamp_s=2.4, time_constant_s=0.5)  # smoothing resumes on the new timeline
    alpha = 1.0 - math.exp(-0.4 / 0.5)
    assert f.value == pytest.approx((5.0 * math.exp(alpha * math.log(3.0 / 5.0)), 0.2 * alpha))
    f.update(7.0, 0.5, stamp_s=2.1, time_constant_s=0.5)  # a loop of a 0.3 s bag: a short jump back counts too
    assert f.value == pytest.approx((7.0, 0.5))


# ----------------------------------------------------------------------------- references (pure)


def test_reference_images_mark_invalid_pixels() -> None:
    mm = np.array([[0, 1500], [65535, 250]], dtype=np.uint16)
    metres = reference_depth_metres(mm, "16UC1")
    assert np.isnan(metres[0, 0]) and metres[0, 1] == pytest.approx(1.5) and metres[1, 0] == pytest.approx(65.535)
    f = np.array([[np.nan, 0.0], [np.inf, 2.5]], dtype=np.float32)
    metres = reference_depth_metres(f, "32FC1")
    assert np.isnan(metres[:1]).all() and np.isnan(metres[1, 0]) and metres[1, 1] == 2.5
    with pytest.raises(ValueError, match="32FC1 metres or 16UC1 millimetres"):
        reference_depth_metres(mm, "rgb8")


def test_lower_resolution_reference_lands_on_the_pixels_it_covers() -> None:
    # A 4x3 reference of a 8x6 image: reference pixel (u, v) covers image pixels 2u..2u+1, 2v..2v+1.
    u, v = np.meshgrid(np.arange(4, dtype=np.float32), np.arange(3, dtype=np.float32))
    ref = DepthReference(0.0, 4, 3, u.ravel(), v.ravel(), np.arange(12, dtype=np.float64))
    samples = depth_samples(ref, 8, 6)
    assert np.all(samples.cols // 2 == u.ravel()) and np.all(samples.rows // 2 == v.ravel())
    same = depth_samples(ref, 4, 3)
    assert np.all(same.cols == u.ravel()) and np.all(same.rows == v.ravel())


def test_points_project_onto_their_pixels_through_the_tum_lens() -> None:
    """Points on the undistorted rays of chosen pixels come back on those pixels (plumb_bob forward model)."""
    info = make_camera_info(640, 480, TUM_FX, TUM_FY, TUM_CX, TUM_CY, d=list(TUM_D))
    camera = CameraModel.from_camera_info(info)
    rng = np.random.default_rng(5)
    flat = rng.choice(640 * 480, 400, replace=False)
    pixels = np.stack([flat % 640, flat // 640], axis=1).astype(np.float64)
    rays = tum_rays(pixels)
    z = rng.uniform(0.5, 5.0, 400)
    xyz = np.stack([rays[:, 0] * z, rays[:, 1] * z, z], axis=1)
    u, v = plumb_bob_project(xyz, TUM_FX, TUM_FY, TUM_CX, TUM_CY, TUM_D)  # the test's own lens model
    assert np.abs(u - pixels[:, 0]).max() < 1e-3 and np.abs(v - pixels[:, 1]).max() < 1e-3
    # A second point behind each one on the same ray, and points behind the camera: never used.
    behind = np.concatenate([xyz * 1.5, xyz * np.array([1, 1, -1])])
    samples = project_points(np.concatenate([xyz, behind]).astype(np.float32), camera)
    got = {(int(r), int(c)): 1.0 / inv for r, c, inv in zip(samples.rows, samples.cols, samples.inverse, strict=True)}
    for (px, py), depth in zip(pixels.astype(int), z, strict=True):
        assert got[(py, px)] == pytest.approx(depth, rel=1e-6)  # the nearer of the two points on the ray
    assert len(got) == 400


# Lenses whose CameraInfo D is longer than the model's count (zero-padded, as drivers publish it):
# OpenCV accepts 4/5/8/12/14 coefficients only. (model, D as published, the model's own coefficients)
WIDE_RATIONAL = (0.12, -0.05, 0.0012, -0.0008, 0.01, 0.08, -0.03, 0.006)  # k4..k6 non-zero
BARREL_RATIONAL = (-0.25, 0.08, 0.0009, -0.0011, -0.01, 0.05, 0.01, 0.002)
FISHEYE = (-0.01, 0.002, -0.0005, 0.0001)
PADDED_LENSES = [
    ("plumb_bob", (*TUM_D, 0.0), TUM_D),
    ("rational_polynomial", (*WIDE_RATIONAL, 0.0), WIDE_RATIONAL),
    ("rational_polynomial", (*BARREL_RATIONAL, *(0.0,) * 8), BARREL_RATIONAL),
    ("rational_polynomial", (*TUM_D, *(0.0,) * 11), (*TUM_D, 0.0, 0.0, 0.0)),
    ("equidistant", (*FISHEYE, 0.0), FISHEYE),
]


@pytest.mark.parametrize(("model", "published", "coeffs"), PADDED_LENSES,
                         ids=[f"{m}-{len(d)}" + ("-k456" if any(c[5:]) else "") for m, d, c in PADDED_LENSES])
def test_points_project_through_a_zero_padded_distortion_vector(
        model: str, published: tuple[float, ...], coeffs: tuple[float, ...]) -> None:
    """Points on the rays of chosen pixels (this test's own lens inversion) come back on those pixels
    with inverse depth exactly 1/z, whatever length D is published with."""
    width, height = 320, 240
    fx, fy, cx, cy = TUM_FX / 2, TUM_FY / 2, TUM_CX / 2, TUM_CY / 2
    camera = CameraModel.from_camera_info(make_camera_info(width, height, fx, fy, cx, cy, distortion_model=model,
                                                           d=list(published)))
    assert not camera.rectified
    rng = np.random.default_rng(len(published))
    flat = rng.choice(width * height, 300, replace=False)
    px, py = (flat % width).astype(np.float64), (flat // width).astype(np.float64)
    xn, yn = lens_rays(px, py, fx, fy, cx, cy, model, coeffs)
    z = rng.uniform(0.5, 5.0, px.size)
    xyz = np.stack([xn * z, yn * z, z], axis=1)
    if model == "rational_polynomial" and any(coeffs[5:]):
        # The rational denominator matters here: dropping k4..k6 would land pixels away.
        xd, _ = lens_distort(xn, yn, "plumb_bob", coeffs[:5])
        assert np.max(np.abs(fx * xd + cx - px)) > 1.0

    samples = project_points(xyz, camera)
    got = {(int(r), int(c)): float(inv) for r, c, inv in zip(samples.rows, samples.cols, samples.inverse,
                                                               strict=True)}
    expected = {(int(r), int(c)): 1.0 / depth for r, c, depth in zip(py, px, z, strict=True)}
    assert got == expected  # every point on its own pixel, inverse depth exactly 1/z

    # The same samples as a camera publishing the model's own coefficients.
    canonical = CameraModel.from_camera_info(make_camera_info(width, height, fx, fy, cx, cy,
                                                              distortion_model=model, d=list(coeffs)))
    again = project_points(xyz, canonical)
    for name in ("rows", "cols", "inverse"):
        np.testing.assert_array_equal(getattr(again, name), getattr(samples, name))


def test_floor_formula_matches_ray_casting_for_a_pitched_camera() -> None:
    info = make_camera_info(320, 240, 250.0, 250.0, 159.5, 119.5)
    camera = CameraModel.from_camera_info(info)
    height, pitch = 1.1, 0.3
    truth = floor_wall_scene(320, 240, 250.0, height, pitch, wall=1e9)  # no wall: floor or sky
    samples = floor_samples(camera, height, pitch, max_range=8.0, max_points=320 * 240)
    assert len(samples) > 0.3 * 320 * 240
    np.testing.assert_allclose(1.0 / samples.inverse, truth[samples.rows, samples.cols], rtol=1e-6)  # float32 rays
    assert truth[samples.rows, samples.cols].max() <= 8.0 + 1e-9


def test_metric_model_is_refined_by_scale_only_through_the_estimator(tmp_path: Path) -> None:
    """A metric model 25 % too far, a 1 % depth reference: the estimator's output comes back to the truth."""
    from depth_ros.core.scale_recovery import NoScaleFit, RecoverySettings, ScaleRecoverer, depth_reference
    from depth_ros.pipeline import DepthEstimator, PipelineSettings

    rgb, truth = tum_ground_truth()
    model = save_oracle(tmp_path, np.where(truth > 0, 1.25 * truth, 0).astype(np.float32),
                        make_contract("metric_depth", 480, 640), (480, 640), name="far.onnx")
    estimator = DepthEstimator.from_path(model, "onnxruntime", settings=PipelineSettings(**RANGE))
    camera = CameraModel.from_camera_info(make_camera_info(640, 480, TUM_FX, TUM_FY, TUM_CX, TUM_CY))
    recoverer = ScaleRecoverer("depth", RecoverySettings(max_age_s=0.1))
    estimator.scale_hook = recoverer
    recoverer.begin_frame(10.0)
    frame = estimator.estimate(rgb, camera)  # no reference yet: a metric model is published unrefined
    assert absrel(frame.depth, truth)[0] == pytest.approx(0.25, rel=1e-5)
    recoverer.set_reference(depth_reference(sparse_reference(truth, 0.01, seed=1), stamp_s=10.0))
    frame = estimator.estimate(rgb, camera)
    assert absrel(frame.depth, truth)[0] < 1e-5
    state = recoverer.state()
    assert state.scale == pytest.approx(1.25, rel=1e-5) and state.shift == 0.0 and state.fits == 1

    # A relative model without any fit raises NoScaleFit (the node skips the frame).
    relative = ScaleRecoverer("depth")
    relative.begin_frame(1.0)
    with pytest.raises(NoScaleFit, match="no reference received"):
        relative(np.ones((480, 640), np.float32), "disparity", camera)


# ----------------------------------------------------------------------------- the live node


def _diagnostics_until(client: Client, predicate: Callable[[dict[str, str]], bool],
                       timeout: float = 10.0) -> dict[str, str]:
    """The node's first /diagnostics report (from now on) that satisfies ``predicate``."""
    deadline = time.monotonic() + timeout
    diag = client.latest_diagnostics()
    while not predicate(diag):
        assert time.monotonic() < deadline, f"diagnostics never matched; last: {diag}"
        diag = client.latest_diagnostics()
    return diag


def _relative_ratio(depth: np.ndarray, previous: np.ndarray) -> float:
    both = np.isfinite(depth) & np.isfinite(previous)
    return float(np.median(depth[both] / previous[both]))


def test_tum_relative_oracle_gets_metric_scale_from_sparse_depth_and_holds_it(
        depth_node: StartNode, tmp_path: Path) -> None:
    rgb, truth = tum_ground_truth()
    model = save_oracle(tmp_path, relative_oracle(truth), make_contract("relative_disparity", 480, 640),
                        (480, 640), name="tum_relative.onnx")
    process, client = depth_node({"model": str(model), "scale_source": "depth", "reference_max_age": 0.25,
                                  "scale_smoothing": 0.5, "diagnostics_period": 0.2, **RANGE},
                                 inputs={"reference_depth": Image})
    pub = client.pubs["reference_depth"]
    info = make_camera_info(640, 480, TUM_FX, TUM_FY, TUM_CX, TUM_CY, d=list(TUM_D))
    image = rgb_image(rgb)
    base = 1_311_868_164_000_000_000

    # No reference yet: relative depth has no metres, so nothing is published; the frame is counted.
    client.publish(image, info, base - FRAME_S)
    _diagnostics_until(client, lambda d: int(d.get("skipped_no_scale_fit", "0")) >= 1)
    client.spin(0.1)  # (an output, had there been one, was published before the skip was counted)
    assert (base - FRAME_S) not in client.outputs
    # A reference the node cannot use is rejected with a reason, and the node carries on.
    bad = depth_msg(truth, "32FC1", base - FRAME_S)
    bad.encoding = "rgb8"
    client.publish_acked(pub, bad)
    diag = _diagnostics_until(client, lambda d: int(d.get("scale_rejected_reference_bad_input", "0")) >= 1)
    assert int(diag["skipped_no_scale_fit"]) >= 1 and int(diag["scale_rejected_reference_bad_input"]) == 1
    assert diag["scale_status"].startswith("no fit yet")

    depths: list[np.ndarray] = []
    ages: dict[int, float] = {}
    for k in range(20):
        stamp = base + k * FRAME_S
        reference_present = k < 6 or k >= 17  # a 1.1 s dropout; frame 5's reference is stale from frame 8 on
        if reference_present:
            client.publish_acked(pub, depth_msg(sparse_reference(truth, 0.01, seed=k), "16UC1", stamp))
        out = client.send(image, info, stamp, wanted=("depth",))
        assert out.depth is not None
        depths.append(depth_32fc1(out.depth))
        if k in (10, 16):  # the first report that counts this frame (one in flight may predate it)
            ages[k] = float(_diagnostics_until(client, lambda d, n=k + 1: int(d["frames_published"]) == n)
                            ["scale_fit_age_s"])
        rel, coverage = absrel(depths[-1], truth)
        assert rel < 0.02, f"frame {k}: AbsRel {rel:.4f}"
        assert coverage > 0.99

    print(f"TUM relative oracle, 1 % reference: AbsRel {absrel(depths[0], truth)[0]:.4f} (first frame), "
          f"{absrel(depths[-1], truth)[0]:.4f} (last)")
    # Steady: frame-to-frame scale changes stay under 1 %; while held (frames 8..16) nothing changes.
    changes = [abs(_relative_ratio(depths[k], depths[k - 1]) - 1.0) for k in range(1, 20)]
    assert max(changes) < 0.01, changes
    for k in range(8, 17):
        np.testing.assert_array_equal(depths[k], depths[7])
    # The fit's age grows with message time while held: last fit at frame 7.
    assert ages[10] == pytest.approx(0.3, abs=2e-3) and ages[16] == pytest.approx(0.9, abs=2e-3)
    diag = client.latest_diagnostics()
    assert float(diag["scale_fit_age_s"]) == 0.0 and diag["scale_status"] == "fitting"
    assert int(diag["scale_rejected_stale_reference"]) == 9
    assert 0.9 < float(diag["scale_inlier_ratio"]) <= 1.0
    assert float(diag["scale"]) == pytest.approx(1.0 / A, rel=0.02)
    assert process.process.poll() is None


def test_d435_half_resolution_32fc1_reference(depth_node: StartNode, tmp_path: Path) -> None:
    """A 320x240 float reference (as a depth camera registered at half resolution publishes it)."""
    info, image = d435_messages()
    truth = (d435_ground_truth_mm().astype(np.float64) / 1000.0).astype(np.float32)
    model = save_oracle(tmp_path, relative_oracle(truth, seed=1), make_contract("relative_disparity", 480, 640),
                        (480, 640), name="d435_relative.onnx")
    _, client = depth_node({"model": str(model), "scale_source": "depth", **RANGE}, inputs={"reference_depth": Image})
    pub = client.pubs["reference_depth"]
    half = sparse_reference(truth[::2, ::2], 0.01, seed=7)
    stamp = 361_000_000_000
    client.publish_acked(pub, depth_msg(half, "32FC1", stamp, frame_id="0"))
    out = client.send(image, info, stamp, wanted=("depth",))
    assert out.depth is not None
    rel, coverage = absrel(depth_32fc1(out.depth), truth)
    print(f"D435 relative oracle, 1 % reference at half resolution: AbsRel {rel:.4f}")
    assert rel < 0.02 and coverage > 0.99


def test_tum_points_reference_through_the_lens(depth_node: StartNode, tmp_path: Path) -> None:
    """A LiDAR-like cloud (1 % of the ground truth, back-projected through the raw lens) as the reference."""
    rgb, truth = tum_ground_truth()
    model = save_oracle(tmp_path, relative_oracle(truth, seed=2), make_contract("relative_disparity", 480, 640),
                        (480, 640), name="tum_relative_points.onnx")
    _, client = depth_node({"model": str(model), "scale_source": "points", **RANGE},
                           inputs={"reference_points": PointCloud2})
    pub = client.pubs["reference_points"]
    sparse = sparse_reference(truth, 0.01, seed=11)
    rows, cols = np.nonzero(np.isfinite(sparse))
    rays = tum_rays(np.stack([cols, rows], axis=1).astype(np.float64))
    z = sparse[rows, cols].astype(np.float64)
    xyz = np.stack([rays[:, 0] * z, rays[:, 1] * z, z], axis=1)
    info = make_camera_info(640, 480, TUM_FX, TUM_FY, TUM_CX, TUM_CY, d=list(TUM_D), frame_id="kinect")
    stamp = 1_311_868_165_000_000_000
    client.publish_acked(pub, cloud_msg(xyz, stamp, "kinect"))
    out = client.send(rgb_image(rgb, frame_id="kinect"), info, stamp, wanted=("depth",))
    assert out.depth is not None
    rel, coverage = absrel(depth_32fc1(out.depth), truth)
    print(f"TUM relative oracle, 1 % of GT as a point cloud: AbsRel {rel:.4f}")
    assert rel < 0.02 and coverage > 0.99


def test_ground_plane_recovers_floor_and_wall_scene(depth_node: StartNode, tmp_path: Path) -> None:
    """A pitched camera sees a floor and a wall; only the floor is known (height, pitch): depth within 2 %."""
    width, height, f = 640, 480, 500.0
    camera_height, pitch = 1.2, 0.25
    truth = floor_wall_scene(width, height, f, camera_height, pitch, wall=4.0).astype(np.float32)
    assert np.isfinite(truth).all() and truth.max() < 20.0
    model = save_oracle(tmp_path, relative_oracle(truth, noise=0.002, seed=3),
                        make_contract("relative_disparity", height, width), (height, width), name="floor_wall.onnx")
    _, client = depth_node({"model": str(model), "scale_source": "ground_plane", "camera_height": camera_height,
                            "camera_pitch": pitch, **RANGE})
    info = make_camera_info(width, height, f, f, (width - 1) / 2, (height - 1) / 2)
    out = client.send(rgb_image(np.zeros((height, width, 3), np.uint8)), info, 5 * 10**9, wanted=("depth",))
    assert out.depth is not None
    depth = depth_32fc1(out.depth)
    rel = np.abs(depth.astype(np.float64) - truth) / truth
    print(f"ground plane, floor + wall: AbsRel {rel.mean():.4f}, worst {rel.max():.4f}")
    assert rel.mean() < 0.02 and np.percentile(rel, 99) < 0.03
    diag = client.latest_diagnostics()
    # The wall pixels below the horizon are in the floor reference and must be the rejected ones.
    assert 0.5 < float(diag["scale_inlier_ratio"]) < 0.9, diag


def test_ground_plane_without_height_fails_at_startup() -> None:
    from ros_harness import run_node_to_exit

    result = run_node_to_exit({"scale_source": "ground_plane"})
    assert result.returncode == 2
    assert "camera_height" in result.stderr
