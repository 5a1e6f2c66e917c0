"""A directory of TensorRT engines keyed by everything that makes an engine invalid (DESIGN.md §9).

Engines are not portable across GPU models, TensorRT versions or platforms, and depend on the
ONNX content (its external-data files included), the input shape range, the precision and the
way the network was typed. Each entry is one directory holding the engine, the ONNX it was built
from when that is a converted one (FP16 through ModelOpt AutoCast), and ``meta.json`` with the key
and the model contract. An entry is built in a private directory and renamed into place in one
step, so an interrupted or failed build never leaves a half entry under a key. The builder is
injected, which keeps this logic free of TensorRT and testable anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

ENGINE_FILE = "model.engine"
META_FILE = "meta.json"
CONVERTED_ONNX_FILE = "converted.onnx"  # the mixed-precision ONNX an FP16 engine was built from


class EngineError(RuntimeError):
    """No usable engine could be obtained; the message says why and what to do."""


Shape = tuple[int, int, int, int]


@dataclass(frozen=True)
class EngineKey:
    gpu_name: str
    compute_capability: str  # e.g. "8.7"
    tensorrt_version: str
    onnx_sha256: str  # the .onnx and every external-data file it names (model_sha256)
    # "1x3x364x644" (static ONNX), or "min:1x3xHxW;opt:...;max:..." (a profile; its dim 0 is the batch range,
    # so engines of different batch ranges have different keys)
    input_shape: str
    precision: str  # "fp16" | "fp32"
    # How the network was typed and converted, e.g. "strong" or "strong+modelopt-0.47.0": a new converter
    # can change the numerics of the same ONNX.
    typing: str = "strong"

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def profile(self) -> tuple[Shape, Shape, Shape]:
        """(min, opt, max) NCHW shapes; a static engine's range is its one shape."""
        if ":" not in self.input_shape:
            shape = _parse_shape(self.input_shape)
            return shape, shape, shape
        parts = dict(part.split(":", 1) for part in self.input_shape.split(";"))
        return _parse_shape(parts["min"]), _parse_shape(parts["opt"]), _parse_shape(parts["max"])

    def covers(self, shape: Shape) -> bool:
        low, _, high = self.profile()
        return all(lo <= s <= hi for lo, s, hi in zip(low, shape, high, strict=True))

    def same_build_as(self, other: EngineKey) -> bool:
        """Everything but the input shape range matches."""
        return replace(self, input_shape="") == replace(other, input_shape="")


def profile_text(low: Shape, opt: Shape, high: Shape) -> str:
    return ";".join(f"{name}:{'x'.join(map(str, s))}" for name, s in (("min", low), ("opt", opt), ("max", high)))


