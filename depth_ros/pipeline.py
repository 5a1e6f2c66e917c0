"""The depth pipeline: RGB image + camera model -> metric depth image (+ its camera model).

Pure functions on arrays; the node, the bag tools and the benchmarks all call this code.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from depth_ros.backends import BackendOptions, InferenceBackend, create_backend
from depth_ros.camera import CameraModel
from depth_ros.contract import ModelContract, read_contract_from_onnx_metadata
from depth_ros.metric import MetricContext, apply_depth_range, to_metric
from depth_ros.preprocess import InputGeometry, output_to_map, plan_input, postprocess, preprocess


@dataclass(frozen=True)
class PipelineSettings:
    """Per-frame conversion settings (the node's runtime-changeable parameters)."""

    output_scale: float = 1.0  # depth image size = image size * output_scale
    min_depth: float = 0.1  # metres; nearer becomes NaN (intersected with the contract's range)
    max_depth: float = 50.0  # metres; farther becomes NaN
    disparity_scale: float = 1.0  # relative_disparity: 1/D = scale * d + shift
    disparity_shift: float = 0.0
    focal_rescale: bool = True  # metric_depth: rescale by the contract's focal_ratio


@dataclass
class DepthFrame:
    depth: np.ndarray  # (h, w) float32 metres, NaN = invalid
    camera: CameraModel  # the camera model of the depth image (its own size)
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    prediction: np.ndarray | None = None  # the model's output resized to the depth image, before conversion


# Online scale recovery (depth_ros.scale_recovery): called with (map, kind, depth-image camera) where kind is
# 'disparity' (relative models: the raw map; return (s, t) with 1/D = s*d + t) or 'depth' (metric models: the
# metric depth; return (s, _) to refine it to D / s). None keeps the settings' conversion.
ScaleHook = Callable[[np.ndarray, str, CameraModel], "tuple[float, float] | None"]


def output_size(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


class DepthEstimator:
    """Runs one model: owns its backend and contract, converts each frame to metres."""

    def __init__(
        self, backend: InferenceBackend, contract: ModelContract, settings: PipelineSettings | None = None
    ) -> None:
        self.backend = backend
        self.contract = contract
        self.settings = settings or PipelineSettings()
        self._geometry_cache: dict[tuple[int, int], InputGeometry] = {}
        self.scale_hook: ScaleHook | None = None  # online scale recovery (the node sets it once)

    @classmethod
    def from_path(cls, model_path: str | Path, backend: str = "auto", options: BackendOptions | None = None,
                  settings: PipelineSettings | None = None) -> DepthEstimator:
        runtime = create_backend(model_path, backend, options)
        contract = read_contract_from_onnx_metadata(runtime.metadata(), str(model_path))
        return cls(runtime, contract, settings)

    def geometry(self, height: int, width: int) -> InputGeometry:
        key = (height, width)
        geometry = self._geometry_cache.get(key)
        if geometry is None:
            geometry = plan_input(height, width, self.contract.input, self.backend.fixed_input_size)
            self._geometry_cache = {key: geometry}  # cameras rarely change size: keep one
        return geometry

    def depth_range(self) -> tuple[float, float]:
        low, high = self.settings.min_depth, self.settings.max_depth
        if self.contract.min_depth is not None:
            low = max(low, self.contract.min_depth)
        if self.contract.max_depth is not None:
            high = min(high, self.contract.max_depth)
        return low, high

    def predict(self, rgb: np.ndarray) -> tuple[np.ndarray, InputGeometry, dict[str, float]]:
        """Run the network: (raw 2-D output at network resolution, input geometry, timings)."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        geometry = self.geometry(rgb.shape[0], rgb.shape[1])
        tensor = preprocess(rgb, self.contract.input, geometry)
        t1 = time.perf_counter()
        raw = output_to_map(self.backend.infer(tensor))
        t2 = time.perf_counter()
        timings["preprocess"] = t1 - t0
        timings["inference"] = t2 - t1
        return raw, geometry, timings

    def estimate(self, rgb: np.ndarray, camera: CameraModel) -> DepthFrame:
        """HxWx3 uint8 RGB (the camera model's size) -> metric depth at image size * output_scale."""
        if (rgb.shape[1], rgb.shape[0]) != camera.size:
            raise ValueError(
                f"image is {rgb.shape[1]}x{rgb.shape[0]} but its camera model is {camera.width}x{camera.height}"
            )
        raw, geometry, timings = self.predict(rgb)
        t0 = time.perf_counter()
        width, height = output_size(camera.width, camera.height, self.settings.output_scale)
        depth_camera = camera.scaled_to(width, height)
        prediction = postprocess(raw, geometry, width, height)
        relative = self.contract.output_kind == "relative_disparity"
        scale, shift = self.settings.disparity_scale, self.settings.disparity_shift
        scale_hook = self.scale_hook
        if scale_hook is not None and relative:
            fitted = scale_hook(prediction, "disparity", depth_camera)
            if fitted is not None:
                scale, shift = fitted
        ctx = MetricContext(
            f_over_w=camera.f_over_w,
            fx_at_input=camera.fx * geometry.scale_x,
            disparity_scale=scale,
            disparity_shift=shift,
            focal_rescale=self.settings.focal_rescale,
        )
        depth = to_metric(prediction, self.contract, ctx)
        if scale_hook is not None and not relative:
            fitted = scale_hook(depth, "depth", depth_camera)
            if fitted is not None:
                depth *= np.float32(1.0 / fitted[0])
        low, high = self.depth_range()
        apply_depth_range(depth, low, high if math.isfinite(high) else np.inf)
        timings["postprocess"] = time.perf_counter() - t0
        return DepthFrame(depth=depth, camera=depth_camera, timings=timings, prediction=prediction)
