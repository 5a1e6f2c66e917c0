"""TensorRT backend (TensorRT 10 API): ONNX -> cached engine -> execute_async_v3 on torch CUDA buffers.

The node's 'model' stays the .onnx file: the engine is built on first use for this GPU, TensorRT
version, ONNX content, input shape and precision and reused afterwards (depth_ros.engine_cache).
I/O buffers are torch CUDA tensors whose data_ptr() is handed to set_tensor_address; everything
runs on one CUDA stream. Importable without TensorRT or CUDA: probe() says what is missing.
Type-checked against tensorrt-stubs (tests/test_typecheck.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from depth_ros.backends import BackendOptions, ModelLoadError, register_backend
from depth_ros.engine_cache import EngineCache, EngineError, EngineKey, file_sha256

if TYPE_CHECKING:
    import tensorrt as trt
    import torch

DEFAULT_CACHE_DIR = Path(os.environ.get("DEPTH_ROS_ENGINE_CACHE", "~/.cache/depth_ros/engines")).expanduser()
WORKSPACE_BYTES = 2 << 30


@dataclass(frozen=True)
class BuildSettings:
    precision: str = "fp16"  # fp16 (normalisation layers pinned to FP32) | fp32
    # Dynamic inputs: (min, opt, max) as (height, width); kernels are tuned for opt. None: the ONNX is static.
    profile: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None = None
    timing_cache: Path | None = None


def probe() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        return f"tensorrt is not installed ({exc}); install TensorRT 10 for Python (JetPack ships it)"
    try:
        import torch
    except ImportError as exc:
        return f"torch is not installed ({exc}); it provides the CUDA buffers"
    if not torch.cuda.is_available():
        return "no CUDA device is visible to torch"
    return None


def _onnx_input(onnx_path: Path) -> tuple[str, list[int | str]]:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    first = graph.input[0]
    dims: list[int | str] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                             for d in first.type.tensor_type.shape.dim]
    return first.name, dims


def engine_key(onnx_path: Path, settings: BuildSettings) -> EngineKey:
    import tensorrt as trt
    import torch

    major, minor = torch.cuda.get_device_capability()
    _, dims = _onnx_input(onnx_path)
    if settings.profile is None:
        shape = "x".join(str(d) for d in dims)
    else:
        shape = ";".join(f"{n}:1x3x{h}x{w}" for n, (h, w) in zip(("min", "opt", "max"), settings.profile, strict=True))
    return EngineKey(torch.cuda.get_device_name(), f"{major}.{minor}", trt.__version__, file_sha256(onnx_path),
                     shape, settings.precision)


def build_engine(onnx_path: Path, engine_path: Path, settings: BuildSettings, log: Any = print) -> None:
    """Parse ``onnx_path``, build a serialised engine and write it to ``engine_path``."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes(), str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if settings.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
        # LayerNorm in FP16 overflows in DINOv2 ViTs (black/NaN output): keep normalisation in FP32.
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        for index in range(network.num_layers):
            layer = network.get_layer(index)
            if layer.type == trt.LayerType.NORMALIZATION:
                layer.precision = trt.DataType.FLOAT
                for out in range(layer.num_outputs):
                    layer.set_output_type(out, trt.DataType.FLOAT)
    elif settings.precision != "fp32":
        raise EngineError(f"precision must be fp16 or fp32, got {settings.precision!r}")
    input_tensor = network.get_input(0)
    if settings.profile is not None:
        profile = builder.create_optimization_profile()
        lo, opt, hi = (trt.Dims([1, 3, h, w]) for h, w in settings.profile)
        profile.set_shape(input_tensor.name, lo, opt, hi)
        config.add_optimization_profile(profile)
    elif min(_dims(input_tensor.shape)) < 0:
        raise EngineError(f"{onnx_path} has a dynamic input {_dims(input_tensor.shape)}: give an optimisation "
                          "profile (--min/--opt/--max) or export a fixed size")
    timing_file = settings.timing_cache
    cache_bytes = timing_file.read_bytes() if timing_file is not None and timing_file.is_file() else b""
    timing_cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(timing_cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError("TensorRT could not build the engine (see the TensorRT messages above)")
    engine_path.write_bytes(bytes(serialized))
    if settings.timing_cache is not None:
        settings.timing_cache.parent.mkdir(parents=True, exist_ok=True)
        settings.timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))


def load_engine(engine_path: Path) -> trt.ICudaEngine:
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    if engine is None:
        raise EngineError(f"{engine_path} is corrupt or was built for another GPU/TensorRT version")
    return engine


def validate_engine(engine_path: Path) -> str | None:
    try:
        load_engine(engine_path)
    except (EngineError, OSError) as exc:
        return str(exc)
    return None


