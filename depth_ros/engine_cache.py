"""A directory of TensorRT engines keyed by everything that makes an engine invalid (DESIGN.md §9).

Engines are not portable across GPU models, TensorRT versions or platforms, and depend on the
ONNX content, the input shape(s) and the precision. Each engine file sits next to a JSON file with
its key and the model contract, so a cached engine is used only when every part of the key still
matches; otherwise it is built (once) and logged. The builder is injected, which keeps this logic
free of TensorRT and testable anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

ENGINE_SUFFIX = ".engine"
META_SUFFIX = ".json"


class EngineError(RuntimeError):
    """No usable engine could be obtained; the message says why and what to do."""


@dataclass(frozen=True)
class EngineKey:
    gpu_name: str
    compute_capability: str  # e.g. "8.7"
    tensorrt_version: str
    onnx_sha256: str
    input_shape: str  # "1x3x364x644", or "min:...;opt:...;max:..." for a dynamic profile
    precision: str  # "fp16" | "fp32"

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# builder(onnx_path, engine_path_to_write); validator(engine_path) -> None if loadable else the reason.
Builder = Callable[[Path, Path], None]
Validator = Callable[[Path], "str | None"]


@dataclass
class CacheResult:
    engine: Path
    built: bool  # False: a valid cached engine was reused
    build_seconds: float = 0.0


class EngineCache:
    def __init__(self, directory: str | Path, log: Callable[[str], None] = print) -> None:
        self.directory = Path(directory).expanduser()
        self.log = log

    def paths(self, onnx_path: Path, key: EngineKey) -> tuple[Path, Path]:
        stem = f"{onnx_path.stem}-{key.precision}-{key.digest()}"
        return self.directory / (stem + ENGINE_SUFFIX), self.directory / (stem + META_SUFFIX)

    def lookup(self, onnx_path: Path, key: EngineKey) -> Path | None:
        """The cached engine for ``key``, or None (missing, or its stored key differs)."""
        engine, meta = self.paths(onnx_path, key)
        if not engine.is_file() or not meta.is_file():
            return None
        try:
            stored = json.loads(meta.read_text()).get("key")
        except (OSError, json.JSONDecodeError):
            return None
        return engine if stored == asdict(key) else None

    def get_or_build(self, onnx_path: str | Path, key: EngineKey, builder: Builder, validator: Validator,
                     contract_json: str | None = None) -> CacheResult:
        onnx_path = Path(onnx_path)
        cached = self.lookup(onnx_path, key)
        if cached is not None:
            reason = validator(cached)
            if reason is None:
                return CacheResult(cached, built=False)
            self.log(f"cached engine {cached} cannot be used ({reason}); rebuilding it")
        return self._build(onnx_path, key, builder, validator, contract_json)

    def _build(self, onnx_path: Path, key: EngineKey, builder: Builder, validator: Validator,
               contract_json: str | None) -> CacheResult:
        engine, meta = self.paths(onnx_path, key)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EngineError(f"cannot create the engine cache directory {self.directory}: {exc}; "
                              "set 'engine_cache_dir' to a writable folder") from exc
        self.log(f"building a {key.precision} TensorRT engine for {onnx_path.name} on {key.gpu_name} "
                 f"(input {key.input_shape}); this takes minutes on a Jetson and happens once")
        partial = engine.with_suffix(f".partial-{os.getpid()}")
        start = time.monotonic()
        try:
            builder(onnx_path, partial)
            if not partial.is_file() or partial.stat().st_size == 0:
                raise EngineError("the builder produced no engine")
            reason = validator(partial)
            if reason is not None:
                raise EngineError(f"the freshly built engine does not load: {reason}")
            os.replace(partial, engine)  # atomic: a crash mid-build never leaves a half engine under the key
        except EngineError as exc:
            raise EngineError(f"building the TensorRT engine for {onnx_path} failed: {exc}") from exc
        except Exception as exc:  # TensorRT raises plain RuntimeError/TypeError from its bindings
            raise EngineError(f"building the TensorRT engine for {onnx_path} failed: {exc}. Check the model "
                              "with 'depth-ros verify' or use backend 'onnxruntime'") from exc
        finally:
            partial.unlink(missing_ok=True)
        seconds = time.monotonic() - start
        record = {"key": asdict(key), "onnx": str(onnx_path), "built_at": time.time(), "build_seconds": seconds}
        if contract_json is not None:
            record["contract"] = json.loads(contract_json)
        meta.write_text(json.dumps(record, indent=2, sort_keys=True))
        self.log(f"engine ready after {seconds:.1f} s: {engine}")
        return CacheResult(engine, built=True, build_seconds=seconds)
