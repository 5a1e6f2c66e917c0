"""`depth-ros bench --confidence`: does `depth/confidence` rank pixels by their error? (prints numbers)

A confidence is useful when the pixels it trusts are the accurate ones: the test (core.confidence.halves_error)
is the mean relative error of the more confident half of each frame's pixels against the less confident half.
Errors are after the frame's median scale is taken out (a global scale error is the same for every pixel: no
per-pixel confidence can rank it); unaligned numbers are printed beside them.

- **Sequences with exact depth** (the temporal benchmark's: a static camera, a new object, a cut, a camera
  moving ahead and turning; synthetic.generator.sequence), each frame a network-like prediction
  (core.evaluation.network_like_depth at ``NETWORK`` of 320x240) with a 3 % global scale jitter and per-pixel
  noise of two kinds: independent 2 % everywhere (the temporal benchmark's), and a level that varies over the
  image around 2 % (core.evaluation.noise_level_map), as a network's error does. Confidence from the local depth
  range alone (per frame), with the temporal filter's spread, and with a network that declares its noise level
  (a calibrated ``confidence_output``).
- **Real frames** (TUM, D435 in data/: bags.samples.shipped_samples): a network-like prediction of the true
  depth, and the embedded default model run through DepthEstimator (its real errors).
- The cost of the confidence per 640x480 frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from depth_ros.cli.bench_temporal import sequence_truths
from depth_ros.core.confidence import frame_confidence, halves_error
from depth_ros.core.edges import window_radius
from depth_ros.core.evaluation import jittered_prediction, network_like_depth, noise_level_map, valid_depth
from depth_ros.core.temporal import TemporalFilter, TemporalSettings
from depth_ros.synthetic.generator import sequence

SCENES = (5, 11, 23)
SIZE = (320, 240)
NETWORK = (160, 120)
RATE_HZ = 15.0
# (name, frames, m/s ahead, rad/s turning, the frame where the truth changes, how)
SEQUENCES = (("static", 20, 0.0, 0.0, None, ""), ("object", 20, 0.0, 0.0, 10, "object"),
             ("cut", 20, 0.0, 0.0, 10, "cut"), ("ahead 0.5 m/s", 20, 0.5, 0.0, None, ""),
             ("ahead 1.0 m/s", 20, 1.0, 0.0, None, ""), ("turning", 20, 0.5, 0.3, None, ""))
MODES = ("per frame", "temporal", "temporal + network sigma")


@dataclass
class Halves:
    """Error sums over the confident and the unconfident halves, aligned and not."""

    confident: float = 0.0
    unconfident: float = 0.0
    confident_raw: float = 0.0
    unconfident_raw: float = 0.0

    def add(self, confidence: np.ndarray, depth: np.ndarray, truth: np.ndarray) -> None:
        valid = valid_depth(depth) & valid_depth(truth)
        if np.count_nonzero(valid) < 16:
            return
        scale = float(np.median(truth[valid] / depth[valid]))
        error = np.full(depth.shape, np.nan, np.float32)
        raw = error.copy()
        error[valid] = np.abs(depth[valid] * scale - truth[valid]) / truth[valid]
        raw[valid] = np.abs(depth[valid] - truth[valid]) / truth[valid]
        top, bottom, half = halves_error(confidence, error)
        self.confident, self.unconfident = self.confident + top / half, self.unconfident + bottom / half
        top, bottom, half = halves_error(confidence, raw)
        self.confident_raw, self.unconfident_raw = self.confident_raw + top / half, self.unconfident_raw + bottom / half

    def __add__(self, other: Halves) -> Halves:
        return Halves(self.confident + other.confident, self.unconfident + other.unconfident,
                      self.confident_raw + other.confident_raw, self.unconfident_raw + other.unconfident_raw)

    def ratio(self, raw: bool = False) -> float:
        top, bottom = (self.confident_raw, self.unconfident_raw) if raw else (self.confident, self.unconfident)
        return top / bottom if bottom > 0 else float("nan")


@lru_cache(maxsize=len(SCENES) * len(SEQUENCES))
def _truths(seed: int, frames: int, speed: float, yaw_rate: float, change_at: int | None, how: str
            ) -> tuple[np.ndarray, ...]:
    """The exact depth of each frame of a sequence (rendered once per run: every mode scores the same)."""
    return tuple(sequence_truths(seed, frames, SIZE, RATE_HZ, speed, yaw_rate, change_at, how)[0])


def sequence_halves(seed: int, spec: tuple, noise: str, mode: str) -> Halves:
    """The halves' errors over one sequence (frames from the third on: the filters have a past)."""
    _, frames, speed, yaw_rate, change_at, how = spec
    rng = np.random.default_rng(seed)
    level: float | np.ndarray = 0.02 if noise == "independent" else noise_level_map(SIZE[::-1], rng)
    temporal = TemporalFilter(TemporalSettings()) if mode != "per frame" else None
    radius = window_radius(SIZE[0], NETWORK[0])
    halves = Halves()
    for index, truth in enumerate(_truths(seed, frames, speed, yaw_rate, change_at, how)):
        prediction = jittered_prediction(network_like_depth(truth, *NETWORK), rng, pixel_noise=level)
        stabilised = None
        depth = prediction
        if temporal is not None:
            stabilised = temporal.update(prediction, index / RATE_HZ, track_spread=True)
            depth = stabilised.depth
        sigma = np.broadcast_to(np.float32(level), depth.shape) if mode.endswith("sigma") else None
        confidence = frame_confidence(depth, radius, stabilised, sigma, "sigma")
        if index >= 2:
            halves.add(confidence, depth, truth)
    return halves


