"""TensorRT backend for TensorRT 10.x (>= 10.3, what JetPack 6 ships) and 11.x (pip): ONNX -> cached engine
-> execute_async_v3 on torch CUDA buffers.

The node's 'model' stays the .onnx file. The engine is built on first use for this GPU, TensorRT version,
model content (external data included), input shape range, precision and typing, and reused afterwards
(depth_ros.backends.engine_cache). One build path serves both generations: a strongly typed network (the only
kind in 11.x; 10.12 deprecated weak typing). FP32 builds the ONNX as it is; FP16 first converts it to
mixed precision with ModelOpt AutoCast (normalisation, softmax and reductions in FP32, FP32 I/O;
depth_ros.backends.mixed_precision) and caches the converted ONNX beside the engine.

Dynamic-shape models: an engine covers a range of input shapes (an optimisation profile). The node asks
for the camera's network input size on the first frame: a cached engine whose range holds it is used,
else one is built for exactly that size (the same key `depth-ros build-engine --min S --opt S --max S`
writes). Every I/O tensor gets a buffer of its own dtype; the first ONNX output is the prediction.

Batches: a model exported with a dynamic batch (`depth-ros export --batch dynamic`) gets a profile whose dim 0
range is (1, opt, max) from BuildSettings.max_batch/opt_batch (`build-engine --max-batch N`, the backend
option engine_max_batch); the range is part of the engine key. A fixed batch B is the ONNX's own: its engine
runs B images, fewer are padded to B. The backend's max_batch is the top of that range.

Importable without TensorRT or CUDA: probe() says what is missing. Type-checked against tensorrt-stubs
(10.13) and every TensorRT name used here is checked against the 10.3 and 11.x API lists
(tests/test_typecheck.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from depth_ros.backends.base import BackendOptions, ModelLoadError, cut_batch, register_backend
from depth_ros.backends.engine_cache import (
    CONVERTED_ONNX_FILE,
    ENGINE_FILE,
    EngineCache,
    EngineError,
    EngineKey,
    Shape,
    model_sha256,
    profile_text,
)

if TYPE_CHECKING:
    import tensorrt as trt
    import torch

WORKSPACE_BYTES = 2 << 30
MIN_VERSION = (10, 3)  # JetPack 6.1/6.2
INSTALL_HINT = ("install TensorRT for Python: JetPack 6 ships 10.3 (python3-libnvinfer), on a desktop "
                "'pip install tensorrt' (11.x)")

Log = Callable[[str], None]


def _print(message: str) -> None:
    print(f"[depth_ros.tensorrt] {message}", flush=True)


def default_cache_dir() -> Path:
    """$DEPTH_ROS_ENGINE_CACHE or ~/.cache/depth_ros/engines, read when asked (tests point it elsewhere)."""
    return Path(os.environ.get("DEPTH_ROS_ENGINE_CACHE", "~/.cache/depth_ros/engines")).expanduser()


@dataclass(frozen=True)
class BuildSettings:
    precision: str = "fp16"  # fp16 (mixed precision through ModelOpt AutoCast) | fp32
    # Dynamic inputs: (min, opt, max) as (height, width); kernels are tuned for opt. None: the ONNX is static,
    # or the node picks the camera's size on the first frame.
    profile: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None = None
    timing_cache: Path | None = None
    # A dynamic-batch ONNX: the profile's batch range is (1, opt_batch, max_batch); 0 = opt at max_batch (the
    # batch a batching caller sends most). Ignored for an ONNX with a fixed batch, which is its own range.
    max_batch: int = 1
    opt_batch: int = 0


def parse_version(text: str) -> tuple[int, int]:
    parts = text.split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return 0, 0


def version_problem(text: str) -> str | None:
    """Why this TensorRT version is not supported, or None."""
    if parse_version(text) < MIN_VERSION:
        return (f"TensorRT {text} is too old: this backend needs TensorRT {MIN_VERSION[0]}.{MIN_VERSION[1]} or "
                f"later (JetPack 6.1 or newer on a Jetson; 'pip install tensorrt' elsewhere)")
    return None


def probe() -> str | None:
    try:
        import tensorrt
    except ImportError as exc:
        return f"tensorrt is not installed ({exc}); {INSTALL_HINT}"
    version = getattr(tensorrt, "__version__", None)
    if version is None:  # a namespace package without the bindings (tensorrt-stubs installs one)
        return f"tensorrt is not installed (an empty 'tensorrt' package such as tensorrt-stubs is); {INSTALL_HINT}"
    reason = version_problem(str(version))
    if reason is not None:
        return reason
    try:
        import torch
    except ImportError as exc:
        return f"torch is not installed ({exc}); it provides the CUDA buffers"
    if not torch.cuda.is_available():
        return "no CUDA device is visible to torch"
    return None


@dataclass(frozen=True)
class OnnxSignature:
    """The model's I/O as the ONNX file declares it (read without its weights)."""

    input_names: tuple[str, ...]
    input_dims: tuple[int | str, ...]  # of the image input; a str is a dynamic dimension
    output_names: tuple[str, ...]

    @property
    def input_name(self) -> str:
        return self.input_names[0]

    @property
    def dynamic(self) -> bool:
        """Height or width is dynamic (the batch is ``dynamic_batch``)."""
        return any(not isinstance(d, int) or d <= 0 for d in self.input_dims[2:])

    @property
    def dynamic_batch(self) -> bool:
        dim = self.input_dims[0]
        return not isinstance(dim, int) or dim <= 0

    @property
    def needs_profile(self) -> bool:
        """An engine of this model needs an optimisation profile (some input dimension is dynamic)."""
        return self.dynamic or self.dynamic_batch

    def static_shape(self) -> Shape:
        n, c, h, w = (d if isinstance(d, int) and d > 0 else 1 for d in self.input_dims)
        return n, c, h, w


