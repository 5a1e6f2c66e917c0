"""The depth pipeline: RGB image + camera model -> metric depth image (+ its camera model, + points).

``DepthEstimator`` is the one model entry point: it owns a backend and its model contract, and runs each
frame down one path, written once:

    plan the network input -> preprocess -> infer -> postprocess -> metric -> edges -> temporal -> points
    -> download (-> confidence, on the host, when asked)

Every step comes from an ``ArrayOps`` table (depth_ros.core.array_ops), chosen once per backend:
- host (numpy/OpenCV: core.preprocess, core.metric, core.pointcloud) for backends that run on host arrays
  (ONNX Runtime): the CPU-tuned path;
- device (torch: core.torch_ops) for backends that offer ``infer_device`` (TensorRT always, the torch
  backend): the image is uploaded once, resizing, inference, metric conversion and the point cloud stay on
  the backend's device, and depth and points come back in one device->host copy.
The node and the bag tools (through depth_ros.ros.frame_processor), eval and the benchmarks all call this.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from depth_ros.backends import BackendOptions, InferenceBackend, ModelLoadError, create_backend
from depth_ros.core.array_ops import ArrayOps, host_ops
from depth_ros.core.camera import CameraModel
from depth_ros.core.confidence import frame_confidence
from depth_ros.core.contract import ModelContract, read_contract_from_onnx_metadata
from depth_ros.core.edges import edge_radius
from depth_ros.core.metric import MetricContext
from depth_ros.core.preprocess import InputGeometry, plan_input
from depth_ros.core.temporal import TemporalFilter, TemporalResult


@dataclass(frozen=True)
class PipelineSettings:
    """Per-frame conversion settings (the node's runtime-changeable parameters)."""

    output_scale: float = 1.0  # depth image size = image size * output_scale
    min_depth: float = 0.1  # metres; nearer becomes NaN (intersected with the contract's range)
    max_depth: float = 50.0  # metres; farther becomes NaN
    disparity_scale: float = 1.0  # relative_disparity: 1/D = scale * d + shift
    disparity_shift: float = 0.0
    focal_rescale: bool = True  # metric_depth: rescale by the contract's focal_ratio
    edge_filter: bool = False  # depth discontinuities (flying pixels) become invalid (core.edges)
    edge_threshold: float = 0.05  # relative depth jump, both ways, that makes a pixel a discontinuity


@dataclass
class DepthFrame:
    depth: np.ndarray  # (h, w) float32 metres, NaN = invalid
    camera: CameraModel  # the camera model of the depth image (its own size)
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    # The model's output resized to the depth image, before conversion. The device path leaves it None
    # and fetches it only when asked (prediction_map()): the node never needs it, so it is not copied.
    prediction: np.ndarray | None = None
    # x, y, z of `depth` at `points_stride` (ceil(h/stride) x ceil(w/stride), float32), when estimate() was
    # asked for points: three planes from the host path (what the cloud packer interleaves), one
    # (h', w', 3) array from the device path (one download); codecs.fill_cloud_msg takes either.
    points: Any = None
    points_stride: int = 1
    edge_pixels: int = 0  # pixels the edge filter made invalid (in `depth`, and so in its points)
    temporal_reset: bool = False  # the temporal filter restarted from this frame (published as estimated)
    confidence: np.ndarray | None = None  # (h, w) float32 in [0, 1] (core.confidence), when estimate() was asked
    prediction_loader: Callable[[], np.ndarray] | None = field(default=None, repr=False, compare=False)

    def prediction_map(self) -> np.ndarray | None:
        """The prediction (see ``prediction``), copied from the device on first use when needed."""
        if self.prediction is None and self.prediction_loader is not None:
            self.prediction = self.prediction_loader()
            self.prediction_loader = None
        return self.prediction


# Online scale recovery (depth_ros.core.scale_recovery): called with (map, kind, depth-image camera) where kind is
# 'disparity' (relative models: the raw map; return (s, t) with 1/D = s*d + t) or 'depth' (metric models: the
# metric depth; return (s, _) to refine it to D / s). None keeps the settings' conversion.
ScaleHook = Callable[[np.ndarray, str, CameraModel], "tuple[float, float] | None"]


def output_size(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


def offers_device_inference(backend: object) -> bool:
    """Whether ``backend`` runs device tensors in -> device tensors out (``infer_device``)."""
    return callable(getattr(backend, "infer_device", None))


@dataclass
class FrameRequest:
    """One frame for ``DepthEstimator.estimate_batch``: the arguments of ``estimate`` (see there)."""

    rgb: np.ndarray
    camera: CameraModel
    points_stride: int | None = None
    settings: PipelineSettings | None = None
    temporal: TemporalFilter | None = None
    stamp: float = 0.0
    confidence: bool = False
    scale_hook: ScaleHook | None = None  # this camera's online scale recovery (None: the estimator's own)


_CACHED_PLANS = 16  # frame plans kept (one per camera and settings: several cameras share one estimator)


@dataclass(frozen=True)
class FramePlan:
    """What converting a frame of one camera needs beyond its pixels: made once per camera model and
    settings, reused by every frame while both stay the same (cameras rarely change)."""

    geometry: InputGeometry  # the network input
    depth_camera: CameraModel  # the depth image's camera model (image size * output_scale)
    metric: MetricContext  # the settings' conversion; a scale hook replaces its scale and shift per frame
    depth_range: tuple[float, float]  # metres kept (the settings' range within the contract's)
    edges: tuple[float, int] | None  # the edge filter's (threshold, window radius), None when it is off
    window_radius: int = 1  # one network pixel in the depth image, half-width (the edge and confidence windows)


class DepthEstimator:
    """Runs one model: owns its backend and contract, converts each frame to metres.

    ``device_pipeline``: None (default) uses the torch path exactly when the backend offers
    ``infer_device``; False forces the numpy path (tests compare the two); True requires the torch path.
    """

    def __init__(
        self, backend: InferenceBackend, contract: ModelContract, settings: PipelineSettings | None = None,
        device_pipeline: bool | None = None,
    ) -> None:
        self.backend = backend
        self.contract = contract
        self.settings = settings or PipelineSettings()
        self._geometry_cache: dict[tuple[int, int], InputGeometry] = {}
        # (id(camera), id(settings)) -> (camera, settings, plan): the node's camera models and settings are the
        # same objects frame after frame, one pair per camera it serves.
        self._plans: OrderedDict[tuple[int, int], tuple[CameraModel, PipelineSettings, FramePlan]] = OrderedDict()
        self.scale_hook: ScaleHook | None = None  # online scale recovery (the node sets it once)
        # Called with each new network input size (height, width) before the first frame at that size runs:
        # the startup correctness check (depth_ros.backends.check.BackendChecker); it may raise.
        self.input_check: Callable[[tuple[int, int]], None] | None = None
        if device_pipeline is None:
            device_pipeline = offers_device_inference(backend)
        elif device_pipeline and not offers_device_inference(backend):
            raise ValueError(f"backend {backend.name!r} has no infer_device: it cannot run the torch pipeline")
        confidence_output = contract.confidence_output
        outputs = getattr(backend, "output_count", 1)
        if confidence_output is not None and confidence_output.index >= outputs:
            raise ModelLoadError(f"the model contract names output {confidence_output.index} as its confidence "
                                 f"output, but the model has {outputs} output(s); fix the contract "
                                 "(depth-ros contract MODEL --set contract.json) or the model")
        # Asked of the backend when a frame's confidence is wanted: the model's uncertainty output.
        self._confidence_outputs = () if confidence_output is None else (confidence_output.index,)
        self._ops: ArrayOps = host_ops(contract.input)
        self._infer: Callable[..., Any] = backend.infer
        if device_pipeline:
            from depth_ros.core import torch_ops  # torch is there: the backend runs on it

            self._ops = torch_ops.device_ops(torch_ops.TorchPipeline(backend.device, contract.input))
            self._infer = backend.infer_device  # type: ignore[attr-defined]

    @classmethod
    def from_path(cls, model_path: str | Path, backend: str = "auto", options: BackendOptions | None = None,
                  settings: PipelineSettings | None = None, warn: Callable[[str], None] | None = None
                  ) -> DepthEstimator:
        runtime = create_backend(model_path, backend, options, warn)
        contract = read_contract_from_onnx_metadata(runtime.metadata(), str(model_path))
        return cls(runtime, contract, settings)

    @property
    def uses_device_pipeline(self) -> bool:
        """True when frames run through the torch pipeline on the backend's device."""
        return not self._ops.on_host

    def geometry(self, height: int, width: int) -> InputGeometry:
        key = (height, width)
        geometry = self._geometry_cache.get(key)
        if geometry is None:
            geometry = plan_input(height, width, self.contract.input, self.backend.fixed_input_size)
            if self.input_check is not None:
                self.input_check((geometry.net_height, geometry.net_width))
            if len(self._geometry_cache) >= _CACHED_PLANS:  # cameras rarely change size: a few are kept
                self._geometry_cache.pop(next(iter(self._geometry_cache)))
            self._geometry_cache[key] = geometry
        return geometry

    def depth_range(self, settings: PipelineSettings | None = None) -> tuple[float, float]:
        settings = settings or self.settings
        low, high = settings.min_depth, settings.max_depth
        if self.contract.min_depth is not None:
            low = max(low, self.contract.min_depth)
        if self.contract.max_depth is not None:
            high = min(high, self.contract.max_depth)
        return low, high

    def plan(self, camera: CameraModel, settings: PipelineSettings | None = None) -> FramePlan:
        """The frame plan for images of ``camera`` under ``settings`` (the last one is kept: the node's
        camera model and settings are the same objects frame after frame)."""
        settings = settings or self.settings
        key = (id(camera), id(settings))
        cached = self._plans.get(key)
        if cached is not None and cached[0] is camera and cached[1] is settings:
            self._plans.move_to_end(key)
            return cached[2]
        geometry = self.geometry(camera.height, camera.width)
        width, height = output_size(camera.width, camera.height, settings.output_scale)
        metric = MetricContext(
            f_over_w=camera.f_over_w,
            fx_at_input=camera.fx * geometry.scale_x,
            disparity_scale=settings.disparity_scale,
            disparity_shift=settings.disparity_shift,
            focal_rescale=settings.focal_rescale,
        )
        radius = edge_radius(geometry, width)
        edges = (settings.edge_threshold, radius) if settings.edge_filter else None
        plan = FramePlan(geometry, camera.scaled_to(width, height), metric, self.depth_range(settings), edges, radius)
        self._plans[key] = (camera, settings, plan)
        while len(self._plans) > _CACHED_PLANS:
            self._plans.popitem(last=False)
        return plan

    @property
    def max_batch(self) -> int:
        """The most frames one forward pass takes (the backend's ``max_batch``; 1 = one by one)."""
        return max(1, int(getattr(self.backend, "max_batch", 1)))

    def predict(self, rgb: np.ndarray) -> tuple[np.ndarray, InputGeometry, dict[str, float]]:
        """Run the network: (raw 2-D output at network resolution on the host, input geometry, timings)."""
        geometry = self.geometry(rgb.shape[0], rgb.shape[1])
        with self._ops.running():
            prediction, _, timings = self._network_map(rgb, geometry)
            t0 = time.perf_counter()
            host = self._ops.to_host(prediction)  # from a device: a new array (TensorRT reuses its output buffer)
            timings["inference"] += time.perf_counter() - t0
        return host, geometry, timings

    def estimate(self, rgb: np.ndarray, camera: CameraModel, points_stride: int | None = None,
                 settings: PipelineSettings | None = None, temporal: TemporalFilter | None = None,
                 stamp: float = 0.0, confidence: bool = False, scale_hook: ScaleHook | None = None) -> DepthFrame:
        """HxWx3 uint8 RGB (the camera model's size) -> metric depth at image size * output_scale.

        ``points_stride``: also return the point cloud of the depth image at this stride (``DepthFrame.points``);
        on the device path it comes back in the same transfer as the depth.
        ``settings``: this frame's conversion settings (default: ``self.settings``, read once here, so a
        change made while the frame is in flight applies to the next frame and never half-way through).
        ``temporal``: the camera's temporal filter (core.temporal; the caller keeps one per camera), updated with
        this frame at ``stamp`` (seconds, message time) after the edge filter and before the points. It runs on
        host arrays: on the device path the depth goes to the host for it and back.
        ``confidence``: also return the depth's confidence (``DepthFrame.confidence``, core.confidence): from the
        local depth range, the temporal filter's spread and the model's uncertainty output when it declares one.
        ``scale_hook``: this camera's online scale recovery (default: ``self.scale_hook``).
        """
        request = FrameRequest(rgb, camera, points_stride, settings, temporal, stamp, confidence, scale_hook)
        plan = self._check(request)
        with self._ops.running():
            prediction, uncertainty, timings = self._network_map(rgb, plan.geometry, confidence)
            return self._metric_frame(prediction, plan, points_stride, timings, temporal, stamp, confidence,
                                      uncertainty, scale_hook)

    def estimate_batch(self, requests: list[FrameRequest], return_errors: bool = False
                       ) -> list[DepthFrame | Exception]:
        """Several frames (of several cameras) at once: frames whose network inputs have the same size run in one
        forward pass of up to ``max_batch`` frames, the rest one by one; each frame's result is what ``estimate``
        gives for it. The frames' timings share the pass: ``inference`` is the whole pass, ``batch`` its size.

        ``return_errors``: a frame that fails (its plan, its scale fit, or the pass it ran in) gets its exception
        in its place and the other frames go on (one camera's problem never costs another its frame); otherwise
        the first failure is raised."""
        results: list[DepthFrame | Exception | None] = [None] * len(requests)
        groups: dict[tuple[int, int], list[tuple[int, FramePlan]]] = {}
        for index, request in enumerate(requests):
            try:
                plan = self._check(request)
            except Exception as exc:
                if not return_errors:
                    raise
                results[index] = exc
                continue
            groups.setdefault((plan.geometry.net_height, plan.geometry.net_width), []).append((index, plan))
        limit = self.max_batch
        with self._ops.running():
            for members in groups.values():
                for start in range(0, len(members), limit):
                    chunk = members[start:start + limit]
                    try:
                        maps = self._network_maps([requests[i] for i, _ in chunk], [plan for _, plan in chunk])
                    except Exception as exc:
                        if not return_errors:
                            raise
                        for i, _ in chunk:
                            results[i] = exc
                        continue
                    for (index, plan), (prediction, uncertainty, timings) in zip(chunk, maps, strict=True):
                        r = requests[index]
                        try:
                            results[index] = self._metric_frame(prediction, plan, r.points_stride, timings,
                                                                r.temporal, r.stamp, r.confidence, uncertainty,
                                                                r.scale_hook)
                        except Exception as exc:
                            if not return_errors:
                                raise
                            results[index] = exc
        return results  # type: ignore[return-value]

    def _check(self, request: FrameRequest) -> FramePlan:
        rgb, camera, points_stride = request.rgb, request.camera, request.points_stride
        if rgb.shape[1] != camera.width or rgb.shape[0] != camera.height:
            raise ValueError(
                f"image is {rgb.shape[1]}x{rgb.shape[0]} but its camera model is {camera.width}x{camera.height}"
            )
        if points_stride is not None and (isinstance(points_stride, bool) or int(points_stride) < 1):
            raise ValueError(f"points_stride must be >= 1, got {points_stride!r}")
        return self.plan(camera, request.settings)

    def _network_maps(self, requests: list[FrameRequest], plans: list[FramePlan]
                      ) -> list[tuple[Any, Any, dict[str, float]]]:
        """``_network_map`` of frames with the same network input size, in one forward pass."""
        if len(requests) == 1:
            return [self._network_map(requests[0].rgb, plans[0].geometry, requests[0].confidence)]
        ops = self._ops
        t0 = time.perf_counter()
        tensors = [ops.preprocess(r.rgb, geometry=p.geometry) for r, p in zip(requests, plans, strict=True)]
        batch = _concatenate(tensors)
        if ops.synchronize is not None:
            ops.synchronize()
        t1 = time.perf_counter()
        confidence = any(r.confidence for r in requests) and bool(self._confidence_outputs)
        if confidence:
            output, extra = self._infer(batch, self._confidence_outputs)
        else:
            output, extra = self._infer(batch), None
        _check_batch(output, len(requests))
        # Each frame's slice keeps the batch axis at 1: output_map squeezes it as for a single frame.
        maps = [ops.output_map(output[i:i + 1]) for i in range(len(requests))]
        extras = [ops.output_map(extra[i:i + 1]) if extra is not None and r.confidence else None
                  for i, r in enumerate(requests)]
        if ops.synchronize is not None:
            ops.synchronize()
        t2 = time.perf_counter()
        timings = {"preprocess": t1 - t0, "inference": t2 - t1, "batch": float(len(requests))}
        return [(m, e, dict(timings)) for m, e in zip(maps, extras, strict=True)]
    def _network_map(self, rgb: np.ndarray, geometry: InputGeometry, confidence: bool = False
                     ) -> tuple[Any, Any, dict[str, float]]:
        """Preprocess -> infer: (2-D output map at network resolution, the uncertainty map when ``confidence`` is
        asked and the model has one (else None), timings), maps as the ops' arrays (numpy, or device tensors)."""
        ops = self._ops
        t0 = time.perf_counter()
        tensor = ops.preprocess(rgb, geometry=geometry)
        if ops.synchronize is not None:
            ops.synchronize()
        t1 = time.perf_counter()
        uncertainty = None
        if confidence and self._confidence_outputs:
            output, extra = self._infer(tensor, self._confidence_outputs)
            prediction, uncertainty = ops.output_map(output), ops.output_map(extra)
        else:
            prediction = ops.output_map(self._infer(tensor))
        if ops.synchronize is not None:
            ops.synchronize()
        t2 = time.perf_counter()
        return prediction, uncertainty, {"preprocess": t1 - t0, "inference": t2 - t1}

    def _metric_frame(self, raw: Any, plan: FramePlan, points_stride: int | None, timings: dict[str, float],
                      temporal: TemporalFilter | None = None, stamp: float = 0.0, confidence: bool = False,
                      uncertainty: Any = None, scale_hook: ScaleHook | None = None) -> DepthFrame:
        """Postprocess -> metric -> edges -> temporal -> points -> download: a network output map -> DepthFrame
        on the host.

        A scale hook works on numpy maps: on the device path the map it needs (the prediction of a relative
        model, the depth of a metric one) is copied to the host for it, an extra transfer that keeps online
        scale recovery exactly as on the host path.
        """
        ops = self._ops
        t0 = time.perf_counter()
        depth_camera = plan.depth_camera
        prediction = ops.postprocess(raw, plan.geometry, depth_camera.width, depth_camera.height)
        host_prediction = ops.to_host(prediction) if ops.on_host else None
        relative = self.contract.output_kind == "relative_disparity"
        metric = plan.metric
        scale_hook = scale_hook or self.scale_hook
        if scale_hook is not None and relative:
            host_prediction = ops.to_host(prediction)
            fitted = scale_hook(host_prediction, "disparity", depth_camera)
            if fitted is not None:
                metric = replace(metric, disparity_scale=fitted[0], disparity_shift=fitted[1])
        if scale_hook is not None and not relative:
            depth = ops.to_metric(prediction, self.contract, metric)
            fitted = scale_hook(ops.to_host(depth), "depth", depth_camera)
            if fitted is not None:
                ops.scale(depth, 1.0 / fitted[0])
            ops.apply_depth_range(depth, *plan.depth_range)
        else:
            depth = ops.to_metric(prediction, self.contract, metric, plan.depth_range)
        edge_pixels = 0 if plan.edges is None else ops.filter_edges(depth, *plan.edges)
        temporal_reset = False
        stabilised = None
        if temporal is not None:
            stabilised = temporal.update(ops.to_host(depth), stamp, track_spread=confidence)
            depth, temporal_reset = ops.from_host(stabilised.depth), stabilised.reset
        points = None if points_stride is None else ops.points(depth, depth_camera, int(points_stride))
        host_depth, host_points = ops.download(depth, points)  # on a device: the one device -> host copy
        timings["postprocess"] = time.perf_counter() - t0
        frame = DepthFrame(depth=host_depth, camera=depth_camera, timings=timings, prediction=host_prediction,
                           points=host_points, points_stride=int(points_stride or 1), edge_pixels=int(edge_pixels),
                           temporal_reset=temporal_reset)
        if host_prediction is None:
            frame.prediction_loader = lambda: ops.to_host(prediction)
        if confidence:
            frame.confidence = self._confidence(host_depth, plan, uncertainty, stabilised, timings)
        return frame

    def _confidence(self, depth: np.ndarray, plan: FramePlan, uncertainty: Any, stabilised: TemporalResult | None,
                    timings: dict[str, float]) -> np.ndarray:
        """The confidence of ``depth`` (host) from its local range, the temporal filter's spread and the model's
        uncertainty map (network resolution, cropped and resized like the prediction): one implementation."""
        t0 = time.perf_counter()
        resized, kind = None, "log_sigma"
        if uncertainty is not None:
            ops, camera = self._ops, plan.depth_camera
            resized = ops.to_host(ops.postprocess(uncertainty, plan.geometry, camera.width, camera.height))
            kind = self.contract.confidence_output.kind  # type: ignore[union-attr]
        confidence = frame_confidence(depth, plan.window_radius, stabilised, resized, kind)
        timings["confidence"] = time.perf_counter() - t0
        return confidence


def _concatenate(tensors: list[Any]) -> Any:
    """Network inputs (1, 3, h, w) -> one (N, 3, h, w) batch: numpy arrays or torch tensors."""
    if isinstance(tensors[0], np.ndarray):
        return np.concatenate(tensors, axis=0)
    import torch  # the device path: torch is there

    return torch.cat(tensors, dim=0)


def _check_batch(output: Any, count: int) -> None:
    if len(output.shape) < 3 or output.shape[0] != count:
        raise ValueError(f"a batch of {count} frames gave an output of shape {tuple(output.shape)}: the backend's "
                         "max_batch is wrong for this model")
