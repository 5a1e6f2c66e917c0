"""The per-frame steps for one array library, as one table, so the pipeline is written once for both.

``DepthEstimator`` (depth_ros.pipeline) runs plan -> preprocess -> infer -> postprocess -> metric -> edges ->
points -> download through an ``ArrayOps``: ``host_ops`` here (numpy/OpenCV, for backends that take host arrays) or
``depth_ros.core.torch_ops.device_ops`` (torch on the backend's device). Each step's numpy implementation
lives in its module (preprocess, metric, pointcloud); this table only binds them, without wrappers, so a
frame's calls go straight to the step.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from depth_ros.core.contract import InputSpec
from depth_ros.core.edges import filter_edges
from depth_ros.core.metric import apply_depth_range, scale_depth, to_metric
from depth_ros.core.pointcloud import depth_to_point_planes
from depth_ros.core.preprocess import output_to_map, postprocess, preprocess


@dataclass(frozen=True)
class ArrayOps:
    """One frame's steps on one kind of array (numpy arrays, or tensors on a device)."""

    preprocess: Callable[..., Any]  # (rgb, geometry=...) -> (1, 3, net_h, net_w) float32 network input
    output_map: Callable[[Any], Any]  # the network's first output -> a 2-D float32 map
    postprocess: Callable[..., Any]  # (map, geometry, width, height) -> crop + resize to the depth image (new)
    to_metric: Callable[..., Any]  # (map, contract, ctx[, depth_range]) -> new float32 metres, NaN = invalid
    apply_depth_range: Callable[[Any, float, float], Any]  # NaN outside [min, max], in place
    scale: Callable[[Any, float], Any]  # depth *= float32(factor), in place
    filter_edges: Callable[[Any, float, int], Any]  # (depth, threshold, radius): flying pixels -> NaN; a count
    points: Callable[..., Any]  # (depth, camera, stride) -> x, y, z (the layout `download` returns)
    to_host: Callable[[Any], np.ndarray]  # one array as numpy (a copy from a device)
    from_host: Callable[[np.ndarray], Any]  # a numpy array as this library's array (a copy to a device)
    download: Callable[[Any, Any], tuple[np.ndarray, Any]]  # depth (+ points) on the host: one transfer
    running: Callable[[], AbstractContextManager[Any]]  # the context a frame runs in (torch's inference mode)
    synchronize: Callable[[], None] | None  # wait for queued work (timings); None: a step returns when done
    on_host: bool  # maps are numpy already: the prediction is kept as it is, not fetched on demand


def _on_host(depth: np.ndarray, points: Any) -> tuple[np.ndarray, Any]:
    return depth, points


def host_ops(spec: InputSpec) -> ArrayOps:
    """The steps on numpy arrays with OpenCV for a model with input ``spec``: the CPU-tuned path.

    Points are three (h', w') planes x, y, z: what the cloud packer interleaves in one pass
    (codecs.fill_cloud_msg), with no intermediate (h', w', 3) array.
    """
    return ArrayOps(
        preprocess=partial(preprocess, spec=spec),
        output_map=output_to_map,
        postprocess=postprocess,
        to_metric=to_metric,
        apply_depth_range=apply_depth_range,
        scale=scale_depth,
        filter_edges=filter_edges,
        points=depth_to_point_planes,
        to_host=np.asarray,
        from_host=np.asarray,
        download=_on_host,
        running=nullcontext,
        synchronize=None,
        on_host=True,
    )
