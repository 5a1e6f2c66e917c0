"""Engine cache: key, hit/miss/rebuild logic, atomic entries, shape ranges, external data (no TensorRT needed:
the builder is injected)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from depth_ros.backends.engine_cache import (
    ENGINE_FILE,
    META_FILE,
    EngineCache,
    EngineError,
    EngineKey,
    external_data_files,
    file_sha256,
    model_sha256,
    profile_text,
)

MAGIC = b"ENGINE:"


class Builder:
    """Writes a small 'engine' naming the ONNX it came from into the entry; counts calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, onnx_path: Path, entry: Path) -> None:
        self.calls += 1
        (entry / ENGINE_FILE).write_bytes(MAGIC + onnx_path.read_bytes())


def validator(engine: Path) -> str | None:
    return None if engine.read_bytes().startswith(MAGIC) else "not an engine (corrupt)"


@pytest.fixture
def setup(tmp_path: Path):
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"graph-v1")
    key = EngineKey("NVIDIA Orin", "8.7", "10.3.0", file_sha256(onnx_file), "1x3x364x644", "fp16",
                    "strong+modelopt-0.47.0")
    return onnx_file, key, EngineCache(tmp_path / "engines", log=lambda message: None)


def test_key_covers_every_field():
    key = EngineKey("NVIDIA H100", "9.0", "10.13.0", "ab" * 32, "1x3x518x518", "fp16", "strong+modelopt-0.47.0")
    digests = {key.digest()}
    for field, value in [("gpu_name", "NVIDIA A100"), ("compute_capability", "8.0"), ("tensorrt_version", "11.4.0"),
                         ("onnx_sha256", "cd" * 32), ("input_shape", "1x3x364x644"), ("precision", "fp32"),
                         ("typing", "strong+modelopt-0.48.0")]:
        digests.add(replace(key, **{field: value}).digest())
    assert len(digests) == 8


def test_build_once_then_hit_and_contract_beside(setup):
    onnx_file, key, cache = setup
    builder = Builder()
    first = cache.get_or_build(onnx_file, key, builder, validator, contract_json='{"output_kind": "metric_depth"}')
    assert first.built and builder.calls == 1 and first.engine.read_bytes() == MAGIC + b"graph-v1"
    meta = json.loads((first.entry / META_FILE).read_text())
    assert meta["key"]["precision"] == "fp16" and meta["contract"] == {"output_kind": "metric_depth"}
    assert meta["engine_sha256"] == file_sha256(first.engine)
    second = cache.get_or_build(onnx_file, key, builder, validator)
    assert not second.built and builder.calls == 1 and second.engine == first.engine


def test_changed_onnx_or_precision_builds_a_new_engine(setup):
    onnx_file, key, cache = setup
    builder = Builder()
    cache.get_or_build(onnx_file, key, builder, validator)
    onnx_file.write_bytes(b"graph-v2")
    new_key = replace(key, onnx_sha256=file_sha256(onnx_file))
    result = cache.get_or_build(onnx_file, new_key, builder, validator)
    assert result.built and builder.calls == 2 and result.engine.read_bytes() == MAGIC + b"graph-v2"
    assert cache.get_or_build(onnx_file, replace(new_key, precision="fp32", typing="strong"), builder,
                              validator).built
    assert builder.calls == 3


def test_stale_metadata_is_a_miss(setup):
    onnx_file, key, cache = setup
    builder = Builder()
    result = cache.get_or_build(onnx_file, key, builder, validator)
    meta_path = result.entry / META_FILE
    meta = json.loads(meta_path.read_text())
    meta["key"]["tensorrt_version"] = "8.6.1"  # e.g. a copied cache from another machine
    meta_path.write_text(json.dumps(meta))
    assert cache.lookup(onnx_file, key) is None
    assert cache.get_or_build(onnx_file, key, builder, validator).built and builder.calls == 2


def test_entry_of_an_older_layout_is_a_miss(setup):
    """A meta.json without the 'typing' field (written before the strongly typed build) is not trusted."""
    onnx_file, key, cache = setup
    result = cache.get_or_build(onnx_file, key, Builder(), validator)
    meta_path = result.entry / META_FILE
    meta = json.loads(meta_path.read_text())
    del meta["key"]["typing"]
    meta_path.write_text(json.dumps(meta))
    assert cache.lookup(onnx_file, key) is None and list(cache.entries()) == []


def test_corrupt_engine_is_rebuilt_and_log_says_so(setup):
    onnx_file, key, _ = setup
    messages: list[str] = []
    cache = EngineCache(setup[2].directory, log=messages.append)
    builder = Builder()
    engine = cache.get_or_build(onnx_file, key, builder, validator).engine
    engine.write_bytes(b"\x00garbage")
    result = cache.get_or_build(onnx_file, key, builder, validator)
    assert result.built and builder.calls == 2 and validator(result.engine) is None
    assert any("cannot be used (not an engine (corrupt)); rebuilding" in m for m in messages)
    assert any("building a fp16 TensorRT engine" in m and "TensorRT 10.3.0" in m for m in messages)
    assert sorted(p.name for p in cache.directory.iterdir()) == [result.entry.name]  # the old entry is gone