def real_halves(model: str = "default") -> list[dict[str, object]]:
    """On the real frames in data/: a network-like prediction of the true depth, and ``model``'s own."""
    from depth_ros.bags.samples import shipped_samples
    from depth_ros.pipeline import DepthEstimator, PipelineSettings
    from depth_ros.resources import resolve_model_path

    estimator = DepthEstimator.from_path(resolve_model_path(model), "onnxruntime",
                                         settings=PipelineSettings(min_depth=0.0, max_depth=1e9))
    rows = []
    for shipped in shipped_samples():
        truth = shipped.truth
        like = Halves()
        depth = network_like_depth(truth, 256, 192)
        like.add(frame_confidence(depth, window_radius(truth.shape[1], 256)), depth, truth)
        network = Halves()
        assert shipped.rgb is not None and shipped.camera is not None
        frame = estimator.estimate(shipped.rgb, shipped.camera, confidence=True)
        assert frame.confidence is not None
        network.add(frame.confidence, frame.depth, truth)
        rows.append({"frame": shipped.name, "network_like": like.ratio(), "default_model": network.ratio(),
                     "default_model_halves": (network.confident, network.unconfident)})
    return rows


def confidence_cost(threads: int = 2, runs: int = 100) -> float:
    """Median seconds of frame_confidence on a 640x480 frame with the temporal filter's spread."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        truth = sequence(5, 1, 640, 480, RATE_HZ)[0].depth.astype(np.float32)
        rng = np.random.default_rng(0)
        temporal = TemporalFilter()
        stabilised = None
        for index in range(3):
            stabilised = temporal.update(jittered_prediction(network_like_depth(truth, 256, 192), rng),
                                         index / RATE_HZ, track_spread=True)
        assert stabilised is not None
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            frame_confidence(stabilised.depth, 2, stabilised)
            times.append(time.perf_counter() - t0)
        return float(np.median(times))
    finally:
        cv2.setNumThreads(previous)


def run() -> dict[str, object]:
    print(f"confidence: error of the more confident half / the less confident half of each frame's pixels "
          f"(median-aligned AbsRel; unaligned in brackets); {SIZE[0]}x{SIZE[1]} sequences, network "
          f"{NETWORK[0]}x{NETWORK[1]}, {RATE_HZ:g} Hz, scenes {SCENES}; 3 % scale jitter + per-pixel noise")
    results: dict[str, object] = {"sequences": [], "real": []}
    for noise in ("independent", "varying"):
        print(f"  per-pixel noise: {'independent 2 %' if noise == 'independent' else 'varying over the image'}")
        print(f"  {'sequence':<15}" + "".join(f"{mode:>30}" for mode in MODES))
        for spec in SEQUENCES:
            cells = []
            for mode in MODES:
                total = sum((sequence_halves(seed, spec, noise, mode) for seed in SCENES), Halves())
                results["sequences"].append({"noise": noise, "sequence": spec[0], "mode": mode,  # type: ignore[attr-defined]
                                             "ratio": total.ratio(), "ratio_unaligned": total.ratio(raw=True)})
                cells.append(f"{total.ratio():.3f} ({total.ratio(raw=True):.3f})")
            print(f"  {spec[0]:<15}" + "".join(f"{cell:>30}" for cell in cells))
    rows = real_halves()
    results["real"] = rows
    for row in rows:
        print(f"  real {row['frame']:<15} network-like prediction {row['network_like']:.3f}   embedded default "
              f"model {row['default_model']:.3f}")
    cost = confidence_cost()
    results["cost_ms"] = 1000 * cost
    print(f"  cost: {1000 * cost:.2f} ms per 640x480 frame (median, 2 threads)")
    return results
