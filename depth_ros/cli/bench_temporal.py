"""`depth-ros bench --temporal`: what the temporal filter does to a depth stream (prints numbers).

Sequences with exact depth (depth_ros.synthetic.generator.sequence), each frame's estimate the truth with a
3 % global scale jitter and 2 % per-pixel noise (core.evaluation.jittered_prediction), at ``rate_hz``:
- static camera: frame-to-frame depth noise (RMS log change) after 10 frames, raw and filtered;
- sudden change (a nearer object appears; a cut to another scene): AbsRel on the new truth 1 and 2 frames on;
- moving camera (ahead at 0.5 and 1.0 m/s, and 0.5 m/s turning at 0.3 rad/s): AbsRel filtered - raw.
"""

from __future__ import annotations

import numpy as np

from depth_ros.core.evaluation import depth_metrics, frame_to_frame_noise, jittered_prediction
from depth_ros.core.temporal import TemporalFilter, TemporalSettings
from depth_ros.synthetic.generator import sequence

SCENES = (5, 11, 23)


def abs_rel(depth: np.ndarray, truth: np.ndarray) -> float:
    return depth_metrics(depth, truth, boundary=False).abs_rel
MOTIONS = ((0.5, 0.0), (1.0, 0.0), (0.5, 0.3))  # (m/s ahead, rad/s turning)


def static_noise(seed: int, settings: TemporalSettings, rate_hz: float, size: tuple[int, int]) -> tuple[float, float]:
    frames = sequence(seed, 20, *size, rate_hz)
    rng = np.random.default_rng(seed)
    temporal = TemporalFilter(settings)
    raw_noise, filtered_noise = [], []
    previous: tuple[np.ndarray, np.ndarray] | None = None
    for index, frame in enumerate(frames):
        raw = jittered_prediction(frame.depth, rng)
        filtered = temporal.update(raw, index / rate_hz).depth
        if previous is not None and index >= 10:
            raw_noise.append(frame_to_frame_noise(raw, previous[0]))
            filtered_noise.append(frame_to_frame_noise(filtered, previous[1]))
        previous = (raw, filtered)
    return float(np.mean(raw_noise)), float(np.mean(filtered_noise))


def sequence_truths(seed: int, count: int, size: tuple[int, int], rate_hz: float, speed: float = 0.0,
                    yaw_rate: float = 0.0, change_at: int | None = None, kind: str = ""
                    ) -> tuple[list[np.ndarray], np.ndarray]:
    """The exact depth (float32) of each frame of a sequence, and the pixels that change at frame ``change_at``:
    from it on, ``kind`` 'object' puts an object 0.8 m away in the middle third of the image, 'cut' switches to
    another scene (seed + 1000)."""
    truths = [f.depth.astype(np.float32) for f in sequence(seed, count, *size, rate_hz, speed=speed,
                                                            yaw_rate=yaw_rate)]
    width, height = size
    region = np.zeros((height, width), bool)
    if change_at is not None and kind == "cut":
        truths[change_at:] = [f.depth.astype(np.float32) for f in sequence(seed + 1000, count - change_at, *size,
                                                                            rate_hz)]
        region[:] = True
    elif change_at is not None:
        region[height // 3: 2 * height // 3, width // 3: 2 * width // 3] = True
        for truth in truths[change_at:]:
            truth[region] = 0.8
    return truths, region


def sudden_change(seed: int, settings: TemporalSettings, rate_hz: float, size: tuple[int, int],
                  kind: str) -> list[float]:
    """AbsRel of the filtered depth on the changed pixels, 0, 1 and 2 frames after the change."""
    truths, region = sequence_truths(seed, 13, size, rate_hz, change_at=10, kind=kind)
    rng = np.random.default_rng(seed)
    temporal = TemporalFilter(settings)
    scores = []
    for index, truth in enumerate(truths):
        filtered = temporal.update(jittered_prediction(truth, rng), index / rate_hz).depth
        if index >= 10:
            scores.append(abs_rel(np.where(region, filtered, np.nan), np.where(region, truth, np.nan)))
    return scores


def moving(seed: int, settings: TemporalSettings, rate_hz: float, size: tuple[int, int], speed: float,
           yaw_rate: float) -> tuple[float, float]:
    frames = sequence(seed, 30, *size, rate_hz, speed=speed, yaw_rate=yaw_rate)
    rng = np.random.default_rng(seed)
    temporal = TemporalFilter(settings)
    raw_scores, filtered_scores = [], []
    for index, frame in enumerate(frames):
        raw = jittered_prediction(frame.depth, rng)
        filtered = temporal.update(raw, index / rate_hz).depth
        raw_scores.append(abs_rel(raw, frame.depth))
        filtered_scores.append(abs_rel(filtered, frame.depth))
    return float(np.nanmean(raw_scores)), float(np.nanmean(filtered_scores))


def run(rate_hz: float = 15.0, size: tuple[int, int] = (320, 240), settings: TemporalSettings | None = None
        ) -> dict[str, object]:
    settings = settings or TemporalSettings()
    print(f"temporal filter (time constant {settings.time_constant} s, settle {settings.settle_band}, change "
          f"{settings.change_threshold}) at {rate_hz:g} Hz, {size[0]}x{size[1]}, scenes {SCENES}; each frame: "
          "3 % scale jitter, 2 % pixel noise")
    results: dict[str, object] = {"static": [], "object": [], "cut": [], "moving": []}
    for seed in SCENES:
        raw, filtered = static_noise(seed, settings, rate_hz, size)
        results["static"].append({"seed": seed, "raw": raw, "filtered": filtered})  # type: ignore[attr-defined]
        print(f"  static  scene {seed:>3}: frame-to-frame noise {100 * raw:.2f} % -> {100 * filtered:.2f} % "
              f"({raw / filtered:.2f}x lower)")
    for kind in ("object", "cut"):
        for seed in SCENES:
            scores = sudden_change(seed, settings, rate_hz, size, kind)
            results[kind].append({"seed": seed, "abs_rel": scores})  # type: ignore[attr-defined]
            print(f"  {kind:<7} scene {seed:>3}: AbsRel on the new truth at frames 0, 1, 2 after it: "
                  + ", ".join(f"{s:.4f}" for s in scores))
    for speed, yaw_rate in MOTIONS:
        for seed in SCENES:
            raw, filtered = moving(seed, settings, rate_hz, size, speed, yaw_rate)
            results["moving"].append({"seed": seed, "speed": speed, "yaw_rate": yaw_rate,  # type: ignore[attr-defined]
                                      "raw": raw, "filtered": filtered})
            print(f"  moving  scene {seed:>3} {speed:.1f} m/s {yaw_rate:.1f} rad/s: AbsRel {raw:.4f} -> "
                  f"{filtered:.4f} ({100 * (filtered - raw):+.2f} %)")
    return results
