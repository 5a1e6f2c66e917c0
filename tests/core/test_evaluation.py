"""Depth evaluation: metrics against hand-computed values, exact alignment, Depth Pro's boundary F1,
and `depth-ros eval` end to end on the real TUM frames and on bags (oracle models, real ONNX Runtime).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from oracles import make_contract, save_oracle
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CameraInfo, Image
from test_real_data import TUM, TUM_CX, TUM_CY, TUM_FX, TUM_FY

from depth_ros.bags.io import BagWriter
from depth_ros.cli import main as cli_main
from depth_ros.core.evaluation import BOUNDARY_THRESHOLDS, align, boundary_f1, depth_metrics, network_like_inverse

LN2 = math.log(2.0)


def eval_cli(args: list[str]) -> int:
    """`depth-ros eval` on ONNX Runtime: the expected values are its (auto would pick TensorRT where installed)."""
    return cli_main(["eval", "--backend", "onnxruntime", *args])


def tum_truth(frame: int) -> np.ndarray:
    raw = cv2.imread(str(TUM / f"depth_{frame}.png"), cv2.IMREAD_UNCHANGED)
    return (raw.astype(np.float64) / 5000.0).astype(np.float32)  # 0 = no data


# ----------------------------------------------------------------------------- metrics


def test_metrics_match_hand_computed_values() -> None:
    # Scored pixels: (D, G) = (1, 1), (2, 4), (4, 2); one pixel without ground truth, one without prediction.
    pred = np.array([[1.0, 2.0, 4.0], [7.0, np.nan, 1.0]])
    truth = np.array([[1.0, 4.0, 2.0], [0.0, 3.0, np.nan]])
    m = depth_metrics(pred, truth, boundary=False)
    assert m.n_pixels == 3 and m.coverage == pytest.approx(3 / 4)
    assert m.abs_rel == pytest.approx((0 + 2 / 4 + 2 / 2) / 3)
    assert m.sq_rel == pytest.approx((0 + 4 / 4 + 4 / 2) / 3)
    assert m.rmse == pytest.approx(math.sqrt(8 / 3))
    assert m.rmse_log == pytest.approx(LN2 * math.sqrt(2 / 3))
    assert m.silog == pytest.approx(100 * LN2 * math.sqrt(2 / 3))  # mean log error is 0 here
    assert (m.delta1, m.delta2, m.delta3) == pytest.approx((1 / 3, 1 / 3, 1 / 3))  # ratio 2 > 1.25^3 = 1.95

    # A uniform scale error: SILog ignores it, δ counts it.
    truth = np.linspace(1.0, 5.0, 100).reshape(10, 10)
    m = depth_metrics(1.3 * truth, truth, boundary=False)
    assert m.silog == pytest.approx(0.0, abs=1e-6) and m.abs_rel == pytest.approx(0.3)
    assert (m.delta1, m.delta2) == (0.0, 1.0)


def test_depth_range_clamps_predictions_and_limits_ground_truth() -> None:
    truth = np.array([0.5, 2.0, 30.0])
    m = depth_metrics(np.array([0.01, 2.0, 2.0]), truth, min_depth=0.1, max_depth=10.0, boundary=False)
    assert m.n_pixels == 2  # the 30 m ground truth is out of range
    assert m.abs_rel == pytest.approx((0.4 / 0.5) / 2)  # 0.01 is clamped to 0.1


def test_alignment_recovers_known_scale_and_shift_exactly() -> None:
    truth = np.random.default_rng(0).uniform(0.5, 8.0, (40, 50))
    mask = np.ones(truth.shape, dtype=bool)
    disparity = 3.0 / truth + 0.5  # relative model: 1/G = d/3 - 1/6
    depth, a = align(disparity, "disparity", truth, mask, "lstsq_disparity")
    assert a.scale == pytest.approx(1 / 3, rel=1e-10) and a.shift == pytest.approx(-1 / 6, rel=1e-10)
    np.testing.assert_allclose(depth, truth, rtol=1e-10)

    depth, a = align(1.0 / (0.2 / truth + 0.05), "depth", truth, mask, "lstsq_disparity")
    assert a.scale == pytest.approx(5.0, rel=1e-10) and a.shift == pytest.approx(-0.25, rel=1e-9)
    np.testing.assert_allclose(depth, truth, rtol=1e-9)

    depth, a = align(2.5 * truth, "depth", truth, mask, "median")
    assert a.scale == pytest.approx(0.4) and np.allclose(depth, truth)
    depth, a = align(2.5 * truth, "depth", truth, mask, "none")
    assert a.scale == 1.0 and np.allclose(depth, 2.5 * truth)
    with pytest.raises(ValueError, match="lstsq_disparity"):
        align(truth, "depth", truth, mask, "affine")


# ----------------------------------------------------------------------------- boundary F1


def test_boundary_f1_identical_maps_score_one_and_flat_maps_have_nothing_to_score() -> None:
    scene = np.full((20, 20), 4.0)
    scene[6:14, 5:12] = 1.5  # a near box: its outline gives contours in all four directions
    scene[15:, :] = 3.0  # a step: a second surface
    assert boundary_f1(scene, scene) == 1.0
    assert boundary_f1(2.7 * scene, scene) == 1.0  # scale-invariant
    assert math.isnan(boundary_f1(np.ones((5, 5)), np.ones((5, 5))))


def test_boundary_f1_hand_checked_cases() -> None:
    # One row, so only left/right pairs. Ground truth: the farther side of the step is at index 2.
    truth = np.array([[1.0, 1.0, 2.0, 2.0]])
    # Predicted step one pixel early: no contour in common at any threshold.
    assert boundary_f1(np.array([[1.0, 2.0, 2.0, 2.0]]), truth) == 0.0
    # The true contour plus a spurious one: precision 1/2, recall 1 at every threshold -> F1 = 2/3.
    assert boundary_f1(np.array([[1.0, 1.0, 2.0, 4.0]]), truth) == pytest.approx(2 / 3)
    # A predicted step of only 10 %: a contour at t = 1.05, 1.072, 1.094 (F1 = 1), none above (F1 = 0);
    # weights ∝ t over t_k = 1.05 + 0.2 k / 9, Σ t = 11.5.
    expected = (3 * 1.05 + 0.2 * (0 + 1 + 2) / 9) / 11.5
    assert boundary_f1(np.array([[1.0, 1.0, 1.1, 1.1]]), truth) == pytest.approx(expected)
    assert BOUNDARY_THRESHOLDS.sum() == pytest.approx(11.5)
    # Direction matters: the same step seen from the other side (far side on the left) is a 'left' contour,
    # which a 'right' contour does not match.
    assert boundary_f1(np.array([[2.0, 2.0, 1.0, 1.0]]), truth) == 0.0
    # Pixels without ground truth (0) take no part: the hole hides the step.
    assert math.isnan(boundary_f1(np.array([[1.0, 1.0, 2.0, 2.0]]), np.array([[1.0, 1.0, 0.0, 2.0]])))


# ----------------------------------------------------------------------------- depth-ros eval


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_eval_cli_on_tum_frames_with_metric_and_relative_oracles(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    truth = tum_truth(1)
    metric = save_oracle(tmp_path, truth, make_contract("metric_depth", 480, 640), (480, 640), name="metric.onnx")
    out = tmp_path / "metric"
    # TUM layout of data/tum_fr2_desk: rgb_N.png and depth_N.png in one folder, paired by N.
    code = eval_cli(["--rgb-dir", str(TUM), "--depth-dir", str(TUM), "--dataset", "tum_fr2",
                     "--model", str(metric), "--out", str(out)])
    assert code == 0, capsys.readouterr()
    rows = {row["frame"]: row for row in _read_csv(out / "per_frame.csv")}
    assert set(rows) == {"rgb_1", "rgb_2"}
    assert float(rows["rgb_1"]["abs_rel"]) == 0.0 and float(rows["rgb_1"]["delta1"]) == 1.0
    assert float(rows["rgb_1"]["rmse"]) == 0.0 and float(rows["rgb_1"]["boundary_f1"]) == 1.0
    assert int(rows["rgb_1"]["n_pixels"]) == int((truth > 0).sum())
    # Frame 2 is paired with its own depth (not frame 1's, which the oracle reproduces): it is not perfect.
    assert float(rows["rgb_2"]["abs_rel"]) > 0.05
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 2 and summary["align"] == "none"
    assert summary["metrics"]["abs_rel"]["mean"] == pytest.approx(float(rows["rgb_2"]["abs_rel"]) / 2, rel=1e-5)
    for plot in ("error_histogram.png", "per_frame_abs_rel.png", "error_maps/0000_rgb_1.png",
                 "error_maps/0001_rgb_2.png"):
        image = cv2.imread(str(out / plot))
        assert image is not None and image.shape[0] > 300 and image.std() > 10, plot

    # A relative oracle (disparity under an unknown affine map, 1 % noise) is aligned by default.
    valid = truth > 0
    disparity = np.where(valid, 2.7 / np.where(valid, truth, 1.0) + 0.35, 1.0)
    disparity *= 1 + 0.01 * np.random.default_rng(0).standard_normal(truth.shape)
    relative = save_oracle(tmp_path, disparity.astype(np.float32), make_contract("relative_disparity", 480, 640),
                           (480, 640), name="relative.onnx")
    out = tmp_path / "relative"
    assert eval_cli(["--rgb-dir", str(TUM), "--depth-dir", str(TUM), "--rgb-pattern", "rgb_1*",
                     "--depth-pattern", "depth_1*", "--depth-scale", "5000", "--fx", str(TUM_FX), "--fy",
                     str(TUM_FY), "--cx", str(TUM_CX), "--cy", str(TUM_CY), "--model", str(relative),
                     "--out", str(out)]) == 0
    (row,) = _read_csv(out / "per_frame.csv")
    assert float(row["abs_rel"]) < 0.02 and float(row["delta1"]) > 0.999
    assert float(row["align_scale"]) == pytest.approx(1 / 2.7, rel=0.02)
    assert json.loads((out / "summary.json").read_text())["align"] == "lstsq_disparity"


def _image_msg(array: np.ndarray, encoding: str, stamp_ns: int) -> Image:
    msg = Image(height=array.shape[0], width=array.shape[1], encoding=encoding, is_bigendian=False,
                step=array.shape[1] * array.itemsize * (array.shape[2] if array.ndim == 3 else 1))
    msg.data = np.ascontiguousarray(array).tobytes()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    msg.header.frame_id = "camera"
    return msg


def test_eval_cli_on_bags_with_a_model_and_on_a_processed_bag(tmp_path: Path) -> None:
    truth = tum_truth(1)
    rgb = cv2.imread(str(TUM / "rgb_1.png"))[:, :, ::-1].copy()
    metric = save_oracle(tmp_path, truth, make_contract("metric_depth", 480, 640), (480, 640), name="metric.onnx")
    info = CameraInfo(width=640, height=480, distortion_model="plumb_bob")
    info.k = [TUM_FX, 0.0, TUM_CX, 0.0, TUM_FY, TUM_CY, 0.0, 0.0, 1.0]
    info.p = [TUM_FX, 0.0, TUM_CX, 0.0, 0.0, TUM_FY, TUM_CY, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.d = [0.0] * 5
    bag = tmp_path / "recorded"
    stamps = [1_311_868_164_000_000_000 + k * 33_000_000 for k in range(3)]
    with BagWriter(bag) as writer:
        for k, stamp in enumerate(stamps):
            writer.write("/cam/camera_info", "sensor_msgs/msg/CameraInfo", stamp, serialize_message(info))
            writer.write("/cam/image", "sensor_msgs/msg/Image", stamp,
                         serialize_message(_image_msg(rgb, "rgb8", stamp)))
            gt = np.where(truth > 0, truth, np.nan).astype(np.float32)
            writer.write("/cam/depth_gt", "sensor_msgs/msg/Image", stamp + 1,
                         serialize_message(_image_msg(gt, "32FC1", stamp + 1_000_000)))  # 1 ms later: paired
            # What a node would have published: 10 % too far on frame 0, then right, then 16UC1 millimetres.
            pred = {0: 1.1 * truth, 1: truth}.get(k)
            msg = (_image_msg(pred.astype(np.float32), "32FC1", stamp) if pred is not None
                   else _image_msg(np.rint(truth * 1000).astype(np.uint16), "16UC1", stamp))
            writer.write("/camera/depth", "sensor_msgs/msg/Image", stamp + 2, serialize_message(msg))

    out = tmp_path / "model"
    assert eval_cli(["--bag", str(bag), "--image-topic", "/cam/image", "--depth-topic", "/cam/depth_gt",
                     "--camera-info-topic", "/cam/camera_info", "--model", str(metric), "--out", str(out)]) == 0
    rows = _read_csv(out / "per_frame.csv")
    assert len(rows) == 3 and all(float(r["abs_rel"]) == 0.0 and float(r["delta1"]) == 1.0 for r in rows)
    assert [int(r["stamp_ns"]) for r in rows] == [s + 1_000_000 for s in stamps]

    out = tmp_path / "processed"
    assert eval_cli(["--processed-bag", str(bag), "--pred-topic", "/camera/depth", "--depth-topic",
                     "/cam/depth_gt", "--out", str(out)]) == 0
    rows = _read_csv(out / "per_frame.csv")
    assert float(rows[0]["abs_rel"]) == pytest.approx(0.1, rel=1e-5) and float(rows[0]["delta1"]) == 1.0
    assert float(rows[1]["abs_rel"]) == 0.0
    assert float(rows[2]["abs_rel"]) < 0.5e-3 / 0.5  # millimetre rounding only
    out = tmp_path / "processed_median"
    assert eval_cli(["--processed-bag", str(bag), "--depth-topic", "/cam/depth_gt", "--align", "median",
                     "--out", str(out)]) == 0
    assert float(_read_csv(out / "per_frame.csv")[0]["abs_rel"]) == pytest.approx(0.0, abs=1e-6)


def test_eval_cli_explains_missing_inputs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert eval_cli(["--rgb-dir", str(TUM), "--depth-dir", str(TUM), "--model", "default",
                     "--out", str(tmp_path)]) == 1
    assert "--depth-scale" in capsys.readouterr().err
    assert eval_cli(["--depth-dir", str(TUM), "--depth-scale", "5000", "--out", str(tmp_path)]) == 1
    assert "--model or --processed-bag" in capsys.readouterr().err


def test_eval_on_held_out_synthetic_frames(tmp_path: Path) -> None:
    """--synthetic: procedural frames with the recipe's exact depth and intrinsics as the ground truth (the
    realistic recipe by default, the basic one on request)."""
    from depth_ros.bags.samples import synthetic_samples
    from depth_ros.synthetic import generator, realistic

    for name, sample in (("realistic", realistic.sample), ("basic", generator.sample)):
        samples = list(synthetic_samples(3, 1234, 96, 64, recipe_name=name))
        if name == "realistic":  # the default
            default = list(synthetic_samples(3, 1234, 96, 64))
            assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(samples, default, strict=True))
        for s in samples:
            index = int(s.name.rsplit("_", 1)[1])
            frame = sample(1234, index, 96, 64)
            finite = np.isfinite(frame.depth)
            np.testing.assert_array_equal(s.truth[finite], frame.depth[finite])
            assert np.isnan(s.truth[~finite]).all()  # sky: no data, never a number
            np.testing.assert_array_equal(s.rgb, frame.rgb)
            c = frame.camera
            assert s.camera is not None and (s.camera.fx, s.camera.fy, s.camera.cx, s.camera.cy) == (c.fx, c.fy,
                                                                                                    c.cx, c.cy)
    for name in ("realistic", "basic"):
        out = tmp_path / name
        assert eval_cli(["--synthetic", "2", "--synthetic-seed", "1234", "--synthetic-size", "128x96",
                         "--synthetic-recipe", name, "--model", "default", "--out", str(out)]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["frames"] == 2 and math.isfinite(summary["metrics"]["abs_rel"]["mean"])


def test_embedded_default_student_matches_its_model_card(tmp_path: Path) -> None:
    """The shipped default: ≤ 20 MB, canonical inverse depth, and the TUM accuracy its card reports
    (median-aligned AbsRel 0.158, δ1 0.783) -- a guard against shipping a broken or different model."""
    from depth_ros.pipeline import DepthEstimator
    from depth_ros.resources import resolve_model_path

    path = resolve_model_path("default")
    assert path.stat().st_size <= 20e6
    assert DepthEstimator.from_path(path, "onnxruntime").contract.output_kind == "canonical_inverse_depth"
    out = tmp_path / "tum"
    assert eval_cli(["--rgb-dir", str(TUM), "--depth-dir", str(TUM), "--dataset", "tum_fr2", "--model",
                     "default", "--align", "median", "--out", str(out), "--max-error-maps", "0"]) == 0
    m = json.loads((out / "summary.json").read_text())["metrics"]
    assert m["abs_rel"]["mean"] == pytest.approx(0.158, abs=0.01)
    assert m["delta1"]["mean"] == pytest.approx(0.783, abs=0.02)


def test_eval_scores_with_and_without_the_edge_filter(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A perfect network at 256x192 on TUM frame 1 (its true inverse depth averaged down): what is left wrong
    is the ramps the upsampling puts at depth edges, so with the edge filter fewer pixels are scored and the
    error is lower."""
    truth = tum_truth(1)
    low = np.nan_to_num(network_like_inverse(truth, 256, 192), nan=0.0)  # 0: no depth there
    fx = 520.9  # data/tum_fr2_desk's calibration (the tum_fr2 preset)
    oracle = save_oracle(tmp_path, (fx / 640.0) * low, make_contract("canonical_inverse_depth", 192, 256),
                         (192, 256), name="perfect_256.onnx")
    scores = {}
    for name, extra in (("without", []), ("with", ["--edge-filter"])):
        out = tmp_path / name
        code = eval_cli(["--rgb-dir", str(TUM), "--depth-dir", str(TUM), "--rgb-pattern", "rgb_1*",
                         "--depth-pattern", "depth_1*", "--dataset", "tum_fr2", "--model", str(oracle),
                         "--out", str(out), *extra])
        printed = capsys.readouterr().out
        assert code == 0, printed
        assert ("edge filter (threshold 0.05)" in printed) == (name == "with")
        (row,) = _read_csv(out / "per_frame.csv")
        scores[name] = (float(row["abs_rel"]), int(row["n_pixels"]))
    removed = scores["without"][1] - scores["with"][1]
    assert 0 < removed < 0.1 * scores["without"][1]  # ramps at object edges and at the borders of holes
    assert scores["with"][0] < 0.8 * scores["without"][0], scores