def read_signature(onnx_path: Path) -> OnnxSignature:
    import onnx

    try:
        graph = onnx.load(str(onnx_path), load_external_data=False).graph
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelLoadError(f"{onnx_path} is not a readable ONNX file ({exc}); re-export it") from exc
    initialisers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initialisers]
    if len(inputs) != 1:
        raise ModelLoadError(f"model {onnx_path} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                             "a depth model takes one image input")
    dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                 for d in inputs[0].type.tensor_type.shape.dim)
    if len(dims) != 4:
        raise ModelLoadError(f"model {onnx_path}: input {inputs[0].name!r} has shape {dims}, expected NCHW")
    if not graph.output:
        raise ModelLoadError(f"model {onnx_path} has no outputs")
    return OnnxSignature((inputs[0].name,), dims, tuple(o.name for o in graph.output))


@dataclass(frozen=True)
class BuildTarget:
    """The machine an engine is built for."""

    gpu_name: str
    compute_capability: str
    tensorrt_version: str


def build_target() -> BuildTarget:
    import tensorrt as trt
    import torch

    major, minor = torch.cuda.get_device_capability()
    return BuildTarget(torch.cuda.get_device_name(), f"{major}.{minor}", trt.__version__)


def typing_label(precision: str) -> str:
    """How a build of ``precision`` is typed and converted (part of the key: a new converter is a new engine)."""
    from depth_ros.backends.mixed_precision import modelopt_version

    if precision == "fp32":
        return "strong"
    if precision == "fp16":
        return f"strong+modelopt-{modelopt_version() or 'missing'}"
    raise ModelLoadError(f"engine_precision must be fp16 or fp32, got {precision!r}")


def engine_key(target: BuildTarget, model_digest: str, signature: OnnxSignature, precision: str,
               profile: tuple[Shape, Shape, Shape] | None) -> EngineKey:
    """The key of an engine: a static ONNX has one shape; a dynamic one (size or batch) is keyed by its profile's
    range, the batch range included (engines of different batch ranges never share an entry)."""
    if signature.needs_profile:
        if profile is None:
            raise ModelLoadError(f"input {signature.input_name!r} has dynamic dimensions {signature.input_dims}: an "
                                 "engine needs a shape range (--min/--opt/--max, or the camera's size)")
        shape = profile_text(*profile)
    else:
        shape = "x".join(str(d) for d in signature.static_shape())
    return EngineKey(target.gpu_name, target.compute_capability, target.tensorrt_version, model_digest, shape,
                     precision, typing_label(precision))


def batch_range(signature: OnnxSignature, settings: BuildSettings) -> tuple[int, int, int]:
    """(min, opt, max) of the batch dimension of this model's engines: a fixed batch B is (B, B, B); a dynamic one
    (1, opt, max) from ``settings`` (opt_batch 0: max_batch)."""
    if not signature.dynamic_batch:
        batch = signature.static_shape()[0]
        return batch, batch, batch
    high = settings.max_batch
    opt = settings.opt_batch or high
    if high < 1 or not 1 <= opt <= high:
        raise ModelLoadError(f"the batch range must be 1 <= opt_batch <= max_batch, got opt_batch {opt}, "
                             f"max_batch {high}")
    return 1, opt, high


