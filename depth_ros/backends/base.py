"""The inference backend protocol, its options and errors, and the registry backends add themselves to.

The backend modules import this module, never the package: ``depth_ros.backends`` (create_backend) imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

# The batch a backend with a dynamic batch dimension reports as its max_batch: runtimes set no limit of their own,
# and a bound keeps callers from stacking a whole bag into one tensor.
MAX_DYNAMIC_BATCH = 64


class ModelLoadError(RuntimeError):
    """The model cannot be loaded; the message says how to fix it."""


class BackendUnavailable(ModelLoadError):
    """The backend's runtime is not installed or not usable on this machine."""


class InferenceBackend(Protocol):
    """What the pipeline needs from a runtime."""

    name: str  # registry name, e.g. "onnxruntime"
    device: str  # where it runs, e.g. "cpu", "cuda"
    # Static (height, width) of the first input, or None when it accepts any size.
    fixed_input_size: tuple[int, int] | None
    output_count: int  # the model's outputs; 0 is the prediction, a contract may name another (confidence_output)
    # The largest batch N such that every batch 1..N runs in one infer/infer_device call (1: no batching; a larger
    # batch is split by DepthEstimator.estimate_batch). Inputs are float32 NCHW (N, 3, H, W); every output keeps
    # the batch as its first dimension ((N, 1, H, W) or (N, H, W), as the model gives it), extra outputs too. A
    # dynamic batch dimension gives MAX_DYNAMIC_BATCH; a model with a fixed batch B gives B (smaller batches are
    # padded to B).
    max_batch: int

    def metadata(self) -> dict[str, str]:
        """The model's metadata (ONNX metadata_props); holds the contract."""
        ...

    def infer(self, tensor: "object", extra_outputs: tuple[int, ...] = ()) -> "object":
        """Run the first input -> first output (float32 NCHW in, the raw output out). With ``extra_outputs``
        (output indices >= 1): a tuple, the first output then those, from the same run."""
        ...


class DeviceInferenceBackend(InferenceBackend, Protocol):
    """A backend that also runs on tensors resident on its device (TensorRT, torch): the pipeline then
    keeps pre/postprocessing there too (depth_ros.core.torch_ops)."""

    def infer_device(self, tensor: Any, extra_outputs: tuple[int, ...] = ()) -> Any:
        """float32 NCHW torch tensor on ``device`` in -> the raw output as a float32 torch tensor on ``device``
        (a tuple with ``extra_outputs``, as ``infer``). The result may be a buffer the backend reuses: consume it
        before the next call."""
        ...


ENGINE_PRECISIONS = ("fp16", "fp32")


@dataclass(frozen=True)
class BackendOptions:
    num_threads: int = 0  # 0 = the runtime's default (all cores)
    device: str = "auto"  # auto | cpu | cuda
    # TensorRT: where engines are cached ("" = $DEPTH_ROS_ENGINE_CACHE or ~/.cache/depth_ros/engines) and the
    # precision they are built at (fp16: mixed precision via ModelOpt AutoCast; fp32 on request).
    engine_cache_dir: str = ""
    engine_precision: str = "fp16"
    # TensorRT, a model exported with a dynamic batch: engines cover batches 1..engine_max_batch (one profile).
    engine_max_batch: int = 1


BackendFactory = Callable[[Path, BackendOptions], InferenceBackend]
BackendProbe = Callable[[], str | None]  # None when usable, else the reason it is not


@dataclass(frozen=True)
class BackendEntry:
    factory: BackendFactory
    probe: BackendProbe
    priority: int  # higher is preferred by backend "auto"


BACKENDS: dict[str, BackendEntry] = {}


def register_backend(name: str, factory: BackendFactory, probe: BackendProbe, priority: int) -> None:
    BACKENDS[name] = BackendEntry(factory, probe, priority)


def backend_names() -> tuple[str, ...]:
    return ("auto", *sorted(BACKENDS))


def pad_batch(tensor: np.ndarray, batch: int) -> np.ndarray:
    """``tensor`` (n, ...) with zero images appended up to ``batch`` rows: a model with a fixed batch then runs
    fewer images (their outputs are cut off again by cut_batch)."""
    missing = batch - tensor.shape[0]
    if missing <= 0:
        return tensor
    return np.concatenate([tensor, np.zeros((missing, *tensor.shape[1:]), tensor.dtype)])


def cut_batch(output: Any, count: int, padded: int) -> Any:
    """The first ``count`` rows of an output of a run padded to ``padded`` images (numpy or torch). An output
    whose first dimension is not the padded batch (a scalar, a fixed-size vector) has no batch: kept whole."""
    if count == padded or len(output.shape) == 0 or output.shape[0] != padded:
        return output
    return output[:count]
