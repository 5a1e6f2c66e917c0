"""`depth-ros eval`: score a model (or an already processed bag) against ground-truth depth.

Ground truth comes from RGB + depth image folders (TUM, NYU, KITTI conventions: integer depth
PNGs with a depth scale, 0 = no data) or from a bag with an image and a registered depth topic.
Predictions come from running a model through the same `DepthEstimator` as the node (no DDS), or
from the depth topic of a bag the node (or `depth-ros bag process`) already wrote.

Writes OUT/per_frame.csv, OUT/summary.json and plots: error_histogram.png, per_frame_abs_rel.png and
error_maps/*.png (image | ground truth | prediction | relative error). Metrics: depth_ros.core.evaluation.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from depth_ros.bags.samples import (
    DATASETS,
    Sample,
    bag_samples,
    depth_msg_metres,
    folder_samples,
    nearest_stamp,
    pair_files,
    read_topic,
    stamp_ns,
    synthetic_samples,
)
from depth_ros.core.confidence import halves_error
from depth_ros.core.evaluation import (
    ALIGN_MODES,
    METRIC_NAMES,
    FrameMetrics,
    align,
    constant_baseline,
    depth_metrics,
    summarise,
    valid_depth,
)
from depth_ros.synthetic.recipes import DEFAULT_RECIPE, RECIPES

# ----------------------------------------------------------------------------- predictions


class ModelPredictor:
    """Runs a model through DepthEstimator; relative models give their raw disparity (for alignment)."""

    def __init__(self, model: str, backend: str, disparity: tuple[float, float],
                 edge_threshold: float | None = None, temporal_time_constant: float | None = None,
                 confidence: bool = False, frame_rate: float = 30.0) -> None:
        from depth_ros.core.temporal import TemporalFilter, TemporalSettings
        from depth_ros.pipeline import DepthEstimator, PipelineSettings
        from depth_ros.resources import resolve_model_path

        # Range limits are applied by the evaluation, not the pipeline. The edge filter runs as in the node.
        settings = PipelineSettings(min_depth=0.0, max_depth=1e9, disparity_scale=disparity[0],
                                    disparity_shift=disparity[1], edge_filter=edge_threshold is not None,
                                    edge_threshold=edge_threshold if edge_threshold is not None else 0.05)
        self.estimator = DepthEstimator.from_path(resolve_model_path(model), backend, settings=settings)
        self.relative = self.estimator.contract.output_kind == "relative_disparity"
        self.pixels = 0
        self.edge_pixels = 0  # removed by the edge filter, over all frames
        # The temporal filter runs over the frames in order, in their message time (frames without a stamp:
        # frame_rate apart); a camera change restarts it, as in the node.
        self.temporal = None if temporal_time_constant is None else TemporalFilter(
            TemporalSettings(time_constant=temporal_time_constant))
        self.temporal_resets = 0
        self.frame_rate = frame_rate
        self._frames = 0
        self._camera: Any = None
        self.confidence = confidence
        self.last_confidence: np.ndarray | None = None  # of the frame just predicted (when confidence is asked)

    def __call__(self, sample: Sample, align_mode: str) -> tuple[np.ndarray, str]:
        if sample.rgb is None or sample.camera is None:
            raise ValueError(f"frame {sample.name}: running a model needs the image and its intrinsics "
                             "(--fx --fy --cx --cy, --dataset, or --camera-info-topic)")
        stamp = sample.stamp_ns * 1e-9 if sample.stamp_ns is not None else self._frames / self.frame_rate
        self._frames += 1
        if self.temporal is not None and sample.camera != self._camera:
            self.temporal.reset()
        self._camera = sample.camera
        frame = self.estimator.estimate(sample.rgb, sample.camera, temporal=self.temporal, stamp=stamp,
                                        confidence=self.confidence)
        self.pixels += frame.depth.size
        self.edge_pixels += frame.edge_pixels
        self.temporal_resets += int(frame.temporal_reset)
        self.last_confidence = frame.confidence
        if self.relative and align_mode != "none":
            prediction = frame.prediction_map()  # fetched from the device on the torch path
            assert prediction is not None
            if frame.edge_pixels:  # the pixels the filter removed are not scored either
                prediction = np.where(np.isnan(frame.depth), np.float32(np.nan), prediction)
            return prediction, "disparity"
        return frame.depth, "depth"


class BagPredictor:
    """Depth images from a processed bag, matched to frames by stamp (bags) or by order (folders)."""

    def __init__(self, bag: Path, topic: str) -> None:
        from sensor_msgs.msg import Image

        self.messages = read_topic(bag, topic, Image)
        self.stamps = np.array([stamp_ns(m) for m in self.messages], dtype=np.int64)
        self._next = 0

    def __call__(self, sample: Sample, align_mode: str) -> tuple[np.ndarray, str] | None:
        if sample.stamp_ns is not None:
            index = nearest_stamp(self.stamps, sample.stamp_ns)
        else:
            index = self._next if self._next < len(self.messages) else None
            self._next += 1
        if index is None:
            return None
        return depth_msg_metres(self.messages[index]), "depth"


def _to_shape(prediction: np.ndarray, shape: tuple[int, ...], kind: str) -> np.ndarray:
    import cv2

    if prediction.shape == shape:
        return prediction
    # Disparity is smooth: bilinear. Depth with NaN holes: nearest, so holes do not spread.
    interpolation = cv2.INTER_LINEAR if kind == "disparity" else cv2.INTER_NEAREST
    return cv2.resize(prediction.astype(np.float32), (shape[1], shape[0]), interpolation=interpolation)


# ----------------------------------------------------------------------------- the run


@dataclass
class Scored:
    sample: Sample
    pred: np.ndarray  # aligned depth, metres
    metrics: FrameMetrics
    scale: float
    shift: float
    constant: FrameMetrics  # a constant depth map under the same alignment (core.evaluation.constant_baseline)


def evaluate(samples: Iterator[Sample], predictor: Any, align_mode: str, min_depth: float, max_depth: float,
             out: Path, max_error_maps: int = 8, log: Any = print) -> dict[str, Any]:
    """Score every sample; write per_frame.csv, summary.json and the plots under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    scored: list[Scored] = []
    errors: list[np.ndarray] = []  # signed relative errors, a bounded sample per frame for the histogram
    skipped = 0
    halves = np.zeros(3)  # confident-half error sum, unconfident-half error sum, pixels per half (all frames)
    for sample in samples:
        predicted = predictor(sample, align_mode)
        if predicted is None:
            skipped += 1
            continue
        prediction, kind = predicted
        prediction = _to_shape(prediction, sample.truth.shape, kind)
        mask = valid_depth(sample.truth, min_depth, max_depth)
        depth, alignment = align(prediction, kind, sample.truth, mask, align_mode, max_depth)
        metrics = depth_metrics(depth, sample.truth, min_depth, max_depth)
        scored_mask = mask & np.isfinite(depth) & (depth > 0)
        gt = sample.truth[scored_mask]
        rel = (np.clip(depth[scored_mask], min_depth, max_depth) - gt) / gt
        errors.append(rel[:: max(1, rel.size // 50000)].astype(np.float32))
        confidence = getattr(predictor, "last_confidence", None)
        if confidence is not None:
            error = np.full(depth.shape, np.nan, np.float32)
            error[scored_mask] = np.abs(rel)
            halves += halves_error(_to_shape(confidence, depth.shape, "depth"), error)
        constant = constant_baseline(sample.truth, mask, align_mode, min_depth, max_depth)
        scored.append(Scored(sample, depth.astype(np.float32), metrics, alignment.scale, alignment.shift, constant))
        log(f"{sample.name}: AbsRel {metrics.abs_rel:.4f} (constant {constant.abs_rel:.4f})  RMSE {metrics.rmse:.3f} m "
            f"(constant {constant.rmse:.3f})  δ1 {metrics.delta1:.3f} (constant {constant.delta1:.3f})  "
            f"boundary F1 {metrics.boundary_f1:.3f}")
    if not scored:
        raise ValueError("no frame could be scored (no predictions matched the ground truth)")

    with (out / "per_frame.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["frame", "stamp_ns", *METRIC_NAMES, "n_pixels", "align_scale", "align_shift",
                         "constant_abs_rel", "constant_rmse", "constant_delta1"])
        for s in scored:
            m = s.metrics.as_dict()
            writer.writerow([s.sample.name, s.sample.stamp_ns if s.sample.stamp_ns is not None else "",
                             *(f"{m[n]:.6g}" for n in METRIC_NAMES), m["n_pixels"], f"{s.scale:.6g}",
                             f"{s.shift:.6g}", f"{s.constant.abs_rel:.6g}", f"{s.constant.rmse:.6g}",
                             f"{s.constant.delta1:.6g}"])
    summary = {
        "frames": len(scored), "frames_without_prediction": skipped, "align": align_mode,
        "min_depth": min_depth, "max_depth": max_depth,
        "metrics": summarise([s.metrics for s in scored]),
        # The same metrics of a constant depth map, aligned as the model was: a model below it knows nothing.
        "constant_baseline": {name: values for name, values in summarise([s.constant for s in scored]).items()
                              if name != "boundary_f1"},
        "frames_better_than_constant": sum(s.metrics.abs_rel < s.constant.abs_rel for s in scored),
        **({"confidence": {"confident_half_abs_rel": halves[0] / halves[2],
                           "unconfident_half_abs_rel": halves[1] / halves[2],
                           "ratio": halves[0] / max(halves[1], 1e-12)}} if halves[2] else {}),
        "definitions": "AbsRel mean|D-G|/G; SqRel mean (D-G)^2/G; RMSE metres; RMSE log natural log; SILog "
                       "100*sqrt(var(ln D - ln G)); delta_k fraction max(D/G,G/D) < 1.25^k; boundary_f1 Depth Pro "
                       "scale-invariant boundary F1; coverage fraction of valid GT pixels predicted. Means are "
                       "over frames.",
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=True) + "\n")
    plot_all(scored, np.concatenate(errors), out, max_error_maps, min_depth, max_depth)
    return summary


# ----------------------------------------------------------------------------- plots


def plot_all(scored: list[Scored], errors: np.ndarray, out: Path, max_error_maps: int, min_depth: float,
             max_depth: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise([s.metrics for s in scored])
    abs_rel, delta1 = summary["abs_rel"]["mean"], summary["delta1"]["mean"]

    # 1. Histogram of signed relative error, with the δ1 band.
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    clipped = np.clip(errors * 100.0, -60.0, 60.0)
    ax.hist(clipped, bins=121, range=(-60.5, 60.5), color="#3b75af", alpha=0.9)
    ax.axvspan(-20.0, 25.0, color="#59a14f", alpha=0.12, label="within δ1 (ratio < 1.25)")
    ax.axvline(0.0, color="black", linewidth=0.8)
    median = float(np.median(errors)) * 100.0
    ax.axvline(median, color="#e15759", linestyle="--", label=f"median {median:+.1f} %")
    ax.set_xlabel("relative error (D − G) / G  [%]   (clipped to ±60 %)")
    ax.set_ylabel("pixels")
    ax.set_title(f"Depth error over {len(scored)} frame(s): AbsRel {abs_rel:.3f}, δ1 {delta1:.3f}")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "error_histogram.png")
    plt.close(fig)

    # 2. AbsRel (and δ1) per frame.
    fig, ax = plt.subplots(figsize=(8, 4), dpi=110)
    index = np.arange(len(scored))
    values = [s.metrics.abs_rel for s in scored]
    if len(scored) <= 40:
        ax.bar(index, values, color="#3b75af", label="AbsRel")
    else:
        ax.plot(index, values, color="#3b75af", linewidth=1.2, label="AbsRel")
    ax.axhline(abs_rel, color="#e15759", linestyle="--", label=f"mean {abs_rel:.3f}")
    ax.set_xlabel("frame")
    ax.set_ylabel("AbsRel")
    ax.set_ylim(0, max(max(values) * 1.2, 1e-3))
    ax2 = ax.twinx()
    ax2.plot(index, [s.metrics.delta1 for s in scored], color="#59a14f", marker="o", markersize=3, linewidth=1,
             label="δ1")
    ax2.set_ylabel("δ1", color="#59a14f")
    ax2.set_ylim(0, 1.05)
    if len(scored) <= 20:
        ax.set_xticks(index, [s.sample.name for s in scored], rotation=45, ha="right", fontsize=8)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left")
    ax.set_title("Per-frame error")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(out / "per_frame_abs_rel.png")
    plt.close(fig)

    # 3. Error maps beside the image for a few frames spread over the run.
    maps = out / "error_maps"
    maps.mkdir(exist_ok=True)
    picks = np.unique(np.linspace(0, len(scored) - 1, min(max_error_maps, len(scored))).astype(int))
    for i in picks:
        s = scored[int(i)]
        truth = np.where(valid_depth(s.sample.truth, min_depth, max_depth), s.sample.truth, np.nan)
        pred = np.where(np.isfinite(s.pred), np.clip(s.pred, min_depth, max_depth), np.nan)
        finite = truth[np.isfinite(truth)]
        low, high = (np.percentile(finite, [2, 98]) if finite.size else (min_depth, max_depth))
        rel = np.abs(pred - truth) / truth
        panels = 4 if s.sample.rgb is not None else 3
        fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.9), dpi=100)
        k = 0
        if s.sample.rgb is not None:
            axes[0].imshow(s.sample.rgb)
            axes[0].set_title("image")
            k = 1
        cmap = matplotlib.colormaps["turbo"].with_extremes(bad="#202020")
        for ax, data, title in ((axes[k], truth, "ground truth [m]"), (axes[k + 1], pred, "prediction [m]")):
            im = ax.imshow(data, cmap=cmap, vmin=low, vmax=high)
            ax.set_title(title)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        err_cmap = matplotlib.colormaps["magma"].with_extremes(bad="#9a9a9a")
        im = axes[k + 2].imshow(rel, cmap=err_cmap, vmin=0.0, vmax=0.25)
        axes[k + 2].set_title(f"|D − G| / G  (AbsRel {s.metrics.abs_rel:.3f})")
        fig.colorbar(im, ax=axes[k + 2], fraction=0.046, pad=0.02, extend="max")
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(f"{s.sample.name}   δ1 {s.metrics.delta1:.3f}   RMSE {s.metrics.rmse:.3f} m   "
                     f"boundary F1 {s.metrics.boundary_f1:.3f}   (grey: no ground truth)", fontsize=10)
        fig.tight_layout()
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", s.sample.name)
        fig.savefig(maps / f"{int(i):04d}_{safe}.png")
        plt.close(fig)


