"""Engine cache: key, hit/miss/rebuild logic with an injected builder (no TensorRT needed)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from depth_ros.engine_cache import EngineCache, EngineError, EngineKey, file_sha256

MAGIC = b"ENGINE:"


class Builder:
    """Writes a small 'engine' naming the ONNX it came from; counts calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, onnx_path: Path, engine_path: Path) -> None:
        self.calls += 1
        engine_path.write_bytes(MAGIC + onnx_path.read_bytes())


def validator(engine: Path) -> str | None:
    return None if engine.read_bytes().startswith(MAGIC) else "not an engine (corrupt)"


@pytest.fixture
def setup(tmp_path: Path):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"graph-v1")
    key = EngineKey("NVIDIA Orin", "8.7", "10.3.0", file_sha256(onnx), "1x3x364x644", "fp16")
    return onnx, key, EngineCache(tmp_path / "engines", log=lambda message: None)


def test_key_covers_every_field():
    key = EngineKey("NVIDIA H100", "9.0", "10.13.0", "ab" * 32, "1x3x518x518", "fp16")
    digests = {key.digest()}
    for field, value in [("gpu_name", "NVIDIA A100"), ("compute_capability", "8.0"), ("tensorrt_version", "10.3.0"),
                         ("onnx_sha256", "cd" * 32), ("input_shape", "1x3x364x644"), ("precision", "fp32")]:
        digests.add(replace(key, **{field: value}).digest())
    assert len(digests) == 7


def test_build_once_then_hit_and_contract_beside(setup):
    onnx, key, cache = setup
    builder = Builder()
    first = cache.get_or_build(onnx, key, builder, validator, contract_json='{"output_kind": "metric_depth"}')
    assert first.built and builder.calls == 1 and first.engine.read_bytes() == MAGIC + b"graph-v1"
    meta = json.loads(first.engine.with_suffix(".json").read_text())
    assert meta["key"]["precision"] == "fp16" and meta["contract"] == {"output_kind": "metric_depth"}
    second = cache.get_or_build(onnx, key, builder, validator)
    assert not second.built and builder.calls == 1 and second.engine == first.engine


def test_changed_onnx_or_precision_builds_a_new_engine(setup):
    onnx, key, cache = setup
    builder = Builder()
    cache.get_or_build(onnx, key, builder, validator)
    onnx.write_bytes(b"graph-v2")
    new_key = replace(key, onnx_sha256=file_sha256(onnx))
    result = cache.get_or_build(onnx, new_key, builder, validator)
    assert result.built and builder.calls == 2 and result.engine.read_bytes() == MAGIC + b"graph-v2"
    assert cache.get_or_build(onnx, replace(new_key, precision="fp32"), builder, validator).built
    assert builder.calls == 3


def test_stale_metadata_is_a_miss(setup):
    onnx, key, cache = setup
    builder = Builder()
    result = cache.get_or_build(onnx, key, builder, validator)
    meta_path = result.engine.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["key"]["tensorrt_version"] = "8.6.1"  # e.g. a copied cache from another machine
    meta_path.write_text(json.dumps(meta))
    assert cache.lookup(onnx, key) is None
    assert cache.get_or_build(onnx, key, builder, validator).built and builder.calls == 2


def test_corrupt_engine_is_rebuilt_and_log_says_so(setup):
    onnx, key, _ = setup
    messages: list[str] = []
    cache = EngineCache(setup[2].directory, log=messages.append)
    builder = Builder()
    engine = cache.get_or_build(onnx, key, builder, validator).engine
    engine.write_bytes(b"\x00garbage")
    result = cache.get_or_build(onnx, key, builder, validator)
    assert result.built and builder.calls == 2 and validator(result.engine) is None
    assert any("cannot be used (not an engine (corrupt)); rebuilding" in m for m in messages)
    assert any("building a fp16 TensorRT engine" in m for m in messages)


def test_failing_build_gives_clear_error_and_leaves_no_engine(setup):
    onnx, key, cache = setup

    def broken(onnx_path: Path, engine_path: Path) -> None:
        engine_path.write_bytes(b"half")  # an unloadable result

    with pytest.raises(EngineError, match="freshly built engine does not load: not an engine"):
        cache.get_or_build(onnx, key, broken, validator)
    assert list(cache.directory.iterdir()) == []

    def crashing(onnx_path: Path, engine_path: Path) -> None:
        raise RuntimeError("out of memory")

    with pytest.raises(EngineError, match="out of memory.*onnxruntime"):
        cache.get_or_build(onnx, key, crashing, validator)
    assert list(cache.directory.iterdir()) == []
