"""`depth-ros bench --edges`: what the depth-edge filter removes, and what it costs (prints numbers).

Exact depth (12 synthetic scenes and the real TUM / D435 frames in data/) through a network-like prediction
at three network sizes (core.evaluation.network_like_depth): the fraction of flying pixels removed (more than
5 % from every true surface within 4 pixels) and of pixels on a true surface removed, per threshold; then the
filter's cost per 640x480 frame (median of 200 runs, OpenCV limited to ``threads``).
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from depth_ros.bags.samples import shipped_samples
from depth_ros.core.edges import edge_mask, window_radius
from depth_ros.core.evaluation import flying_pixels, network_like_depth
from depth_ros.synthetic.generator import sample

NETWORK_SIZES = ((518, 392), (256, 192), (128, 96))
THRESHOLDS = (0.03, 0.05, 0.08, 0.12)


def truth_frames(width: int = 640, height: int = 480, synthetic: int = 12) -> list[tuple[str, np.ndarray]]:
    """Exact depth: ``synthetic`` procedural scenes and the real frames shipped in data/ (when installed)."""
    frames = [(f"synthetic_{i}", sample(777, i, width, height).depth.astype(np.float32)) for i in range(synthetic)]
    return frames + [(shipped.name, shipped.truth) for shipped in shipped_samples()]


def edge_removal(frames: list[tuple[str, np.ndarray]], net_width: int, net_height: int,
                 thresholds: tuple[float, ...]) -> dict[float, tuple[int, int, int, int]]:
    """Per threshold: (flying pixels, of those removed, true-surface pixels, of those removed) over ``frames``
    predicted by a perfect network at net_width x net_height, with the node's window for that size."""
    radius = window_radius(frames[0][1].shape[1], net_width)
    counts = {threshold: np.zeros(4, np.int64) for threshold in thresholds}
    for _, truth in frames:
        depth = network_like_depth(truth, net_width, net_height)
        flying, surface = flying_pixels(depth, truth, radius=4)
        for threshold in thresholds:
            removed = edge_mask(depth, threshold, radius)
            counts[threshold] += (flying.sum(), (flying & removed).sum(), surface.sum(), (surface & removed).sum())
    return {threshold: tuple(int(n) for n in c) for threshold, c in counts.items()}  # type: ignore[misc]


def run(threads: int = 2) -> dict[str, object]:
    frames = truth_frames()
    results: dict[str, object] = {"frames": [name for name, _ in frames], "sizes": {}}
    print(f"edge filter on {len(frames)} frames with exact depth ({', '.join(n for n, _ in frames)})")
    print(f"{'network':>9} {'radius':>6} {'threshold':>9} {'flying %':>9} {'flying removed %':>17} "
          f"{'surface removed %':>18}")
    for net_w, net_h in NETWORK_SIZES:
        radius = window_radius(frames[0][1].shape[1], net_w)
        rows = []
        for threshold, (flying, flying_removed, surface, surface_removed) in edge_removal(
                frames, net_w, net_h, THRESHOLDS).items():
            row = {"threshold": threshold, "radius": radius, "flying_fraction": flying / max(1, flying + surface),
                   "flying_removed": flying_removed / max(1, flying),
                   "surface_removed": surface_removed / max(1, surface)}
            rows.append(row)
            print(f"{net_w}x{net_h:<5} {radius:>6} {threshold:>9.2f} {100 * row['flying_fraction']:>9.2f} "
                  f"{100 * row['flying_removed']:>17.1f} {100 * row['surface_removed']:>18.2f}")
        results["sizes"][f"{net_w}x{net_h}"] = rows  # type: ignore[index]
    previous = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        depth = network_like_depth(frames[1][1], 256, 192)
        for _ in range(20):
            edge_mask(depth, 0.05, 2)
        times = []
        for _ in range(200):
            t0 = time.perf_counter()
            edge_mask(depth, 0.05, 2)
            times.append(time.perf_counter() - t0)
    finally:
        cv2.setNumThreads(previous)
    cost = float(np.median(times) * 1e3)
    results["cost_ms_640x480"] = cost
    print(f"cost per 640x480 frame (radius 2, OpenCV threads {threads}): median {cost:.3f} ms, "
          f"p95 {np.percentile(times, 95) * 1e3:.3f} ms")
    return results