# ----------------------------------------------------------------------------- command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    gt = p.add_argument_group("ground truth (folders or a bag)")
    gt.add_argument("--rgb-dir", type=Path, help="colour images")
    gt.add_argument("--depth-dir", type=Path, help="ground-truth depth images (integer PNG, or float .npy metres)")
    gt.add_argument("--rgb-pattern", help="glob in --rgb-dir (default '*', or 'rgb*' when both folders are one)")
    gt.add_argument("--depth-pattern", help="glob in --depth-dir (default '*', or 'depth*' when both folders are one)")
    gt.add_argument("--associations", type=Path, help="TUM associations file (pairs rgb and depth files)")
    gt.add_argument("--depth-scale", type=float, help="integer depth value per metre (TUM 5000, NYU 1000, KITTI 256)")
    gt.add_argument("--dataset", choices=sorted(DATASETS), help="preset depth scale, intrinsics and depth range")
    for name in ("fx", "fy", "cx", "cy"):
        gt.add_argument(f"--{name}", type=float, help="intrinsics of the colour images (pixels)")
    gt.add_argument("--synthetic", type=int, metavar="N", help="N procedural frames with exact depth (held out: "
                    "use a --synthetic-seed no training run used)")
    gt.add_argument("--synthetic-seed", type=int, default=1000)
    gt.add_argument("--synthetic-recipe", default=DEFAULT_RECIPE, choices=sorted(RECIPES),
                    help="procedural scene recipe (depth_ros.synthetic.recipes)")
    gt.add_argument("--synthetic-size", default="640x480", metavar="WxH")
    gt.add_argument("--synthetic-motion", metavar="SPEED[,YAW_RATE]",
                    help="--synthetic as one scene seen by a camera moving ahead at SPEED m/s, turning at YAW_RATE "
                         "rad/s, at --frame-rate (a sequence for --temporal-filter)")
    gt.add_argument("--bag", type=Path, help="a bag with ground-truth depth (registered to the image)")
    gt.add_argument("--depth-topic", help="ground-truth depth topic in --bag (32FC1 m or 16UC1 mm)")
    gt.add_argument("--image-topic", help="colour image topic in --bag (needed with --model)")
    gt.add_argument("--camera-info-topic", help="CameraInfo topic in --bag (else --fx ... or --dataset)")
    pred = p.add_argument_group("prediction (a model or a processed bag)")
    pred.add_argument("--model", help="ONNX model with a depth_ros contract ('default' = the embedded one)")
    pred.add_argument("--backend", default="auto")
    pred.add_argument("--disparity-scale", type=float, default=1.0, help="relative models with --align none")
    pred.add_argument("--disparity-shift", type=float, default=0.0)
    pred.add_argument("--edge-filter", nargs="?", type=float, const=0.05, default=None, metavar="THRESHOLD",
                      help="run the node's edge filter (threshold default 0.05): its pixels are not scored; run "
                           "once with and once without to compare")
    pred.add_argument("--temporal-filter", nargs="?", type=float, const=0.2, default=None, metavar="TAU",
                      help="run the node's temporal filter over the frames in order (time constant default 0.2 s, "
                           "message time; frames without a stamp are --frame-rate apart)")
    pred.add_argument("--frame-rate", type=float, default=30.0,
                      help="Hz of frames without stamps, and of --synthetic-motion sequences")
    pred.add_argument("--confidence", action="store_true",
                      help="also score depth/confidence: the AbsRel of the more confident half of the scored "
                           "pixels against the less confident half (over all frames)")
    pred.add_argument("--processed-bag", type=Path, help="a bag holding predicted depth (e.g. the node's output)")
    pred.add_argument("--pred-topic", default="/camera/depth", help="depth topic in --processed-bag")
    p.add_argument("--align", choices=ALIGN_MODES, default=None,
                   help="none (metric models; the default for them), median, lstsq_disparity (the default for "
                        "relative_disparity models)")
    p.add_argument("--min-depth", type=float, help="metres (default: the dataset's, else 0.1)")
    p.add_argument("--max-depth", type=float, help="metres (default: the dataset's, else 50)")
    p.add_argument("--out", type=Path, default=Path("out/eval"))
    p.add_argument("--max-error-maps", type=int, default=8)


