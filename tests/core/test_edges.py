"""The depth-edge filter (core.edges): flying pixels at depth discontinuities become invalid.

Expectations come from the geometry: an analytic step through an oracle model on real ONNX Runtime (the
ramp bilinear upsampling puts between the two planes, computed here from the resize convention), and the
measured claim on exact depth (synthetic scenes and the real TUM / D435 frames in data/) with network-like
predictions (core.evaluation.network_like_depth)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from oracles import camera_info, make_contract, save_oracle, step_ramp_depth

from depth_ros.cli.bench_edges import edge_removal, truth_frames
from depth_ros.core.camera import CameraModel
from depth_ros.core.edges import edge_mask, edge_radius, filter_edges
from depth_ros.core.evaluation import network_like_depth
from depth_ros.core.preprocess import plan_input
from depth_ros.pipeline import DepthEstimator, PipelineSettings
from depth_ros.synthetic.generator import sample

W, H = 640, 480
NET_W, NET_H = 256, 192
FX = 500.0
NEAR, FAR = 1.0, 2.0


def step_estimator(tmp_path: Path) -> DepthEstimator:
    c_near, c_far = (FX / W) / NEAR, (FX / W) / FAR
    output = np.where(np.arange(NET_W)[None, :] < NET_W // 2, c_near, c_far).astype(np.float32)
    output = np.repeat(output, NET_H, axis=0)
    contract = make_contract("canonical_inverse_depth", NET_H, NET_W)
    return DepthEstimator.from_path(save_oracle(tmp_path, output, contract, (NET_H, NET_W)), "onnxruntime")


def test_the_window_is_half_a_network_pixel_of_the_depth_image() -> None:
    assert edge_radius(plan_input(480, 640, make_contract("metric_depth", 192, 256).input, None), 640) == 2
    assert edge_radius(plan_input(480, 640, make_contract("metric_depth", 392, 518).input, None), 640) == 1
    assert edge_radius(plan_input(480, 640, make_contract("metric_depth", 96, 128).input, None), 640) == 3
    assert edge_radius(plan_input(480, 640, make_contract("metric_depth", 96, 128).input, None), 320) == 2


def test_a_step_loses_exactly_its_ramp_and_keeps_both_planes(tmp_path: Path) -> None:
    estimator = step_estimator(tmp_path)
    camera = CameraModel.from_camera_info(camera_info(W, H, FX, FX, 319.5, 239.5))
    rgb = np.zeros((H, W, 3), np.uint8)
    plain = estimator.estimate(rgb, camera, settings=PipelineSettings())
    off = estimator.estimate(rgb, camera, settings=PipelineSettings(edge_filter=False, edge_threshold=0.01))
    filtered = estimator.estimate(rgb, camera, settings=PipelineSettings(edge_filter=True), points_stride=1)
    np.testing.assert_array_equal(off.depth, plain.depth)  # off is today's output, bit for bit
    assert off.edge_pixels == 0
    columns = step_ramp_depth(W, NET_W, FX, NEAR, FAR)
    np.testing.assert_allclose(plain.depth[0], columns, rtol=1e-5)  # the convention the ramp follows
    # Flying: more than 5 % from both planes. The window (radius 2) reaches both plateaus from every ramp pixel.
    flying = (columns > NEAR * 1.05 + 1e-4) & (columns < FAR / 1.05 - 1e-4)
    assert 1 <= flying.sum() <= 3
    ambiguous = np.isclose(columns, NEAR * 1.05, rtol=1e-4) | np.isclose(columns, FAR / 1.05, rtol=1e-4)
    removed = np.isnan(filtered.depth)
    assert (removed == removed[:1]).all()  # every row the same
    np.testing.assert_array_equal(removed[0][~ambiguous], flying[~ambiguous])
    assert filtered.edge_pixels == removed.sum() == H * int(removed[0].sum())
    np.testing.assert_array_equal(filtered.depth[~removed], plain.depth[~removed])
    x, y, z = filtered.points  # the cloud loses the same pixels
    assert np.isnan(z[removed]).all() and np.isfinite(z[~removed]).all() and np.isnan(x[removed]).all()


@pytest.mark.parametrize("net", [(256, 192), (128, 96), (518, 392)])
def test_flying_pixels_go_and_true_surfaces_stay(net: tuple[int, int]) -> None:
    """The claim of README "Navigation-grade depth": >= 90 % of flying pixels removed, <= 5 % of the pixels on
    a true surface, over 12 synthetic scenes and the real frames, at the default threshold."""
    frames = truth_frames()
    assert {name for name, _ in frames} >= {"tum_fr2_desk/depth_1.png", "realsense_d435/depth_in_color_mm.png"}
    threshold = PipelineSettings().edge_threshold
    flying_total, flying_removed, surface_total, surface_removed = edge_removal(frames, *net, (threshold,))[threshold]
    assert flying_total > 1000  # the scenes have edges to filter
    assert flying_removed >= 0.9 * flying_total, (flying_removed, flying_total)
    assert surface_removed <= 0.05 * surface_total, (surface_removed, surface_total)


def test_invalid_pixels_neither_count_nor_make_edges() -> None:
    depth = np.full((20, 20), 2.0, np.float32)
    depth[5:8, 5:8] = np.nan
    depth[15, 15] = 0.0  # not positive: no depth (the pipeline never makes it, but it is no surface either)
    assert not edge_mask(depth, 0.05, 2).any()
    depth[10, :] = 2.3  # one row 15 % farther: a ridge; only pixels with both nearer and farther nearby count
    mask = edge_mask(depth, 0.05, 2)
    assert not mask.any()  # the ridge has nothing farther than itself; the plane has nothing nearer
    depth[10, :] = np.nan
    copy = depth.copy()
    assert filter_edges(copy, 0.05, 2) == 0
    np.testing.assert_array_equal(np.isnan(copy), np.isnan(depth))


def test_the_torch_twin_gives_the_same_mask() -> None:
    torch = pytest.importorskip("torch")
    from depth_ros.core import torch_ops

    for index in range(4):
        depth = network_like_depth(sample(777, index, W, H).depth.astype(np.float32), NET_W, NET_H)
        depth[100:120, 200:260] = np.nan
        for radius in (1, 2, 3):
            expected = edge_mask(depth, 0.05, radius)
            got = torch_ops.edge_mask(torch.from_numpy(depth), 0.05, radius).numpy()
            np.testing.assert_array_equal(got, expected)
        tensor = torch.from_numpy(depth.copy())
        count = torch_ops.filter_edges(tensor, 0.05, 2)
        assert int(count) == int(edge_mask(depth, 0.05, 2).sum())
        np.testing.assert_array_equal(np.isnan(tensor.numpy()), np.isnan(depth) | edge_mask(depth, 0.05, 2))
