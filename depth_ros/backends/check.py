"""Startup correctness check: a backend's prediction against ONNX Runtime on the CPU, same model.

Wrong output from an accelerated runtime is silent: a TensorRT FP16 engine that overflows, a stale
buffer, a dtype read wrongly all give depth images that look like depth. Before the node trusts a
backend other than ONNX Runtime, two distinct probe images (so a stale buffer cannot pass) go
through it and through ONNX Runtime on the CPU with the same ONNX (for the torch backend: the
checkpoint's own ONNX export), and the relative error of the prediction is measured.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depth_ros.backends.base import BackendOptions, InferenceBackend, ModelLoadError
from depth_ros.core.contract import InputSpec
from depth_ros.core.preprocess import output_to_map, plan_input, preprocess

CHECK_POLICIES = ("rebuild", "warn", "fail", "off")


class BackendCheckError(ModelLoadError):
    """The backend's prediction disagrees with ONNX Runtime's beyond the tolerance."""


def probe_images(height: int, width: int) -> list[np.ndarray]:
    """Two distinct, deterministic HxWx3 uint8 RGB images with what a depth network reacts to: a floor and a
    wall in perspective, boxes with edges, texture and shading."""
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    cols = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    rng = np.random.default_rng(20261202)
    images = []
    for variant in range(2):
        horizon = 0.45 + 0.1 * variant
        floor = rows > horizon
        shade = np.where(floor, 0.35 + 0.6 * (rows - horizon), 0.75 - 0.3 * rows) * np.ones_like(cols)
        stripes = 0.08 * np.sin(2 * np.pi * (6 + 4 * variant) * cols / np.maximum(rows + 0.2, 0.2))
        value = shade + np.where(floor, stripes, 0.0)
        colour = np.stack([value * (0.9 + 0.2 * variant), value, value * (1.1 - 0.3 * variant)], axis=-1)
        for _ in range(4):  # boxes standing on the floor
            x0 = rng.uniform(0.0, 0.8)
            y1 = rng.uniform(horizon + 0.1, 1.0)
            size = rng.uniform(0.1, 0.3)
            box = (cols >= x0) & (cols < x0 + size) & (rows < y1) & (rows >= y1 - size * 1.2)
            colour[box] = rng.uniform(0.1, 0.9, 3) * (0.7 + 0.3 * rows[:, :, None] * np.ones((1, width, 1)))[box]
        colour += rng.normal(0.0, 0.03, colour.shape)
        if variant:
            colour = colour[:, ::-1]
        images.append(np.clip(colour * 255.0, 0, 255).astype(np.uint8))
    return images


def probe_tensors(spec: InputSpec, height: int, width: int) -> list[np.ndarray]:
    """The probe images prepared for a network input of ``height`` x ``width`` as the contract says."""
    geometry = plan_input(height, width, spec, (height, width))
    return [preprocess(image, spec, geometry) for image in probe_images(height, width)]


@dataclass(frozen=True)
class CheckResult:
    median_error: float  # relative error of the prediction, over the pixels of both probes
    max_error: float
    tolerance: float  # the median's limit
    max_tolerance: float  # the maximum's limit

    @property
    def ok(self) -> bool:
        return self.median_error <= self.tolerance and self.max_error <= self.max_tolerance

    def numbers(self) -> str:
        return f"median {self.median_error * 100:.2g} %, max {self.max_error * 100:.2g} %"


def relative_error(prediction: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """|prediction - reference| / |reference| per pixel; the denominator is floored at 1 % of the reference's
    median magnitude, so pixels where the reference is near zero (sky in inverse depth) do not dominate."""
    reference = reference.astype(np.float64)
    floor = max(0.01 * float(np.median(np.abs(reference))), 1e-12)
    return np.abs(prediction.astype(np.float64) - reference) / np.maximum(np.abs(reference), floor)


def reference_onnx(backend: InferenceBackend, model_path: Path, size: tuple[int, int], workdir: Path) -> Path:
    """The ONNX that ONNX Runtime runs as the reference: the model itself, or what the backend exports of it
    (the torch backend runs a checkpoint)."""
    export = getattr(backend, "reference_onnx", None)
    if callable(export):
        return Path(export(size, workdir))
    return model_path


def compare_with_onnxruntime(backend: InferenceBackend, model_path: Path, spec: InputSpec, size: tuple[int, int],
                             tolerance: float, max_tolerance: float) -> CheckResult:
    """Run the probes through ``backend`` and ONNX Runtime (CPU) at network input ``size`` (height, width)."""
    from depth_ros.backends.onnxruntime_backend import OnnxRuntimeBackend

    with tempfile.TemporaryDirectory(prefix="depth_ros_check_") as workdir:
        onnx_path = reference_onnx(backend, model_path, size, Path(workdir))
        reference = OnnxRuntimeBackend(onnx_path, BackendOptions(device="cpu"))
        errors = []
        for tensor in probe_tensors(spec, *size):
            expected = output_to_map(np.asarray(reference.infer(tensor)))
            got = output_to_map(np.array(backend.infer(tensor), copy=True))  # the backend may reuse its buffer
            if got.shape != expected.shape:
                raise BackendCheckError(f"backend {backend.name!r} gives an output of shape {got.shape}, ONNX Runtime "
                                        f"{expected.shape}, for input {size[0]}x{size[1]}")
            errors.append(relative_error(got, expected).ravel())
    values = np.concatenate(errors)
    if not np.isfinite(values).all():
        return CheckResult(float("inf"), float("inf"), tolerance, max_tolerance)
    return CheckResult(float(np.median(values)), float(values.max()), tolerance, max_tolerance)


@dataclass
class BackendChecker:
    """Applies the check policy to one backend, once per network input size it runs at.

    rebuild: a failed check asks the backend for a more precise build (``more_precise()``: TensorRT FP16
    -> FP32) and checks again; fail: a failed check is an error; warn: it is logged and the backend kept.
    ``status`` is the diagnostics line.
    """

    backend: InferenceBackend
    model_path: Path
    spec: InputSpec
    policy: str = "rebuild"
    tolerance: float = 0.02
    max_tolerance: float = 0.25
    warn: Callable[[str], None] = print
    info: Callable[[str], None] = print
    status: str = "pending (runs on the first frame's input size)"

    def __post_init__(self) -> None:
        if self.policy not in CHECK_POLICIES:
            raise ValueError(f"backend_check must be one of {', '.join(CHECK_POLICIES)}, got {self.policy!r}")
        self._done: dict[tuple[int, int], BackendCheckError | None] = {}
        if self.policy == "off":
            self.status = "off"

    def __call__(self, size: tuple[int, int]) -> None:
        """Check at network input ``size`` (height, width); raises BackendCheckError when the policy says so."""
        if self.policy == "off":
            return
        if size in self._done:
            earlier = self._done[size]
            if earlier is not None:
                raise earlier
            return
        result = compare_with_onnxruntime(self.backend, self.model_path, self.spec, size, self.tolerance,
                                          self.max_tolerance)
        where = f"backend {self.backend.name!r} at input {size[0]}x{size[1]}"
        limits = f"limits: median {self.tolerance * 100:.2g} %, max {self.max_tolerance * 100:.2g} %"
        failure: BackendCheckError | None = None
        if result.ok:
            self.status = f"ok ({result.numbers()})"
            self.info(f"backend_check: {where} agrees with ONNX Runtime on the CPU ({result.numbers()})")
        elif self.policy == "rebuild" and callable(more := getattr(self.backend, "more_precise", None)) and more():
            self.warn(f"backend_check: {where} differs from ONNX Runtime on the CPU ({result.numbers()}; {limits}): "
                      "rebuilt at FP32")
            again = compare_with_onnxruntime(self.backend, self.model_path, self.spec, size, self.tolerance,
                                             self.max_tolerance)
            if again.ok:
                self.status = f"ok after an FP32 rebuild ({again.numbers()}; FP16 had {result.numbers()})"
                self.info(f"backend_check: {where} at FP32 agrees with ONNX Runtime ({again.numbers()})")
            else:
                failure = self._failure(f"{where} at FP32", again, limits)
        elif self.policy == "warn":
            self.status = f"FAILED, kept because backend_check is 'warn' ({result.numbers()})"
            self.warn(f"backend_check: {where} differs from ONNX Runtime on the CPU ({result.numbers()}; {limits}); "
                      "kept because backend_check is 'warn': its depth may be wrong")
        else:
            failure = self._failure(where, result, limits)
        self._done[size] = failure
        if failure is not None:
            raise failure

    def _failure(self, where: str, result: CheckResult, limits: str) -> BackendCheckError:
        self.status = f"FAILED ({result.numbers()})"
        return BackendCheckError(
            f"backend_check: {where} differs from ONNX Runtime on the CPU ({result.numbers()}; {limits}). Its "
            "depth would be wrong: use backend 'onnxruntime', engine_precision 'fp32', or set backend_check to "
            "'warn' to run it anyway")
