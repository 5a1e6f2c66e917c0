"""Inference backends behind one small protocol (``base``), chosen from a registry by name.

A backend runs the model's first input -> first output on numpy arrays (or, with ``infer_device``, on device
tensors); everything around it (preprocessing, metric conversion, point clouds) is the pipeline's.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from depth_ros.backends import onnxruntime_backend, tensorrt_backend, torch_backend
from depth_ros.backends.base import (
    BACKENDS,
    ENGINE_PRECISIONS,
    BackendEntry,
    BackendFactory,
    BackendOptions,
    BackendProbe,
    BackendUnavailable,
    DeviceInferenceBackend,
    InferenceBackend,
    ModelLoadError,
    backend_names,
    register_backend,
)

__all__ = [
    "BACKENDS", "ENGINE_PRECISIONS", "BackendEntry", "BackendFactory", "BackendOptions", "BackendProbe",
    "BackendUnavailable", "DeviceInferenceBackend", "InferenceBackend", "ModelLoadError", "backend_names",
    "create_backend", "register_backend",
]


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


# Neither TensorRT nor torch is imported here: their modules import them inside factories and probes.
for _module in (onnxruntime_backend, tensorrt_backend, torch_backend):
    _module.register()
