"""The depth pipeline on torch tensors: the device-resident twin of preprocess.py, metric.py and pointcloud.py.

Why it exists: on a GPU backend (TensorRT, torch on CUDA) the numpy path would copy the network input up
and the network output down every frame and run resizing, metric conversion and the point cloud on the
CPU (the throughput killer of existing wrappers, DESIGN.md §11.3). Here the image goes up once as uint8
(through pinned memory), everything in between stays on the device, and the depth image and the point
cloud come back in one device->host copy. The functions are device-agnostic, so the CPU tests run the very
same code against the numpy path it mirrors.

It mirrors the numpy path exactly, apart from one documented detail:
- resampling uses the filters cv2 applies in ``preprocess.resize``, half-pixel centres: area averaging when
  both sides shrink (exact INTER_AREA as separable taps, index and weight per output pixel, computed once
  per geometry; not torch's antialiased bilinear, a different filter) and bilinear otherwise (interpolate,
  align_corners=False, = INTER_LINEAR). Unlike cv2 on uint8 images it does not round the resized image to
  8 bits, so the network input differs from the numpy path's by at most half a grey level (plus cv2's
  fixed-point bilinear weights): the same filter, not an approximation of it.
- the output map is cropped by ``InputGeometry.content_region`` (as ``preprocess.postprocess``) and resized
  with ``interpolate(bilinear, align_corners=False)``, which is cv2's INTER_LINEAR on float images.
- metric conversion: one converter per output kind in ``TORCH_CONVERTERS`` (the twin of
  ``metric.CONVERTERS``), float32 factors, the same NaN rules (non-positive, non-finite, +inf -> NaN).
- points: the camera model's own rays (``CameraModel.pixel_rays``), uploaded once per camera and stride.

Imports torch at module level: only import this module where torch is installed (the pipeline does so
lazily, for backends that offer ``infer_device``). ``device_ops`` binds these steps into the table the
pipeline runs (depth_ros.core.array_ops); this module never imports the pipeline.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from depth_ros.core.array_ops import ArrayOps
from depth_ros.core.camera import CameraModel
from depth_ros.core.contract import InputSpec, ModelContract
from depth_ros.core.metric import (
    MetricContext,
    canonical_metric_factor,
    metric_depth_factor,
    registrar,
    valid_depth_bounds,
)
from depth_ros.core.preprocess import InputGeometry, OutputShapeError

__all__ = [
    "TORCH_CONVERTERS",
    "Taps",
    "TorchPipeline",
    "apply_depth_range",
    "device_ops",
    "area_resample",
    "area_taps",
    "depth_to_points",
    "download",
    "edge_mask",
    "filter_edges",
    "scale_depth",
    "normalise",
    "output_map",
    "postprocess",
    "resize_image",
    "resize_mode",
    "to_host",
    "to_metric",
]

NAN = float("nan")
_CACHE_SIZE = 4  # geometries / camera models kept on the device (cameras rarely change)


def _f32(value: float) -> float:
    """``value`` rounded to float32, so torch's scalar arithmetic equals numpy's float32 arithmetic."""
    return float(np.float32(value))


# ----------------------------------------------------------------------------- resampling


@dataclass(frozen=True)
class Taps:
    """A 1-D resampling filter: output pixel i = sum_k weight[i, k] * input[index[i, k]]."""

    index: torch.Tensor  # (out, K) int64
    weight: torch.Tensor  # (out, K) float32

    @classmethod
    def from_numpy(cls, index: np.ndarray, weight: np.ndarray, device: torch.device) -> Taps:
        return cls(torch.from_numpy(np.ascontiguousarray(index, dtype=np.int64)).to(device),
                   torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32)).to(device))


def area_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Area averaging for shrinking: cv2 INTER_AREA, i.e. the mean of the input over each output pixel's
    footprint [i, i + 1) * in/out, partly covered input pixels weighted by the covered fraction."""
    scale = in_size / out_size
    width = int(math.ceil(scale)) + 1  # the most input pixels one footprint can touch
    start = np.arange(out_size, dtype=np.float64) * scale
    end = np.minimum(start + scale, in_size)
    index = np.floor(start).astype(np.int64)[:, None] + np.arange(width, dtype=np.int64)[None, :]
    overlap = np.minimum(end[:, None], index + 1) - np.maximum(start[:, None], index)
    overlap = np.where(index < in_size, np.clip(overlap, 0.0, None), 0.0)
    weight = overlap / overlap.sum(axis=1, keepdims=True)
    return np.minimum(index, in_size - 1), weight


