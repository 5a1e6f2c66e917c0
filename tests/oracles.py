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

from depth_ros.contract import ModelContract
from depth_ros.graph_models import map_model

IDENTITY_NORM = {"scale": 1.0 / 255.0, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}


def make_contract(kind: str, height: int, width: int, resize: str = "stretch", **extra: Any) -> ModelContract:
    return ModelContract.from_dict({
        "output_kind": kind,
        "input": {"height": height, "width": width, "resize": resize, "channels": "rgb", **IDENTITY_NORM},
        "name": f"oracle {kind}",
        **extra,
    })


def save_oracle(directory: Path, output: np.ndarray, contract: ModelContract,
                input_size: tuple[int, int] | None, name: str = "oracle.onnx", output_rank: int = 4) -> Path:
    """Write an oracle whose first output is ``output``; returns its path."""
    path = Path(directory) / name
    onnx.save(map_model(output, contract, input_size, output_rank=output_rank), str(path))
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
