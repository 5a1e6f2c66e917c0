"""Depth -> a bgr8 colour image for people (RViz), coloured by inverse depth so near detail shows."""

from __future__ import annotations

import cv2
import numpy as np

COLORMAPS: dict[str, int | None] = {
    "turbo": cv2.COLORMAP_TURBO,
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "plasma": cv2.COLORMAP_PLASMA,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "jet": cv2.COLORMAP_JET,
    "gray": None,
}


def auto_range(depth: np.ndarray) -> tuple[float, float]:
    """Robust (near, far) of the valid depth: the 2nd and 98th percentiles.

    Estimated on every 4th pixel of every 4th row: as robust, and 16x less to sort per frame.
    """
    sample = depth[::4, ::4] if depth.size >= 4096 else depth
    valid = sample[np.isfinite(sample)]
    if valid.size == 0:
        return 0.1, 10.0
    near, far = np.percentile(valid, [2.0, 98.0])
    if far <= near:
        far = near * 1.01 + 1e-3
    return float(near), float(far)


def colorize_depth(depth: np.ndarray, colormap: str = "turbo", near: float = 0.0, far: float = 0.0) -> np.ndarray:
    """(h, w) metres -> (h, w, 3) uint8 BGR; near = warm/bright, invalid = black.

    ``near``/``far`` set the colour range in metres; 0 for either means the frame's robust range.
    """
    if near <= 0 or far <= 0 or far <= near:
        auto_near, auto_far = auto_range(depth)
        near = near if near > 0 else auto_near
        far = far if far > near else max(auto_far, near * 1.01 + 1e-3)
    inv_near, inv_far = 1.0 / near, 1.0 / far
    valid = np.isfinite(depth) & (depth > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        level = (1.0 / depth - inv_far) * (255.0 / (inv_near - inv_far))
    level = np.clip(np.nan_to_num(level, nan=0.0), 0, 255).astype(np.uint8)
    code = COLORMAPS[colormap]
    coloured = cv2.cvtColor(level, cv2.COLOR_GRAY2BGR) if code is None else cv2.applyColorMap(level, code)
    coloured[~valid] = 0
    return coloured