def test_failing_build_gives_clear_error_and_leaves_no_entry(setup):
    onnx_file, key, cache = setup

    def broken(onnx_path: Path, entry: Path) -> None:
        (entry / ENGINE_FILE).write_bytes(b"half")  # an unloadable result

    with pytest.raises(EngineError, match="freshly built engine does not load: not an engine"):
        cache.get_or_build(onnx_file, key, broken, validator)
    assert list(cache.directory.iterdir()) == []

    def crashing(onnx_path: Path, entry: Path) -> None:
        (entry / "converted.onnx").write_bytes(b"converted, then the build ran out of memory")
        raise RuntimeError("out of memory")

    with pytest.raises(EngineError, match="out of memory.*onnxruntime"):
        cache.get_or_build(onnx_file, key, crashing, validator)
    assert list(cache.directory.iterdir()) == []


def test_a_build_killed_half_way_leaves_no_entry_and_the_next_run_builds(setup, tmp_path):
    """A process killed while its builder runs (a Jetson rebooted mid-build) leaves only its private
    partial directory, which no lookup ever reads; the next run builds a complete entry."""
    onnx_file, key, cache = setup
    ready = tmp_path / "builder-started"
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from depth_ros.backends.engine_cache import EngineCache, EngineKey, ENGINE_FILE
        key = EngineKey(**{json.dumps(key.__dict__)})
        def slow(onnx_path, entry):
            (entry / ENGINE_FILE).write_bytes(b"ENGINE:half")
            Path({str(ready)!r}).write_text("x")
            time.sleep(60)
        EngineCache({str(cache.directory)!r}, log=lambda m: None).get_or_build(
            Path({str(onnx_file)!r}), key, slow, lambda p: None)
    """)
    process = subprocess.Popen([sys.executable, "-c", script])
    try:
        for _ in range(600):
            if ready.exists():
                break
            assert process.poll() is None, "the building process ended early"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert cache.lookup(onnx_file, key) is None and list(cache.entries()) == []
    builder = Builder()
    result = cache.get_or_build(onnx_file, key, builder, validator)
    assert result.built and builder.calls == 1 and validator(result.engine) is None


def test_profile_ranges_cover_shapes_and_the_narrowest_is_found(setup):
    onnx_file, key, cache = setup
    builder = Builder()
    wide = replace(key, input_shape=profile_text((1, 3, 266, 350), (1, 3, 364, 490), (1, 3, 518, 700)))
    narrow = replace(key, input_shape=profile_text((1, 3, 364, 476), (1, 3, 364, 490), (1, 3, 378, 504)))
    exact = replace(key, input_shape=profile_text((1, 3, 392, 518), (1, 3, 392, 518), (1, 3, 392, 518)))
    for k in (wide, narrow, exact):
        cache.get_or_build(onnx_file, k, builder, validator)
    assert wide.covers((1, 3, 364, 490)) and not wide.covers((1, 3, 532, 490)) and not wide.covers((2, 3, 364, 490))
    assert key.profile() == ((1, 3, 364, 644),) * 3  # a static key's range is its one shape
    assert cache.find_covering(key, (1, 3, 364, 490))[0] == narrow
    assert cache.find_covering(key, (1, 3, 300, 400))[0] == wide
    assert cache.find_covering(key, (1, 3, 392, 518))[0] == exact
    assert cache.find_covering(key, (1, 3, 600, 800)) is None
    # built differently (another precision or TensorRT): never used for this key
    assert cache.find_covering(replace(key, precision="fp32", typing="strong"), (1, 3, 364, 490)) is None
    assert cache.find_covering(replace(key, tensorrt_version="11.4.0"), (1, 3, 364, 490)) is None


def _onnx_with_external_data(path: Path, weight: np.ndarray) -> None:
    """y = x * w with w stored in an external-data file beside the model (as torch exports > 2 GB models)."""
    w = numpy_helper.from_array(weight.astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (path.parent / "weights.bin").unlink(missing_ok=True)  # onnx.save appends to an existing data file
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
              size_threshold=0)


def test_model_digest_covers_external_data(tmp_path):
    """A re-export that changes only the weights file (the .onnx bytes stay the same) is a new model."""
    path = tmp_path / "model.onnx"
    _onnx_with_external_data(path, np.ones((1, 3, 4, 4)))
    assert external_data_files(path) == [tmp_path / "weights.bin"]
    onnx_bytes, first = path.read_bytes(), model_sha256(path)
    assert first != file_sha256(path)
    _onnx_with_external_data(path, np.full((1, 3, 4, 4), 2.0))
    assert path.read_bytes() == onnx_bytes  # the graph file alone cannot tell the two apart
    assert model_sha256(path) != first
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(EngineError, match="weights.bin, which does not exist"):
        model_sha256(path)
    small = tmp_path / "small.onnx"
    _onnx_with_external_data(small, np.ones((1, 3, 4, 4)))
    onnx.save(onnx.load(str(small)), str(tmp_path / "inline.onnx"))  # weights inside the file
    assert model_sha256(tmp_path / "inline.onnx") == file_sha256(tmp_path / "inline.onnx")