def nchw_profile(signature: OnnxSignature, sizes: tuple[tuple[int, int], tuple[int, int], tuple[int, int]],
                 batch: tuple[int, int, int] | None = None) -> tuple[Shape, Shape, Shape]:
    """(min, opt, max) NCHW of (height, width) ``sizes`` and a ``batch`` range (default: the ONNX's batch, 1 when
    dynamic)."""
    n, c, _, _ = signature.static_shape()
    b0, b1, b2 = batch or (n, n, n)
    (h0, w0), (h1, w1), (h2, w2) = sizes
    if not (h0 <= h1 <= h2 and w0 <= w1 <= w2):
        raise ModelLoadError(f"profile sizes must grow min <= opt <= max, got {sizes} (height, width)")
    if not 1 <= b0 <= b1 <= b2:
        raise ModelLoadError(f"the profile's batch must grow 1 <= min <= opt <= max, got {(b0, b1, b2)}")
    return (b0, c, h0, w0), (b1, c, h1, w1), (b2, c, h2, w2)


def engine_profile(signature: OnnxSignature, settings: BuildSettings, shape: Shape | None = None
                   ) -> tuple[Shape, Shape, Shape] | None:
    """The optimisation profile an engine of this model is built with: None for a static ONNX, or for dynamic
    sizes with neither ``settings.profile`` nor an input ``shape`` to build for. Sizes come from the ONNX (static),
    ``settings.profile``, else exactly ``shape``'s; the batch from batch_range."""
    if not signature.needs_profile:
        return None
    batch = batch_range(signature, settings)
    if not signature.dynamic:
        _, _, height, width = signature.static_shape()
        sizes = ((height, width),) * 3
    elif settings.profile is not None:
        sizes = settings.profile
    elif shape is not None:
        sizes = ((shape[2], shape[3]),) * 3
    else:
        return None
    return nchw_profile(signature, sizes, batch)  # type: ignore[arg-type]


