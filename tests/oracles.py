"""Oracle models and message builders shared by the tests.

An oracle is an ONNX graph (run by real ONNX Runtime) whose output is a known map: the exact
canonical inverse depth / metric depth / disparity of an analytic scene, sampled at the pixels
the network input corresponds to. Ground truth is computed here from the scene, never from the
code under test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from sensor_msgs.msg import CameraInfo, Image

from depth_ros.backends.graph_models import map_model
from depth_ros.core.contract import ModelContract

IDENTITY_NORM = {"scale": 1.0 / 255.0, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}


def make_contract(kind: str, height: int, width: int, resize: str = "stretch", **extra: Any) -> ModelContract:
    return ModelContract.from_dict({
        "output_kind": kind,
        "input": {"height": height, "width": width, "resize": resize, "channels": "rgb", **IDENTITY_NORM},
        "name": f"oracle {kind}",
        **extra,
    })


def save_oracle(directory: Path, output: np.ndarray, contract: ModelContract,
                input_size: tuple[int, int] | None, name: str = "oracle.onnx", output_rank: int = 4,
                second_output: np.ndarray | None = None, batch: int | str = 1) -> Path:
    """Write an oracle whose first output is ``output`` (and second ``second_output``); returns its path.
    ``batch``: a fixed batch, or a name for a dynamic one (every image of a batch gets the map)."""
    path = Path(directory) / name
    onnx.save(map_model(output, contract, input_size, output_rank=output_rank, second_output=second_output,
                        batch=batch), str(path))
    return path


def network_pixel_positions(
    net_h: int, net_w: int, image_h: int, image_w: int, top: int = 0, left: int = 0,
    content_h: int | None = None, content_w: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Image-pixel coordinates (u, v) of each network-input pixel centre (half-pixel convention).

    The image occupies the content region (top, left, content_h x content_w) of the input;
    outside it the positions extrapolate the same mapping.
    """
    content_h = content_h or net_h
    content_w = content_w or net_w
    j = np.arange(net_w, dtype=np.float64) - left
    i = np.arange(net_h, dtype=np.float64) - top
    u = (j + 0.5) * (image_w / content_w) - 0.5
    v = (i + 0.5) * (image_h / content_h) - 0.5
    return np.meshgrid(u, v)


def plane_inverse_depth(u: np.ndarray, v: np.ndarray, fx: float, fy: float, cx: float, cy: float,
                        normal: tuple[float, float, float], distance: float) -> np.ndarray:
    """1/Z at pixel (u, v) of a plane n·X = distance seen by a pinhole camera (exact, affine in u, v)."""
    nx, ny, nz = normal
    return (nx * (u - cx) / fx + ny * (v - cy) / fy + nz) / distance


def camera_info(width: int, height: int, fx: float, fy: float, cx: float, cy: float, *,
                p_zero: bool = False, distortion_model: str = "plumb_bob", d: list[float] | None = None,
                binning: tuple[int, int] = (0, 0), roi: tuple[int, int, int, int] | None = None,
                frame_id: str = "camera_optical") -> CameraInfo:
    """A sensor_msgs/CameraInfo; ``roi`` = (x_offset, y_offset, width, height) in full-resolution pixels."""
    info = CameraInfo(width=width, height=height, distortion_model=distortion_model)
    info.header.frame_id = frame_id
    info.d = list(d) if d is not None else [0.0] * 5
    info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [0.0] * 12 if p_zero else [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.binning_x, info.binning_y = binning
    if roi is not None:
        info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = roi
    return info


def rgb_image(rgb: np.ndarray, frame_id: str = "camera_optical") -> Image:
    """An rgb8 sensor_msgs/Image of an HxWx3 uint8 array."""
    height, width = rgb.shape[:2]
    msg = Image(height=height, width=width, encoding="rgb8", step=width * 3, is_bigendian=False)
    msg.header.frame_id = frame_id
    msg.data = np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    return msg


def textured_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# Coefficients each lens model is defined with (ROS order, which is OpenCV's).
LENS_COEFFS = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}


