"""ONNX Runtime backend: CPU everywhere, the CUDA provider where onnxruntime-gpu finds a GPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from depth_ros.backends.base import (
    MAX_DYNAMIC_BATCH,
    BackendOptions,
    ModelLoadError,
    cut_batch,
    pad_batch,
    register_backend,
)


def _probe() -> str | None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:  # pragma: no cover - onnxruntime is a hard dependency
        return f"onnxruntime is not installed ({exc}); pip install onnxruntime"
    return None


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, path: Path, options: BackendOptions) -> None:
        import onnxruntime as ort

        available = ort.get_available_providers()
        use_cuda = options.device in ("auto", "cuda") and "CUDAExecutionProvider" in available
        if options.device == "cuda" and not use_cuda:
            raise ModelLoadError(
                "device 'cuda' was requested but onnxruntime has no CUDA provider here "
                f"(providers: {', '.join(available)}); install onnxruntime-gpu or use device 'cpu'"
            )
        providers = (["CUDAExecutionProvider"] if use_cuda else []) + ["CPUExecutionProvider"]
        session_options = ort.SessionOptions()
        if options.num_threads > 0:
            session_options.intra_op_num_threads = options.num_threads
        session_options.log_severity_level = 3  # errors only: warnings about unused initialisers are noise
        try:
            self._session = ort.InferenceSession(str(path), session_options, providers=providers)
        except Exception as exc:  # ORT raises several unrelated exception types for bad files
            raise ModelLoadError(
                f"onnxruntime could not load {path}: {exc}. Is it a valid .onnx file? "
                "Re-export it, or check the 'model' parameter"
            ) from exc
        self.device = "cuda" if "CUDAExecutionProvider" in self._session.get_providers() else "cpu"
        first = self._session.get_inputs()[0]
        self._input_name = first.name
        self._output_names = [output.name for output in self._session.get_outputs()]
        self.output_count = len(self._output_names)
        if first.type != "tensor(float)":
            raise ModelLoadError(f"model {path}: first input {first.name!r} is {first.type}, expected float32")
        shape = first.shape
        if len(shape) != 4:
            raise ModelLoadError(f"model {path}: first input {first.name!r} has shape {shape}, expected NCHW")
        height, width = shape[2], shape[3]
        self.fixed_input_size = (height, width) if isinstance(height, int) and isinstance(width, int) else None
        # A symbolic (or unnamed, None) batch runs any batch; a fixed batch B runs B, fewer images padded to B.
        batch = shape[0]
        self._fixed_batch: int | None = batch if isinstance(batch, int) and batch > 0 else None
        self.max_batch: int = self._fixed_batch or MAX_DYNAMIC_BATCH

    def metadata(self) -> dict[str, str]:
        return dict(self._session.get_modelmeta().custom_metadata_map)

    def infer(self, tensor: np.ndarray, extra_outputs: tuple[int, ...] = ()) -> np.ndarray | tuple[np.ndarray, ...]:
        names = self._output_names
        count = tensor.shape[0]
        padded = self._fixed_batch if self._fixed_batch is not None and count < self._fixed_batch else count
        feed = {self._input_name: pad_batch(tensor, padded)}
        if not extra_outputs:
            return cut_batch(self._session.run(names[:1], feed)[0], count, padded)
        results = self._session.run([names[0], *(names[i] for i in extra_outputs)], feed)
        return tuple(cut_batch(result, count, padded) for result in results)


def register() -> None:
    register_backend("onnxruntime", OnnxRuntimeBackend, _probe, priority=10)