def _network_flags(trt_module: Any) -> int:
    """A strongly typed network: the flag on 10.x; on 11.x every network is strongly typed (the flag is gone
    or a no-op there), so a missing flag means the default already is."""
    flag = getattr(trt_module.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def build_engine(onnx_path: Path, entry_dir: Path, settings: BuildSettings, profile: tuple[Shape, Shape, Shape] | None,
                 calibration: dict[str, np.ndarray] | None = None, log: Log = _print) -> None:
    """Write ``entry_dir/ENGINE_FILE`` for ``onnx_path`` (and, for FP16, the converted ONNX beside it)."""
    import tensorrt as trt

    source = onnx_path
    if settings.precision == "fp16":
        from depth_ros.backends.mixed_precision import convert_to_fp16

        source = entry_dir / CONVERTED_ONNX_FILE
        log(f"converting {onnx_path.name} to mixed precision FP16 (ModelOpt AutoCast)")
        convert_to_fp16(onnx_path, source, calibration)
    elif settings.precision != "fp32":
        raise EngineError(f"precision must be fp16 or fp32, got {settings.precision!r}")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    # From the file, so external data is found beside it.
    if not parser.parse_from_file(str(source)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse {source}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    input_tensor = network.get_input(0)
    if profile is not None:
        optimisation = builder.create_optimization_profile()
        low, opt, high = (trt.Dims(list(s)) for s in profile)
        optimisation.set_shape(input_tensor.name, low, opt, high)
        if config.add_optimization_profile(optimisation) < 0:
            raise EngineError(f"TensorRT refused the optimisation profile {profile} for input {input_tensor.name!r}")
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
    (entry_dir / ENGINE_FILE).write_bytes(bytes(serialized))
    if timing_file is not None:
        timing_file.parent.mkdir(parents=True, exist_ok=True)
        partial = timing_file.with_name(f"{timing_file.name}.partial-{os.getpid()}")
        partial.write_bytes(bytes(config.get_timing_cache().serialize()))
        os.replace(partial, timing_file)


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
    return Path(text).expanduser() if text else default_cache_dir()


class EngineBuilder:
    """Finds or builds the engine of one ONNX model for an input shape (range), through the cache."""

    def __init__(self, onnx_path: Path, settings: BuildSettings, cache_dir: Path, log: Log = _print) -> None:
        from depth_ros.core.contract import METADATA_KEY, read_contract_from_onnx_metadata

        self.onnx_path = onnx_path
        self.settings = settings
        self.log = log
        self.signature = read_signature(onnx_path)
        # The contract is checked before anything is built: a model without one fails in seconds, not after a
        # minutes-long build, and nothing is written to the cache.
        self.metadata = _metadata(onnx_path)
        self.contract = read_contract_from_onnx_metadata(self.metadata, str(onnx_path))
        self.contract_json = self.metadata[METADATA_KEY]
        typing_label(settings.precision)  # an unknown precision fails here too
        try:
            self.digest = model_sha256(onnx_path)
        except EngineError as exc:
            raise ModelLoadError(str(exc)) from exc
        self.target = build_target()
        self.cache = EngineCache(cache_dir, log)

    def key(self, profile: tuple[Shape, Shape, Shape] | None) -> EngineKey:
        return engine_key(self.target, self.digest, self.signature, self.settings.precision, profile)

    def ensure(self, shape: Shape | None = None) -> tuple[EngineKey, Path]:
        """The engine for ``shape`` (a dynamic model) or the model's one shape (static), built when missing:
        with a ``settings.profile`` that range, else exactly ``shape``'s size; a dynamic batch over the settings'
        batch range. Given a ``shape``, a cached engine whose range holds its size at every batch of that range
        is used as it is (the narrowest such)."""
        profile = engine_profile(self.signature, self.settings, shape)
        key = self.key(profile)  # a dynamic size without a range fails here
        if profile is not None and shape is not None:
            low, _, high = profile
            size = tuple(shape[1:])
            found = self.cache.find_covering(key, shape, (low[0], *size), (high[0], *size))  # type: ignore[arg-type]
            if found is not None and validate_engine(found[1]) is None:
                return found
        calibration = self._calibration(profile[1] if profile else self.signature.static_shape())
        try:
            result = self.cache.get_or_build(
                self.onnx_path, key,
                lambda src, entry: build_engine(src, entry, self.settings, profile, calibration, self.log),
                validate_engine, self.contract_json)
        except EngineError as exc:
            raise ModelLoadError(str(exc)) from exc
        return result.key, result.engine

    def _calibration(self, shape: Shape) -> dict[str, np.ndarray] | None:
        """A realistic input for AutoCast's range check: a probe image prepared by the contract."""
        if self.settings.precision != "fp16":
            return None
        from depth_ros.backends.check import probe_tensors

        image = probe_tensors(self.contract.input, shape[2], shape[3])[0]
        # One image for a dynamic batch; a fixed batch B needs B (AutoCast runs the ONNX as it is).
        batch = 1 if self.signature.dynamic_batch else shape[0]
        return {self.signature.input_name: np.repeat(image, batch, axis=0)}


def _metadata(onnx_path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}


_TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT32": "int32", "INT64": "int64",
                 "INT8": "int8", "UINT8": "uint8", "BOOL": "bool"}


def torch_dtype(dtype: trt.DataType) -> torch.dtype:
    import torch

    name = _TORCH_DTYPES.get(dtype.name)
    if name is None:
        raise ModelLoadError(f"the engine has an I/O tensor of type {dtype.name}, which this backend cannot bind; "
                             "export the model with float32 or float16 inputs and outputs")
    return getattr(torch, name)


class EngineRunner:
    """One engine, its execution context and a device buffer for every I/O tensor (of the engine's dtype)."""

    def __init__(self, engine: trt.ICudaEngine, key: EngineKey, signature: OnnxSignature) -> None:
        import tensorrt as trt

        self.engine = engine
        self.key = key
        context = engine.create_execution_context()
        if context is None:
            raise ModelLoadError("TensorRT could not create an execution context (out of GPU memory?): close "
                                 "other GPU programs, or use a smaller model or input size")
        self.context = context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        if self.inputs != [signature.input_name]:
            raise ModelLoadError(f"the engine's inputs {self.inputs} are not the model's image input "
                                 f"{signature.input_name!r}; rebuild it (delete the engine cache entry)")
        # The prediction is the ONNX graph's first output, whatever order the engine lists them in.
        self.onnx_outputs = signature.output_names  # ONNX order: a contract's output index refers to it
        self.primary = signature.output_names[0]
        missing = [name for name in self.onnx_outputs if name not in self.outputs]
        if missing:
            raise ModelLoadError(f"the engine has no output {missing[0]!r} (it has {self.outputs}); rebuild it")
        self.dtypes = {n: torch_dtype(engine.get_tensor_dtype(n)) for n in names}
        self.buffers: dict[str, torch.Tensor] = {}
        self.shape: Shape | None = None

    def profile_range(self) -> tuple[Shape, Shape, Shape]:
        low, opt, high = self.engine.get_tensor_profile_shape(self.inputs[0], 0)
        return tuple(_dims(low)), tuple(_dims(opt)), tuple(_dims(high))  # type: ignore[return-value]

    def bind(self, shape: Shape) -> None:
        """Set the input shape (any shape in the engine's profile, a batch of its range included) and give every
        I/O tensor a buffer of the shape that gives (allocated again only when the shape changes)."""
        import torch

        if shape == self.shape:
            return
        name = self.inputs[0]
        if not self.context.set_input_shape(name, shape):
            raise ModelLoadError(f"TensorRT refused input shape {shape} for {name!r}: the engine covers "
                                 f"{self.key.input_shape}; rebuild it for this size (depth-ros build-engine)")
        buffers: dict[str, torch.Tensor] = {}
        # Normal tensors even when first called under inference_mode (the torch pipeline): an inference
        # tensor could not be written by a later infer() outside it.
        with torch.inference_mode(False):
            for tensor in [name, *self.outputs]:
                dims = tuple(_dims(self.context.get_tensor_shape(tensor)))
                if min(dims, default=1) < 0:
                    raise ModelLoadError(f"output {tensor!r} has a data-dependent shape {dims}, which this "
                                         "backend does not support; use backend 'onnxruntime'")
                buffers[tensor] = torch.empty(dims, dtype=self.dtypes[tensor], device="cuda")
        for tensor, buffer in buffers.items():
            if not self.context.set_tensor_address(tensor, buffer.data_ptr()):
                raise ModelLoadError(f"TensorRT refused the device address of {tensor!r}")
        self.buffers, self.shape = buffers, shape

    def run(self, tensor: torch.Tensor, stream: torch.cuda.Stream) -> torch.Tensor:
        """Copy ``tensor`` in (cast to the input's dtype), run on ``stream``, return the prediction output."""
        self.bind(tuple(tensor.shape))  # type: ignore[arg-type]
        source = self.buffers[self.inputs[0]]
        source.copy_(tensor, non_blocking=True)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT messages above)")
        return self.buffers[self.primary]

    def output(self, index: int) -> torch.Tensor:
        """The buffer of ONNX output ``index`` after ``run`` (0 is what ``run`` returns)."""
        return self.buffers[self.onnx_outputs[index]]