def resize_mode(in_h: int, in_w: int, out_h: int, out_w: int) -> str:
    """The filter ``preprocess.resize`` applies: "none" at the same size, "area" when both sides shrink
    (cv2 INTER_AREA), else "linear" (INTER_LINEAR). Keep this in step with ``preprocess.resize``:
    tests/core/test_torch_ops.py compares the two to half a grey level."""
    if (in_h, in_w) == (out_h, out_w):
        return "none"
    if out_w < in_w and out_h < in_h:
        return "area"
    return "linear"


def area_resample(image: torch.Tensor, rows: Taps, cols: Taps) -> torch.Tensor:
    """(H, W, C) (uint8 or float) -> (out_h, out_w, C) float32 through separable taps.

    Channels last: each gathered tap is a contiguous run of C values (several times faster than gathering
    along the last axis of a (C, H, W) view); the narrower axis (columns, after the shrink) goes first.
    """
    return _apply_taps(_apply_taps(image, cols, dim=1), rows, dim=0)


def _apply_taps(x: torch.Tensor, taps: Taps, dim: int) -> torch.Tensor:
    """Filter ``x`` along ``dim``: gather the K taps of every output pixel, weight them, sum them."""
    n_out, n_taps = taps.index.shape
    gathered = x.index_select(dim, taps.index.reshape(-1))
    shape = list(x.shape)
    shape[dim:dim + 1] = [n_out, n_taps]
    weight = taps.weight.reshape(n_out, n_taps, *([1] * (x.dim() - dim - 1)))
    return (gathered.reshape(shape) * weight).sum(dim=dim + 1)


def resize_image(image: torch.Tensor, height: int, width: int, area: tuple[Taps, Taps] | None) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, height, width) float32 with ``preprocess.resize``'s filter: the area taps when
    given (both sides shrink), else bilinear with half-pixel centres (= cv2 INTER_LINEAR, no antialiasing,
    as cv2 does not antialias either), or none at the same size. Not rounded to 8 bits, unlike cv2."""
    if area is not None:
        return area_resample(image, *area).permute(2, 0, 1)
    chw = image.permute(2, 0, 1).float()
    if tuple(chw.shape[1:]) == (height, width):
        return chw
    return F.interpolate(chw[None], size=(height, width), mode="bilinear", align_corners=False)[0]


def normalise(content: torch.Tensor, gain: torch.Tensor, offset: torch.Tensor, channels: str,
              geometry: InputGeometry) -> torch.Tensor:
    """(3, content_h, content_w) float pixels (RGB) -> contiguous (1, 3, net_h, net_w), placed and normalised
    as ``preprocess.preprocess`` does: channel order first, then pixel * gain[c] + offset[c] (gain = scale/std,
    offset = -mean/std, per network channel c), zero padding after normalisation."""
    if channels == "bgr":
        content = content.flip(0)
    region = content * gain.view(3, 1, 1) + offset.view(3, 1, 1)
    if (geometry.content_height, geometry.content_width) == (geometry.net_height, geometry.net_width):
        return region.unsqueeze(0).contiguous()
    tensor = region.new_zeros((1, 3, geometry.net_height, geometry.net_width))
    tensor[0, :, geometry.top:geometry.top + geometry.content_height,
           geometry.left:geometry.left + geometry.content_width] = region
    return tensor


# ----------------------------------------------------------------------------- network output


def output_map(raw: torch.Tensor) -> torch.Tensor:
    """The model's first output squeezed to a 2-D float32 map (``preprocess.output_to_map``)."""
    out = raw
    while out.dim() > 2 and out.shape[0] == 1:
        out = out[0]
    if out.dim() != 2 or out.numel() == 0:
        raise OutputShapeError(f"model output has shape {tuple(raw.shape)}; expected [1,1,h,w], [1,h,w] or [h,w]")
    return out.float()