def run_from_args(args: argparse.Namespace) -> int:
    preset = DATASETS.get(args.dataset or "", {})
    intrinsics: tuple[float, float, float, float] | None = None
    given = [args.fx, args.fy, args.cx, args.cy]
    if all(v is not None for v in given):
        intrinsics = (args.fx, args.fy, args.cx, args.cy)
    elif any(v is not None for v in given):
        raise ValueError("give all of --fx --fy --cx --cy, or none")
    elif preset.get("intrinsics"):
        intrinsics = preset["intrinsics"]
    low, high = preset.get("range", (0.1, 50.0))
    min_depth = args.min_depth if args.min_depth is not None else low
    max_depth = args.max_depth if args.max_depth is not None else high

    if (args.model is None) == (args.processed_bag is None):
        raise ValueError("give exactly one of --model or --processed-bag")
    predictor: Any
    if args.model is not None:
        predictor = ModelPredictor(args.model, args.backend, (args.disparity_scale, args.disparity_shift),
                                   args.edge_filter, args.temporal_filter, args.confidence, args.frame_rate)
        align_mode = args.align or ("lstsq_disparity" if predictor.relative else "none")
    else:
        predictor = BagPredictor(args.processed_bag, args.pred_topic)
        align_mode = args.align or "none"

    samples: Iterator[Sample]
    if args.synthetic:
        width, height = (int(v) for v in args.synthetic_size.lower().split("x"))
        motion = None
        if args.synthetic_motion is not None:
            parts = [float(v) for v in args.synthetic_motion.split(",")]
            if not 1 <= len(parts) <= 2:
                raise ValueError("--synthetic-motion is SPEED or SPEED,YAW_RATE")
            motion = (parts[0], parts[1] if len(parts) == 2 else 0.0)
        samples = synthetic_samples(args.synthetic, args.synthetic_seed, width, height, motion, args.frame_rate,
                                    args.synthetic_recipe)
    elif args.rgb_dir is not None or args.depth_dir is not None or args.associations is not None:
        depth_scale = args.depth_scale or preset.get("depth_scale")
        if depth_scale is None:
            raise ValueError("give --depth-scale (TUM 5000, NYU 1000, KITTI 256) or --dataset")
        if args.associations is None and (args.rgb_dir is None or args.depth_dir is None):
            raise ValueError("give both --rgb-dir and --depth-dir (or --associations)")
        pairs = pair_files(args.rgb_dir or Path("."), args.depth_dir or Path("."), args.rgb_pattern,
                           args.depth_pattern, args.associations)
        samples = folder_samples(pairs, depth_scale, intrinsics)
    else:
        bag = args.bag or args.processed_bag
        if bag is None or args.depth_topic is None:
            raise ValueError("ground truth: give --rgb-dir/--depth-dir, or --bag (or --processed-bag) with "
                             "--depth-topic")
        samples = bag_samples(bag, args.depth_topic, args.image_topic, args.camera_info_topic, intrinsics)

    summary = evaluate(samples, predictor, align_mode, min_depth, max_depth, args.out, args.max_error_maps)
    m = summary["metrics"]
    print(f"{summary['frames']} frame(s), align {align_mode}: AbsRel {m['abs_rel']['mean']:.4f}  "
          f"SqRel {m['sq_rel']['mean']:.4f}  RMSE {m['rmse']['mean']:.4f}  RMSE log {m['rmse_log']['mean']:.4f}  "
          f"SILog {m['silog']['mean']:.2f}  δ1 {m['delta1']['mean']:.4f}  δ2 {m['delta2']['mean']:.4f}  "
          f"δ3 {m['delta3']['mean']:.4f}  boundary F1 {m['boundary_f1']['mean']:.4f}")
    b = summary["constant_baseline"]
    print(f"constant depth, same alignment ({'median' if align_mode == 'none' else align_mode}): AbsRel "
          f"{b['abs_rel']['mean']:.4f}  RMSE {b['rmse']['mean']:.4f}  δ1 {b['delta1']['mean']:.4f}; the model is "
          f"better on {summary['frames_better_than_constant']} of {summary['frames']} frame(s)")
    if isinstance(predictor, ModelPredictor) and args.edge_filter is not None:
        share = predictor.edge_pixels / max(1, predictor.pixels)
        print(f"edge filter (threshold {args.edge_filter:g}): {100 * share:.2f} % of the predicted pixels removed "
              "and not scored")
    if isinstance(predictor, ModelPredictor) and predictor.temporal is not None:
        print(f"temporal filter (time constant {args.temporal_filter:g} s): {predictor.temporal_resets} restart(s) "
              f"in {summary['frames']} frame(s)")
    if "confidence" in summary:
        c = summary["confidence"]
        print(f"confidence: AbsRel of the more confident half {c['confident_half_abs_rel']:.4f}, of the less "
              f"confident half {c['unconfident_half_abs_rel']:.4f} (ratio {c['ratio']:.3f})")
    print(f"wrote {args.out}/per_frame.csv, summary.json, error_histogram.png, per_frame_abs_rel.png, error_maps/")
    return 0 if math.isfinite(m["abs_rel"]["mean"]) else 1