class TensorRTBackend:
    name = "tensorrt"
    device = "cuda"

    def __init__(self, path: Path, options: BackendOptions, settings: BuildSettings | None = None,
                 log: Log = _print) -> None:
        import tensorrt as trt
        import torch

        if options.device == "cpu":
            raise ModelLoadError("backend 'tensorrt' needs a CUDA device; use backend 'onnxruntime' for device 'cpu'")
        reason = version_problem(trt.__version__)
        if reason is not None:
            raise ModelLoadError(reason)
        cache_dir = engine_cache_dir(options)
        if settings is None:
            # The timing cache sits beside the engines, as with 'depth-ros build-engine' (same engine keys).
            settings = BuildSettings(options.engine_precision, None, cache_dir / "timing.cache",
                                     max_batch=options.engine_max_batch)
        self.log = log
        self._cache_dir = cache_dir
        self._path = path
        self._builder = EngineBuilder(path, settings, cache_dir, log)
        self._metadata = self._builder.metadata
        log(f"TensorRT {trt.__version__} on {self._builder.target.gpu_name} (compute "
            f"{self._builder.target.compute_capability}); {settings.precision} engines in {cache_dir}")
        self._stream = torch.cuda.Stream()
        self._runners: list[EngineRunner] = []
        signature = self._builder.signature
        self.output_count = len(signature.output_names)
        self.fixed_input_size: tuple[int, int] | None = None
        # Every engine this backend loads covers this batch range (EngineBuilder.ensure): fewer images than its
        # min (a fixed batch B) are padded to it; max_batch is its top.
        self._min_batch, _, self.max_batch = batch_range(signature, settings)
        if not signature.dynamic:
            shape = signature.static_shape()
            self._runner_for((self._min_batch, *shape[1:]))  # type: ignore[arg-type]
            self.fixed_input_size = (shape[2], shape[3])
        elif settings.profile is not None:
            self._runner_for(None)

    @property
    def precision(self) -> str:
        return self._builder.settings.precision

    @property
    def engines(self) -> list[EngineKey]:
        """The keys of the engines loaded so far."""
        return [runner.key for runner in self._runners]

    def metadata(self) -> dict[str, str]:
        return dict(self._metadata)

    def _runner_for(self, shape: Shape | None) -> EngineRunner:
        for runner in self._runners:  # per frame: the runner bound to this shape answers without parsing keys
            if runner.shape == shape:
                return runner
        for runner in self._runners:
            if shape is None or runner.key.covers(shape):
                return runner
        key, engine_path = self._builder.ensure(shape)
        try:
            runner = EngineRunner(load_engine(engine_path), key, self._builder.signature)
        except EngineError as exc:
            raise ModelLoadError(str(exc)) from exc
        self.log(f"engine for input {key.input_shape}: {engine_path}")
        self._runners.append(runner)
        return runner

    def more_precise(self) -> bool:
        """Rebuild at FP32 after a failed correctness check; False when already at FP32."""
        if self.precision == "fp32":
            return False
        builder = self._builder
        self._builder = EngineBuilder(self._path, replace(builder.settings, precision="fp32"), self._cache_dir,
                                      self.log)
        shapes = [runner.shape or runner.key.profile()[1] for runner in self._runners]
        self._runners = []
        for shape in shapes:
            self._runner_for(shape)
        return True

    def infer_device(self, tensor: torch.Tensor, extra_outputs: tuple[int, ...] = ()) -> Any:
        """CUDA tensor in -> float32 CUDA tensor out, on this backend's stream (no host copies); a tuple with
        ``extra_outputs`` (ONNX output indices, see InferenceBackend.infer).

        The engine's stream waits for the caller's stream (which produced ``tensor``), and the caller's
        stream waits for the engine before it touches the result: the caller needs no synchronisation.
        The result may be this backend's output buffer, overwritten by the next call.
        """
        import torch

        count = int(tensor.shape[0])
        if count > self.max_batch:
            raise ValueError(f"a batch of {count} images is more than this engine's max_batch {self.max_batch}: "
                             "split it (DepthEstimator.estimate_batch does) or build a wider batch range")
        padded = max(count, self._min_batch)
        runner = self._runner_for((padded, *tensor.shape[1:]))  # type: ignore[arg-type]
        caller = torch.cuda.current_stream()
        self._stream.wait_stream(caller)
        with torch.cuda.stream(self._stream):
            if padded > count:  # a fixed-batch engine: zero images fill the batch, their outputs are cut off
                tensor = torch.cat([tensor, tensor.new_zeros((padded - count, *tensor.shape[1:]))])
            runner.run(tensor, self._stream)
            results = []
            for index in (0, *extra_outputs):
                result = cut_batch(runner.output(index), count, padded)
                if result.dtype != torch.float32:
                    result = result.float()  # FP16 output: the pipeline computes metres in FP32
                    result.record_stream(caller)  # made on this stream, used on the caller's: keep it till then
                results.append(result)
        caller.wait_stream(self._stream)
        return tuple(results) if extra_outputs else results[0]

    def infer(self, tensor: Any, extra_outputs: tuple[int, ...] = ()) -> Any:
        import torch

        host = torch.from_numpy(np.ascontiguousarray(tensor, dtype=np.float32))
        with torch.cuda.stream(self._stream):
            device = host.to("cuda", non_blocking=True)
        result = self.infer_device(device, extra_outputs)
        outputs = result if extra_outputs else (result,)
        with torch.cuda.stream(self._stream):
            host_outputs = tuple(out.to("cpu", non_blocking=False).numpy() for out in outputs)  # device -> host
        return host_outputs if extra_outputs else host_outputs[0]


def _dims(dims: trt.Dims) -> tuple[int, ...]:
    return tuple(dims[i] for i in range(len(dims)))


def register() -> None:
    register_backend("tensorrt", TensorRTBackend, probe, priority=20)