def postprocess(prediction: torch.Tensor, geometry: InputGeometry, width: int, height: int) -> torch.Tensor:
    """Crop the image's region out of a network-resolution map, resize it bilinearly to width x height.

    Always a new tensor: the network's output buffer (TensorRT reuses it) may be overwritten next frame.
    """
    out_h, out_w = prediction.shape
    crop = prediction[geometry.content_region(out_h, out_w)]
    if tuple(crop.shape) == (height, width):
        return crop.clone()
    resized = F.interpolate(crop[None, None], size=(height, width), mode="bilinear", align_corners=False)
    return resized[0, 0]


# ----------------------------------------------------------------------------- metric conversion

TorchConverter = Callable[[torch.Tensor, ModelContract, MetricContext], torch.Tensor]
TORCH_CONVERTERS: dict[str, TorchConverter] = {}
register = registrar(TORCH_CONVERTERS)


def _reciprocal(numerator: float, values: torch.Tensor) -> torch.Tensor:
    """numerator / values; 0, negative and non-finite inputs give values to_metric drops (as metric.py).

    A true division (not reciprocal * numerator, which is what ``float / tensor`` does in torch) so the
    result is bit-identical to numpy's float32 division.
    """
    return torch.full_like(values, _f32(numerator)).div_(values)


@register("canonical_inverse_depth")
def _canonical_inverse_depth(pred: torch.Tensor, contract: ModelContract, ctx: MetricContext) -> torch.Tensor:
    return _reciprocal(ctx.f_over_w, pred)


@register("metric_depth")
def _metric_depth(pred: torch.Tensor, contract: ModelContract, ctx: MetricContext) -> torch.Tensor:
    return pred * _f32(metric_depth_factor(contract, ctx))


@register("canonical_metric_depth")
def _canonical_metric_depth(pred: torch.Tensor, contract: ModelContract, ctx: MetricContext) -> torch.Tensor:
    return pred * _f32(canonical_metric_factor(contract, ctx))


@register("relative_disparity")
def _relative_disparity(pred: torch.Tensor, contract: ModelContract, ctx: MetricContext) -> torch.Tensor:
    inverse = pred * _f32(ctx.disparity_scale)
    if ctx.disparity_shift:
        inverse = inverse + _f32(ctx.disparity_shift)
    return _reciprocal(1.0, inverse)


def to_metric(pred: torch.Tensor, contract: ModelContract, ctx: MetricContext,
              depth_range: tuple[float, float] = (0.0, math.inf)) -> torch.Tensor:
    """A model output already resized to the depth image -> metres (float32, NaN = invalid): positive
    finite metres within ``depth_range`` (inclusive) survive, as ``metric.to_metric``."""
    depth = TORCH_CONVERTERS[contract.output_kind](pred.float(), contract, ctx)
    low, high = valid_depth_bounds(*depth_range)
    return torch.where((depth >= float(low)) & (depth <= float(high)), depth, NAN)


def apply_depth_range(depth: torch.Tensor, min_depth: float, max_depth: float) -> torch.Tensor:
    """Mark depth outside [min_depth, max_depth] as NaN, in place (float32 bounds, as numpy compares)."""
    outside = depth < _f32(min_depth)
    if math.isfinite(max_depth):
        outside |= depth > _f32(max_depth)
    return depth.masked_fill_(outside, NAN)


def edge_mask(depth: torch.Tensor, threshold: float, radius: int) -> torch.Tensor:
    """``edges.edge_mask`` on a tensor: window maxima of depth and of inverse depth (invalid = 0) by max
    pooling (its implicit -inf padding keeps the same pixels as OpenCV's replicated border)."""
    depths = torch.nan_to_num(depth, nan=0.0)
    inverse = torch.where(depths > 0, torch.full_like(depths, 1.0).div_(depths), 0.0)
    size = 2 * radius + 1
    farthest = F.max_pool2d(depths[None, None], size, stride=1, padding=radius)[0, 0]
    nearest_inverse = F.max_pool2d(inverse[None, None], size, stride=1, padding=radius)[0, 0]
    factor = _f32(1.0 + threshold)
    return (farthest > depths * factor) & (nearest_inverse * depth > factor)