def test_eval_confidence_on_a_perfect_network_finds_the_edges(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--confidence: on TUM frame 1 through a perfect 256x192 network (see above) the more confident half of the
    scored pixels has at most half the AbsRel of the less confident half (the claim in the README; measured
    0.12 by `depth-ros bench --confidence`)."""
    truth = tum_truth(1)
    low = np.nan_to_num(network_like_inverse(truth, 256, 192), nan=0.0)
    oracle = save_oracle(tmp_path, (520.9 / 640.0) * low, make_contract("canonical_inverse_depth", 192, 256),
                         (192, 256), name="perfect_256.onnx")
    out = tmp_path / "confidence"
    assert eval_cli(["--rgb-dir", str(TUM), "--depth-dir", str(TUM), "--rgb-pattern", "rgb_1*", "--depth-pattern",
                     "depth_1*", "--dataset", "tum_fr2", "--model", str(oracle), "--out", str(out),
                     "--confidence", "--max-error-maps", "0"]) == 0
    assert "confidence: AbsRel of the more confident half" in capsys.readouterr().out
    c = json.loads((out / "summary.json").read_text())["confidence"]
    assert c["ratio"] <= 0.5 and c["confident_half_abs_rel"] < c["unconfident_half_abs_rel"]


def test_eval_with_the_temporal_filter_on_a_moving_sequence(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--synthetic-motion renders one scene from a moving camera, stamped at --frame-rate; --temporal-filter runs
    the node's filter over it in that time: one restart (the first frame), and depth that differs from per-frame
    estimation from the second frame on."""
    from depth_ros.bags.samples import synthetic_samples

    stamps = [s.stamp_ns for s in synthetic_samples(3, 77, 64, 48, (0.5, 0.0), 10.0)]
    assert stamps == [0, 100_000_000, 200_000_000]
    rows = {}
    for name, extra in (("per_frame", []), ("temporal", ["--temporal-filter", "0.2"])):
        out = tmp_path / name
        assert eval_cli(["--synthetic", "6", "--synthetic-seed", "77", "--synthetic-size", "128x96",
                         "--synthetic-motion", "0.5", "--frame-rate", "15", "--model", "default", "--align",
                         "median", "--out", str(out), "--max-error-maps", "0", *extra]) == 0
        printed = capsys.readouterr().out
        assert ("temporal filter (time constant 0.2 s): 1 restart(s) in 6 frame(s)" in printed) == (name != "per_frame")
        rows[name] = [float(row["abs_rel"]) for row in _read_csv(out / "per_frame.csv")]
    assert rows["temporal"][0] == rows["per_frame"][0]  # the first frame: as estimated
    assert all(a != b for a, b in zip(rows["temporal"][1:], rows["per_frame"][1:], strict=True))


def test_constant_baseline_under_each_alignment() -> None:
    """Half the pixels at 1 m, half at 3 m. Median alignment makes the constant 2 m: AbsRel (1/1 + 1/3) / 2.
    Least squares in disparity makes it the mean inverse depth 2/3 (1.5 m): AbsRel (0.5 + 0.5) / 2. Metric
    models (no alignment) are given the median constant."""
    from depth_ros.core.evaluation import constant_baseline

    truth = np.ones((4, 6), np.float32)
    truth[:, 3:] = 3.0
    mask = np.ones(truth.shape, bool)
    assert constant_baseline(truth, mask, "median").abs_rel == pytest.approx((1 + 1 / 3) / 2)
    assert constant_baseline(truth, mask, "none").abs_rel == pytest.approx((1 + 1 / 3) / 2)
    assert constant_baseline(truth, mask, "lstsq_disparity").abs_rel == pytest.approx(0.5)


def test_eval_prints_the_constant_baseline_beside_the_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Every frame's line, per_frame.csv and summary.json carry the constant's score under the model's alignment;
    on the TUM frames the card's numbers: the embedded default (0.158) is better than a constant (0.243) on both."""
    out = tmp_path / "tum"
    assert eval_cli(["--rgb-dir", str(TUM), "--depth-dir", str(TUM), "--dataset", "tum_fr2", "--model", "default",
                     "--align", "median", "--out", str(out), "--max-error-maps", "0"]) == 0
    printed = capsys.readouterr().out
    assert "(constant 0.2351)" in printed and "(constant 0.2505)" in printed
    assert "constant depth, same alignment (median): AbsRel 0.2428" in printed
    rows = _read_csv(out / "per_frame.csv")
    truths = [tum_truth(i) for i in (1, 2)]
    for row, truth in zip(rows, truths, strict=True):  # independently: |median - G| / G over the scored pixels
        valid = np.isfinite(truth) & (truth >= 0.1) & (truth <= 10.0)
        expected = float(np.mean(np.abs(np.median(truth[valid]) - truth[valid]) / truth[valid]))
        assert float(row["constant_abs_rel"]) == pytest.approx(expected, rel=1e-5)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["constant_baseline"]["abs_rel"]["mean"] == pytest.approx(0.2428, abs=1e-4)
    assert summary["frames_better_than_constant"] == 2