def lens_distort(x: np.ndarray, y: np.ndarray, model: str, d: tuple[float, ...] | list[float]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Forward lens model of normalised coordinates, written out from the ROS/OpenCV definitions.

    plumb_bob k1 k2 p1 p2 k3 and rational_polynomial k1 k2 p1 p2 k3 k4 k5 k6: Brown-Conrady,
    radial (1 + k1 r² + k2 r⁴ + k3 r⁶) / (1 + k4 r² + k5 r⁴ + k6 r⁶) plus tangential p1 p2.
    equidistant k1..k4: Kannala-Brandt, θd = θ (1 + k1 θ² + k2 θ⁴ + k3 θ⁶ + k4 θ⁸), θ = atan r.
    ``d`` has exactly the model's count (the test's canonical vector, never a padded one).
    """
    assert len(d) == LENS_COEFFS[model], (model, d)
    if model == "equidistant":
        k1, k2, k3, k4 = d
        r = np.hypot(x, y)
        theta = np.arctan(r)
        t2 = theta * theta
        theta_d = theta * (1.0 + k1 * t2 + k2 * t2**2 + k3 * t2**3 + k4 * t2**4)
        scale = np.where(r > 0, theta_d / np.where(r > 0, r, 1.0), 1.0)
        return x * scale, y * scale
    k1, k2, p1, p2, k3 = d[:5]
    k4, k5, k6 = d[5:] if model == "rational_polynomial" else (0.0, 0.0, 0.0)
    r2 = x * x + y * y
    radial = (1.0 + k1 * r2 + k2 * r2**2 + k3 * r2**3) / (1.0 + k4 * r2 + k5 * r2**2 + k6 * r2**3)
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return xd, yd


def lens_rays(u: np.ndarray, v: np.ndarray, fx: float, fy: float, cx: float, cy: float, model: str,
              d: tuple[float, ...] | list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Undistorted normalised rays (x_n, y_n) of raw pixels (u, v): `lens_distort` inverted here.

    Fixed-point iteration x <- x + (x_d - f(x)), which contracts for the mild lenses the tests use;
    the result is checked to map back onto the pixels to 1e-9 px.
    """
    xd = (np.asarray(u, np.float64) - cx) / fx
    yd = (np.asarray(v, np.float64) - cy) / fy
    x, y = xd.copy(), yd.copy()
    for _ in range(300):
        fxd, fyd = lens_distort(x, y, model, d)
        x, y = x + (xd - fxd), y + (yd - fyd)
    back_x, back_y = lens_distort(x, y, model, d)
    error = max(float(np.max(np.abs(back_x - xd))) * fx, float(np.max(np.abs(back_y - yd))) * fy)
    assert error < 1e-9, f"{model} {list(d)}: ray inversion did not converge ({error:.2e} px)"
    return x, y


def random_dav2_checkpoint(path: Path, seed: int = 1) -> Path:
    """A random-weight Depth Anything V2 ViT-S in the official .pth key layout, for the torch backend.

    N(0, 0.05) weights (as tests/learning/test_depth_anything.py) leave the ReLU output at 0 everywhere; a final bias of
    2 and a 40x final convolution give a disparity map of ~1.8..3.4 that follows the image, so depth is valid
    everywhere (0.3..0.6 m) and differences between runtimes show."""
    import torch

    from depth_ros.nets.depth_anything_v2 import build

    generator = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(v.shape, generator=generator) * 0.05 for k, v in build("vits").state_dict().items()}
    state["depth_head.scratch.output_conv2.2.bias"] = torch.full((1,), 2.0)
    state["depth_head.scratch.output_conv2.2.weight"] *= 40.0
    torch.save(state, path)
    return path


def step_ramp_depth(width: int, net_width: int, fx: float, near: float, far: float) -> np.ndarray:
    """Depth per image column of a perfect canonical_inverse_depth network's step (``near`` left of its column
    net_width // 2, ``far`` from it) resized net_width -> width with cv2 INTER_LINEAR's convention (half-pixel
    centres, edge clamped), in inverse depth as the pipeline resizes the prediction before conversion."""
    inverse = np.where(np.arange(net_width) < net_width // 2, (fx / width) / near, (fx / width) / far)
    x = (np.arange(width) + 0.5) * net_width / width - 0.5
    left = np.clip(np.floor(x).astype(int), 0, net_width - 1)
    right = np.clip(left + 1, 0, net_width - 1)
    frac = np.clip(x - np.floor(x), 0.0, 1.0)
    return (fx / width) / (inverse[left] * (1 - frac) + inverse[right] * frac)
