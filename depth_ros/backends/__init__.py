"""Inference backends behind one small protocol, chosen from a registry by name.

A backend runs the model's first input -> first output on numpy arrays; everything around it
(preprocessing, metric conversion, point clouds) is shared pipeline code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


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

    def metadata(self) -> dict[str, str]:
        """The model's metadata (ONNX metadata_props); holds the contract."""
        ...

    def infer(self, tensor: "object") -> "object":
        """Run the first input -> first output (float32 NCHW in, the raw output out)."""
        ...


class DeviceInferenceBackend(InferenceBackend, Protocol):
    """A backend that also runs on tensors resident on its device (TensorRT, torch): the pipeline then
    keeps pre/postprocessing there too (depth_ros.torch_pipeline)."""

    def infer_device(self, tensor: Any) -> Any:
        """float32 NCHW torch tensor on ``device`` in -> the raw output as a torch tensor on ``device``.
        The result may be a buffer the backend reuses: consume it before the next call."""
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


def _warn(message: str) -> None:
    print(f"[depth_ros] {message}", file=sys.stderr, flush=True)


def create_backend(
    model_path: str | Path, name: str = "auto", options: BackendOptions | None = None,
    warn: Callable[[str], None] | None = None,
) -> InferenceBackend:
    """Load ``model_path`` with backend ``name``.

    "auto" tries the usable backends in order of preference and falls back to the next one when a backend
    cannot load the model (a TensorRT build that fails, a checkpoint that ONNX Runtime cannot read), with one
    ``warn`` naming why. A backend given by name is strict: its failure is the error.
    """
    options = options or BackendOptions()
    warn = warn or _warn
    path = Path(model_path)
    if not path.exists():
        raise ModelLoadError(
            f"model file {path} does not exist. Set the 'model' parameter to an .onnx file "
            "(absolute, relative to the working directory, or a file name in the package's models/ folder)"
        )
    if name != "auto":
        entry = BACKENDS.get(name)
        if entry is None:
            raise BackendUnavailable(f"unknown backend {name!r}; choose one of {', '.join(backend_names())}")
        reason = entry.probe()
        if reason is not None:
            raise BackendUnavailable(f"backend {name!r} is not usable here: {reason}")
        return entry.factory(path, options)
    reasons = {n: BACKENDS[n].probe() for n in BACKENDS}
    usable = [n for _, n in sorted(((BACKENDS[n].priority, n) for n, r in reasons.items() if r is None),
                                   reverse=True)]
    if not usable:
        raise BackendUnavailable("no inference backend is usable here ("
                                 + "; ".join(f"{n}: {reasons[n]}" for n in sorted(reasons)) + ")")
    failures: list[tuple[str, Exception]] = []
    for candidate in usable:
        try:
            backend = BACKENDS[candidate].factory(path, options)
        except (ModelLoadError, RuntimeError) as exc:  # RuntimeError: CUDA out of memory, TensorRT bindings
            failures.append((candidate, exc))
            continue
        if failures:
            warn("backend 'auto': " + "; ".join(f"{n} could not load {path.name} ({exc})" for n, exc in failures)
                 + f"; using {candidate}. Set 'backend' to pin one (a named backend does not fall back)")
        return backend
    if len(failures) == 1 and isinstance(failures[0][1], ModelLoadError):
        raise failures[0][1]
    raise ModelLoadError(f"no backend could load {path}: " + "; ".join(f"{n}: {exc}" for n, exc in failures))


def _register_builtin() -> None:
    from depth_ros.backends import onnxruntime_backend

    onnxruntime_backend.register()
    # Imported lazily inside their factories/probes: neither module needs torch or TensorRT to import.
    from depth_ros.backends import tensorrt_backend, torch_backend

    tensorrt_backend.register()
    torch_backend.register()


_register_builtin()