def engine_cache_dir(options: BackendOptions) -> Path:
    """The engine cache of a backend's options: ``engine_cache_dir`` ('~' expanded), else the default
    (``$DEPTH_ROS_ENGINE_CACHE`` or ``~/.cache/depth_ros/engines``)."""
    text = options.engine_cache_dir.strip()
    return Path(text).expanduser() if text else DEFAULT_CACHE_DIR


def ensure_engine(onnx_path: Path, settings: BuildSettings, cache_dir: Path = DEFAULT_CACHE_DIR,
                  log: Any = print) -> Path:
    """The cached engine for ``onnx_path`` on this machine, built when missing or stale."""
    import onnx

    from depth_ros.contract import METADATA_KEY

    key = engine_key(onnx_path, settings)
    props = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    cache = EngineCache(cache_dir, log)
    result = cache.get_or_build(onnx_path, key, lambda src, dst: build_engine(src, dst, settings, log),
                                validate_engine, props.get(METADATA_KEY))
    return result.engine


class TensorRTBackend:
    name = "tensorrt"
    device = "cuda"

    def __init__(self, path: Path, options: BackendOptions, settings: BuildSettings | None = None) -> None:
        import onnx
        import torch

        if options.device == "cpu":
            raise ModelLoadError("backend 'tensorrt' needs a CUDA device; use backend 'onnxruntime' for device 'cpu'")
        self._metadata = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        cache_dir = engine_cache_dir(options)
        if settings is None:
            # The timing cache sits beside the engines, as with 'depth-ros build-engine' (same engine keys).
            settings = BuildSettings(options.engine_precision, None, cache_dir / "timing.cache")
        try:
            engine_path = ensure_engine(path, settings, cache_dir)
            self._engine = load_engine(engine_path)
        except EngineError as exc:
            raise ModelLoadError(str(exc)) from exc
        self._context = self._engine.create_execution_context()
        self._stream = torch.cuda.Stream()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == _input_mode()]
        outputs = [n for n in names if n not in inputs]
        self._input, self._output = inputs[0], outputs[0]
        shape = _dims(self._engine.get_tensor_shape(self._input))
        self.fixed_input_size: tuple[int, int] | None = None if min(shape) < 0 else (int(shape[2]), int(shape[3]))
        self._buffers: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = {}

    def metadata(self) -> dict[str, str]:
        return dict(self._metadata)

    def _io(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Device buffers for an input shape, allocated once per shape (cameras rarely change size)."""
        import torch

        buffers = self._buffers.get(shape)
        if buffers is None:
            self._context.set_input_shape(self._input, shape)
            out_shape = _dims(self._context.get_tensor_shape(self._output))
            # Normal tensors even when first called under inference_mode (the torch pipeline): an
            # inference tensor could not be written by a later infer() outside it.
            with torch.inference_mode(False):
                buffers = (torch.empty(shape, dtype=torch.float32, device="cuda"),
                           torch.empty(out_shape, dtype=torch.float32, device="cuda"))
            self._buffers = {shape: buffers}
        self._context.set_input_shape(self._input, shape)
        self._context.set_tensor_address(self._input, buffers[0].data_ptr())
        self._context.set_tensor_address(self._output, buffers[1].data_ptr())
        return buffers

    def infer_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """CUDA tensor in -> CUDA tensor out, on this backend's stream (no host copies).

        The engine's stream waits for the caller's stream (which produced ``tensor``), and the caller's
        stream waits for the engine before it touches the result: the caller needs no synchronisation.
        The result is this backend's output buffer, overwritten by the next call.
        """
        import torch

        source, result = self._io(tuple(tensor.shape))
        caller = torch.cuda.current_stream()
        self._stream.wait_stream(caller)
        with torch.cuda.stream(self._stream):
            source.copy_(tensor, non_blocking=True)
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
        caller.wait_stream(self._stream)
        return result

    def infer(self, tensor: Any) -> np.ndarray:
        import torch

        host = torch.from_numpy(np.ascontiguousarray(tensor, dtype=np.float32))
        with torch.cuda.stream(self._stream):
            device = host.to("cuda", non_blocking=True)
        result = self.infer_device(device)
        with torch.cuda.stream(self._stream):
            out = result.to("cpu", non_blocking=False)  # the one device -> host copy
        return out.numpy()


def _dims(dims: trt.Dims) -> tuple[int, ...]:
    return tuple(dims[i] for i in range(len(dims)))


def _input_mode() -> trt.TensorIOMode:
    import tensorrt as trt

    return trt.TensorIOMode.INPUT


def register() -> None:
    register_backend("tensorrt", TensorRTBackend, probe, priority=20)