def _parse_shape(text: str) -> Shape:
    values = tuple(int(v) for v in text.split("x"))
    if len(values) != 4:
        raise ValueError(f"expected an NCHW shape such as 1x3x364x644, got {text!r}")
    return values  # type: ignore[return-value]


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def external_data_files(onnx_path: Path) -> list[Path]:
    """The external-data files an ONNX model's initialisers live in (sorted, each once)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    names: set[str] = set()
    tensors = list(model.graph.initializer)
    tensors += [a.t for node in model.graph.node for a in node.attribute if a.HasField("t")]
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = {entry.key: entry.value for entry in tensor.external_data}.get("location")
            if location:
                names.add(location)
    return [onnx_path.parent / name for name in sorted(names)]


def model_sha256(onnx_path: str | Path) -> str:
    """SHA-256 over the .onnx and its external-data files: a re-export with new weights in the external
    file is a new model even when the .onnx bytes are unchanged."""
    onnx_path = Path(onnx_path)
    parts = [file_sha256(onnx_path)]
    for data in external_data_files(onnx_path):
        if not data.is_file():
            raise EngineError(f"{onnx_path} keeps its weights in {data}, which does not exist: copy it beside "
                              "the .onnx file (or re-export without external data)")
        parts.append(f"{data.name}:{file_sha256(data)}")
    if len(parts) == 1:
        return parts[0]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


# builder(onnx_path, entry_dir): writes entry_dir/ENGINE_FILE (and any converted ONNX) into the new entry.
# validator(engine_path) -> None if loadable, else the reason.
Builder = Callable[[Path, Path], None]
Validator = Callable[[Path], "str | None"]


@dataclass
class CacheResult:
    engine: Path
    key: EngineKey
    built: bool  # False: a valid cached engine was reused
    build_seconds: float = 0.0

    @property
    def entry(self) -> Path:
        return self.engine.parent


class EngineCache:
    def __init__(self, directory: str | Path, log: Callable[[str], None] = print) -> None:
        self.directory = Path(directory).expanduser()
        self.log = log

    def entry_dir(self, onnx_path: Path, key: EngineKey) -> Path:
        return self.directory / f"{onnx_path.stem}-{key.precision}-{key.digest()}"

    def lookup(self, onnx_path: Path, key: EngineKey) -> Path | None:
        """The cached engine for ``key``, or None (missing, or its stored key differs)."""
        entry = self.entry_dir(onnx_path, key)
        stored = _stored_key(entry)
        return entry / ENGINE_FILE if stored == key and (entry / ENGINE_FILE).is_file() else None

    def entries(self) -> Iterator[tuple[EngineKey, Path]]:
        """Every complete entry: (its key, its engine)."""
        if not self.directory.is_dir():
            return
        for entry in sorted(self.directory.iterdir()):
            key = _stored_key(entry)
            if key is not None and (entry / ENGINE_FILE).is_file():
                yield key, entry / ENGINE_FILE

    def find_covering(self, key: EngineKey, shape: Shape, *more: Shape) -> tuple[EngineKey, Path] | None:
        """A cached engine built like ``key`` whose shape range holds ``shape`` and every one of ``more`` (e.g. the
        ends of a batch range), the narrowest such range."""
        found = [(k, p) for k, p in self.entries()
                 if k.same_build_as(key) and all(k.covers(s) for s in (shape, *more))]
        if not found:
            return None

        def volume(item: tuple[EngineKey, Path]) -> int:
            low, _, high = item[0].profile()
            result = 1
            for lo, hi in zip(low, high, strict=True):
                result *= hi - lo + 1
            return result

        return min(found, key=volume)

    def get_or_build(self, onnx_path: str | Path, key: EngineKey, builder: Builder, validator: Validator,
                     contract_json: str | None = None) -> CacheResult:
        onnx_path = Path(onnx_path)
        cached = self.lookup(onnx_path, key)
        if cached is not None:
            reason = validator(cached)
            if reason is None:
                return CacheResult(cached, key, built=False)
            self.log(f"cached engine {cached} cannot be used ({reason}); rebuilding it")
        return self._build(onnx_path, key, builder, validator, contract_json)

    def _build(self, onnx_path: Path, key: EngineKey, builder: Builder, validator: Validator,
               contract_json: str | None) -> CacheResult:
        entry = self.entry_dir(onnx_path, key)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EngineError(f"cannot create the engine cache directory {self.directory}: {exc}; "
                              "set 'engine_cache_dir' to a writable folder") from exc
        self.log(f"building a {key.precision} TensorRT engine for {onnx_path.name} on {key.gpu_name} "
                 f"(TensorRT {key.tensorrt_version}, input {key.input_shape}); this takes minutes on a Jetson "
                 "and happens once")
        partial = entry.with_name(f"{entry.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        start = time.monotonic()
        try:
            partial.mkdir()
            builder(onnx_path, partial)
            engine = partial / ENGINE_FILE
            if not engine.is_file() or engine.stat().st_size == 0:
                raise EngineError("the builder produced no engine")
            reason = validator(engine)
            if reason is not None:
                raise EngineError(f"the freshly built engine does not load: {reason}")
            seconds = time.monotonic() - start
            record = {"key": asdict(key), "onnx": str(onnx_path), "built_at": time.time(),
                      "build_seconds": seconds, "engine_sha256": file_sha256(engine)}
            if contract_json is not None:
                record["contract"] = json.loads(contract_json)
            (partial / META_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))
            _replace_dir(partial, entry)  # engine, converted ONNX and metadata appear together
        except EngineError as exc:
            raise EngineError(f"building the TensorRT engine for {onnx_path} failed: {exc}") from exc
        except Exception as exc:  # TensorRT raises plain RuntimeError/TypeError from its bindings
            raise EngineError(f"building the TensorRT engine for {onnx_path} failed: {exc}. Check the model "
                              "with 'depth-ros verify' or use backend 'onnxruntime'") from exc
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        self.log(f"engine ready after {seconds:.1f} s: {entry / ENGINE_FILE}")
        return CacheResult(entry / ENGINE_FILE, key, built=True, build_seconds=seconds)


def _stored_key(entry: Path) -> EngineKey | None:
    try:
        stored = json.loads((entry / META_FILE).read_text()).get("key")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    names = {f.name for f in fields(EngineKey)}
    if not isinstance(stored, dict) or set(stored) != names:
        return None  # an entry written by another version of this code
    try:
        key = EngineKey(**{name: str(stored[name]) for name in names})
        key.profile()
    except (TypeError, ValueError, KeyError):
        return None
    return key


def _replace_dir(new: Path, target: Path) -> None:
    """Rename ``new`` to ``target`` in one step; an old ``target`` (stale, corrupt) is moved away first."""
    if target.exists():
        old = target.with_name(f"{target.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)