def filter_edges(depth: torch.Tensor, threshold: float, radius: int) -> torch.Tensor:
    """``edges.filter_edges`` in place; the count stays a device scalar (read after the download)."""
    mask = edge_mask(depth, threshold, radius)
    depth.masked_fill_(mask, NAN)
    return mask.sum()


def scale_depth(depth: torch.Tensor, factor: float) -> torch.Tensor:
    """depth *= float32(factor), in place (``metric.scale_depth``)."""
    return depth.mul_(_f32(factor))


# ----------------------------------------------------------------------------- points and the download


def depth_to_points(depth: torch.Tensor, rays_x: torch.Tensor, rays_y: torch.Tensor, stride: int) -> torch.Tensor:
    """(h, w) metres -> (ceil(h/stride), ceil(w/stride), 3) x, y, z; NaN depth gives a NaN point."""
    z = depth[::stride, ::stride]
    if z.shape != rays_x.shape:
        raise ValueError(f"rays are {tuple(rays_x.shape)} but the strided depth is {tuple(z.shape)}")
    return torch.stack((rays_x * z, rays_y * z, z), dim=-1)


def download(depth: torch.Tensor, points: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Depth (and points) as float32 numpy arrays.

    On CUDA both are packed into one device tensor and copied once into pinned host memory (one
    transfer, one synchronisation); the arrays are views of that buffer, which they keep alive. On the
    CPU the tensors' memory is shared, no copy at all.
    """
    if depth.device.type != "cuda":
        host_points = None if points is None else points.contiguous().numpy()
        return depth.contiguous().numpy(), host_points
    parts = [depth.reshape(-1)] if points is None else [depth.reshape(-1), points.reshape(-1)]
    packed = torch.cat(parts) if len(parts) > 1 else parts[0]
    host = torch.empty(packed.shape, dtype=torch.float32, pin_memory=True)
    host.copy_(packed, non_blocking=True)
    torch.cuda.current_stream(depth.device).synchronize()
    flat = host.numpy()
    n_depth = depth.numel()
    host_depth = flat[:n_depth].reshape(tuple(depth.shape))
    host_points = None if points is None else flat[n_depth:].reshape(tuple(points.shape))
    return host_depth, host_points


def to_host(tensor: torch.Tensor) -> np.ndarray:
    """One tensor as a float32 numpy array (an extra transfer: only for what must leave the device)."""
    return download(tensor)[0]


# ----------------------------------------------------------------------------- the per-model state


class TorchPipeline:
    """Device state of one model's pipeline: the pinned upload buffer, resampling taps and camera rays,
    each computed and uploaded once and reused while the camera and geometry stay the same."""

    def __init__(self, device: str | torch.device, spec: InputSpec) -> None:
        self.device = torch.device(device)
        self.spec = spec
        self._taps: OrderedDict[tuple[int, int, int, int], tuple[Taps, Taps] | None] = OrderedDict()
        std = np.asarray(spec.std, dtype=np.float32)  # the numpy path's float32 constants, uploaded once
        self._gain = torch.from_numpy(np.float32(spec.scale) / std).to(self.device)
        self._offset = torch.from_numpy(-np.asarray(spec.mean, dtype=np.float32) / std).to(self.device)
        self._rays: OrderedDict[tuple[object, ...], tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._staging: torch.Tensor | None = None  # pinned uint8 image (CUDA only)
        self._staging_done: torch.cuda.Event | None = None  # its last upload finished reading it

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def synchronize(self) -> None:
        """Wait for the device (stage timings measure work, not kernel launches); no-op on the CPU."""
        if self.is_cuda:
            torch.cuda.synchronize(self.device)

    def upload(self, rgb: np.ndarray) -> torch.Tensor:
        """HxWx3 uint8 -> (H, W, 3) uint8 on the device: the only host->device copy of a frame.

        On CUDA the image goes through a pinned buffer reused across frames (an asynchronous DMA instead
        of a staged pageable copy); an event guards it against being overwritten while still in flight.
        """
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 uint8 image, got {rgb.dtype} {rgb.shape}")
        if not self.is_cuda:
            # Shared memory when possible; images decoded from messages are often read-only views, which
            # torch would share only with a warning: those are copied.
            usable = rgb.flags.c_contiguous and rgb.flags.writeable
            return torch.from_numpy(rgb if usable else np.array(rgb, order="C"))
        if self._staging is None or tuple(self._staging.shape) != rgb.shape:
            self._staging = torch.empty(rgb.shape, dtype=torch.uint8, pin_memory=True)
            self._staging_done = None
        if self._staging_done is not None:
            self._staging_done.synchronize()
        self._staging.numpy()[...] = rgb
        device_image = self._staging.to(self.device, non_blocking=True)
        self._staging_done = torch.cuda.Event()
        self._staging_done.record(torch.cuda.current_stream(self.device))
        return device_image

    def from_host(self, array: np.ndarray) -> torch.Tensor:
        """A float32 host array on the device (an extra transfer: only for what the host computed)."""
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(self.device)

    def area_taps(self, geometry: InputGeometry) -> tuple[Taps, Taps] | None:
        """(rows, cols) taps of the image -> content region resize when it is an area resize (both sides
        shrink, ``resize_mode``); None when it is bilinear or the identity."""
        key = (geometry.image_height, geometry.image_width, geometry.content_height, geometry.content_width)
        if key in self._taps:
            self._taps.move_to_end(key)
            return self._taps[key]
        in_h, in_w, out_h, out_w = key
        taps: tuple[Taps, Taps] | None = None
        if resize_mode(in_h, in_w, out_h, out_w) == "area":
            taps = (Taps.from_numpy(*area_taps(in_h, out_h), self.device),
                    Taps.from_numpy(*area_taps(in_w, out_w), self.device))
        self._taps[key] = taps
        while len(self._taps) > _CACHE_SIZE:
            self._taps.popitem(last=False)
        return taps

    def preprocess(self, rgb: np.ndarray, geometry: InputGeometry) -> torch.Tensor:
        """HxWx3 uint8 RGB (host) -> (1, 3, net_h, net_w) float32 on the device (``preprocess.preprocess``)."""
        content = resize_image(self.upload(rgb), geometry.content_height, geometry.content_width,
                               self.area_taps(geometry))
        return normalise(content, self._gain, self._offset, self.spec.channels, geometry)

    def rays(self, camera: CameraModel, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The camera model's pixel rays at ``stride`` on the device, uploaded once per (model, stride)."""
        key = (camera.cache_key(), stride)
        cached = self._rays.get(key)
        if cached is not None:
            self._rays.move_to_end(key)
            return cached
        rays_x, rays_y = camera.pixel_rays(stride)
        rays = (torch.tensor(rays_x, device=self.device), torch.tensor(rays_y, device=self.device))
        self._rays[key] = rays
        while len(self._rays) > _CACHE_SIZE:
            self._rays.popitem(last=False)
        return rays

    def points(self, depth: torch.Tensor, camera: CameraModel, stride: int) -> torch.Tensor:
        """Organised x, y, z of the depth image described by ``camera`` (``pointcloud.depth_to_points``)."""
        if tuple(depth.shape) != (camera.height, camera.width):
            raise ValueError(f"depth is {depth.shape[1]}x{depth.shape[0]} but the camera model is "
                             f"{camera.width}x{camera.height}")
        rays_x, rays_y = self.rays(camera, stride)
        return depth_to_points(depth, rays_x, rays_y, stride)


def device_ops(pipeline: TorchPipeline) -> ArrayOps:
    """The per-frame steps (depth_ros.core.array_ops) on ``pipeline``'s device."""
    return ArrayOps(
        preprocess=pipeline.preprocess,
        output_map=output_map,
        postprocess=postprocess,
        to_metric=to_metric,
        apply_depth_range=apply_depth_range,
        scale=scale_depth,
        filter_edges=filter_edges,
        points=pipeline.points,
        to_host=to_host,
        from_host=pipeline.from_host,
        download=download,
        running=torch.inference_mode,
        synchronize=pipeline.synchronize if pipeline.is_cuda else None,
        on_host=False,
    )
