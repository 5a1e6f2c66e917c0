"""Startup correctness check and backend 'auto' fallback, on CPU with real runtimes.

The torch backend (a real Depth Anything V2 checkpoint) is checked against ONNX Runtime running the
checkpoint's own ONNX export. Deliberately wrong backends — real backends with one bug each, the bugs
users of TensorRT wrappers report (a stale output buffer, a channel-order mix-up, FP16 overflow that an
FP32 rebuild cures) — must be caught.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from oracles import random_dav2_checkpoint

from depth_ros.backends import (
    BACKENDS,
    BackendOptions,
    ModelLoadError,
    create_backend,
    register_backend,
)
from depth_ros.backends.check import (
    BackendChecker,
    BackendCheckError,
    compare_with_onnxruntime,
    probe_images,
    probe_tensors,
    relative_error,
)
from depth_ros.backends.torch_backend import TorchBackend
from depth_ros.core.contract import InputSpec, read_contract_from_onnx_metadata

SIZE = (182, 238)  # network input (height, width): a 4:3 camera at shorter side 182, multiples of 14


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_dav2_checkpoint(tmp_path_factory.mktemp("check") / "dav2_vits_random.pth", seed=3)


@pytest.fixture(scope="module")
def torch_backend(checkpoint: Path) -> TorchBackend:
    return TorchBackend(checkpoint, BackendOptions(device="cpu", num_threads=2))


class StaleBuffer(TorchBackend):
    """Returns the first frame's output for every frame (an output buffer that is never written again)."""

    _first: np.ndarray | None = None

    def infer(self, tensor: Any) -> np.ndarray:
        if self._first is None:
            self._first = super().infer(tensor)
        return self._first


class SwappedChannels(TorchBackend):
    """Feeds BGR to an RGB model (an input binding read in the wrong layout)."""

    def infer(self, tensor: Any) -> np.ndarray:
        return super().infer(np.ascontiguousarray(tensor[:, ::-1]))


class OverflowingFp16(TorchBackend):
    """Wrong by 30 % in bands (what an FP16 engine with an overflowing LayerNorm gives) until rebuilt."""

    precise = False
    rebuilds = 0

    def more_precise(self) -> bool:
        if self.precise:
            return False
        self.precise, self.rebuilds = True, self.rebuilds + 1
        return True

    def infer(self, tensor: Any) -> np.ndarray:
        out = super().infer(tensor)
        if self.precise:
            return out
        rows = np.arange(out.shape[-2])[:, None]
        return out * (1.0 + 0.3 * (np.sin(rows / 3.0) > -0.5))  # two thirds of the rows 30 % off


def test_probe_images_are_distinct_deterministic_and_textured() -> None:
    first, second = probe_images(*SIZE)
    assert first.shape == (182, 238, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, probe_images(*SIZE)[0])
    assert np.abs(first.astype(int) - second.astype(int)).mean() > 10  # a stale buffer cannot pass as the second
    assert first.std() > 20  # edges and texture, not a flat image
    tensors = probe_tensors(_spec(), *SIZE)
    assert [t.shape for t in tensors] == [(1, 3, 182, 238)] * 2 and all(t.dtype == np.float32 for t in tensors)


def _spec() -> InputSpec:
    """Depth Anything V2's preprocessing (the torch backend's contract)."""
    return InputSpec(518, 518, "keep_aspect", "rgb", 1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 14)


def _input_spec(backend: TorchBackend) -> InputSpec:
    return read_contract_from_onnx_metadata(backend.metadata(), "checkpoint").input


def test_relative_error_floors_near_zero_references() -> None:
    reference = np.array([1.0, 2.0, 4.0, 0.0])
    error = relative_error(np.array([1.01, 2.0, 3.0, 0.001]), reference)
    np.testing.assert_allclose(error[:3], [0.01, 0.0, 0.25])
    assert error[3] == pytest.approx(0.001 / (0.01 * 1.5))  # floor: 1 % of the median magnitude (1.5)


def test_torch_backend_agrees_with_its_own_onnx_export(torch_backend: TorchBackend, checkpoint: Path) -> None:
    messages: list[str] = []
    checker = BackendChecker(torch_backend, checkpoint, _input_spec(torch_backend), "fail",
                             info=messages.append, warn=messages.append)
    assert checker.status.startswith("pending")
    checker(SIZE)
    assert checker.status.startswith("ok (median ")
    result = compare_with_onnxruntime(torch_backend, checkpoint, _spec(), SIZE, 0.02, 0.25)
    # The same float32 network in two runtimes: rounding-level differences only.
    assert result.ok and result.median_error < 1e-4 and result.max_error < 1e-2, result
    assert any("agrees with ONNX Runtime on the CPU" in m for m in messages)
    checker(SIZE)  # once per input size: a second call does not run it again
    assert len(messages) == 1


@pytest.mark.parametrize("wrong", [StaleBuffer, SwappedChannels])
def test_a_wrong_backend_is_caught(wrong: type[TorchBackend], checkpoint: Path) -> None:
    backend = wrong(checkpoint, BackendOptions(device="cpu", num_threads=2))
    spec = _input_spec(backend)
    result = compare_with_onnxruntime(backend, checkpoint, spec, SIZE, 0.02, 0.25)
    assert not result.ok, result
    with pytest.raises(BackendCheckError, match=r"differs from ONNX Runtime on the CPU \(median [0-9.]+ %, max "
                                                r"[0-9.e+]+ %; limits: median 2 %, max 25 %\).*backend 'onnxruntime'"):
        BackendChecker(backend, checkpoint, spec, "fail")(SIZE)
    # 'rebuild' cannot help a backend without a more precise build: it fails too
    with pytest.raises(BackendCheckError):
        BackendChecker(backend, checkpoint, spec, "rebuild")(SIZE)
    warnings: list[str] = []
    kept = BackendChecker(backend, checkpoint, spec, "warn", warn=warnings.append)
    kept(SIZE)  # runs anyway
    assert kept.status.startswith("FAILED, kept because backend_check is 'warn'")
    assert len(warnings) == 1 and "its depth may be wrong" in warnings[0]


def test_rebuild_policy_rebuilds_at_fp32_and_checks_again(checkpoint: Path) -> None:
    backend = OverflowingFp16(checkpoint, BackendOptions(device="cpu", num_threads=2))
    spec = _input_spec(backend)
    warnings: list[str] = []
    checker = BackendChecker(backend, checkpoint, spec, "rebuild", warn=warnings.append, info=lambda m: None)
    checker(SIZE)
    assert backend.rebuilds == 1 and checker.status.startswith("ok after an FP32 rebuild (median ")
    assert "FP16 had median" in checker.status and "rebuilt at FP32" in warnings[0]
    # 'fail' does not try to rebuild
    strict = OverflowingFp16(checkpoint, BackendOptions(device="cpu", num_threads=2))
    with pytest.raises(BackendCheckError):
        BackendChecker(strict, checkpoint, spec, "fail")(SIZE)
    assert strict.rebuilds == 0


def test_a_failed_size_keeps_failing_without_rerunning(checkpoint: Path) -> None:
    backend = SwappedChannels(checkpoint, BackendOptions(device="cpu", num_threads=2))
    checker = BackendChecker(backend, checkpoint, _input_spec(backend), "fail")
    with pytest.raises(BackendCheckError) as first:
        checker(SIZE)
    with pytest.raises(BackendCheckError) as second:
        checker(SIZE)
    assert second.value is first.value
    assert checker.status.startswith("FAILED (median")


def test_unknown_policy_is_refused(torch_backend: TorchBackend, checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="rebuild, warn, fail, off"):
        BackendChecker(torch_backend, checkpoint, _spec(), "sometimes")


# ----------------------------------------------------------------------------- backend 'auto'


@pytest.fixture
def failing_accelerator() -> Iterator[list[Path]]:
    """A backend preferred over every other that cannot load any model (a TensorRT whose build fails)."""
    calls: list[Path] = []

    def factory(path: Path, options: BackendOptions) -> Any:
        calls.append(path)
        raise ModelLoadError("building the engine failed: out of memory")

    register_backend("failing_accelerator", factory, lambda: None, priority=1000)
    try:
        yield calls
    finally:
        del BACKENDS["failing_accelerator"]


def test_auto_falls_back_with_one_warning_and_a_named_backend_is_strict(failing_accelerator, tmp_path) -> None:
    from oracles import make_contract, save_oracle  # what test_pipeline re-exported: importable from here alone

    path = save_oracle(tmp_path, np.full((6, 8), 3.0, np.float32), make_contract("metric_depth", 6, 8), (6, 8))
    warnings: list[str] = []
    backend = create_backend(path, "auto", BackendOptions(device="cpu"), warn=warnings.append)
    assert backend.name == "onnxruntime" and failing_accelerator == [path]
    assert len(warnings) == 1
    assert "failing_accelerator could not load" in warnings[0] and "out of memory" in warnings[0]
    assert "using onnxruntime" in warnings[0]
    np.testing.assert_array_equal(np.asarray(backend.infer(np.zeros((1, 3, 6, 8), np.float32))), 3.0)
    with pytest.raises(ModelLoadError, match="out of memory"):
        create_backend(path, "failing_accelerator")


def test_auto_runs_a_checkpoint_on_torch_and_names_why(checkpoint: Path) -> None:
    """No ONNX Runtime for a .pth: auto moves on to torch, saying so once."""
    warnings: list[str] = []
    backend = create_backend(checkpoint, "auto", BackendOptions(device="cpu"), warn=warnings.append)
    assert backend.name == "torch"
    assert len(warnings) == 1 and "onnxruntime could not load" in warnings[0] and "using torch" in warnings[0]


def test_auto_reports_every_failure_when_none_loads(failing_accelerator, tmp_path) -> None:
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError) as info:
        create_backend(path, "auto", warn=lambda m: None)
    text = str(info.value)
    assert "no backend could load" in text and "failing_accelerator: building the engine failed" in text
    assert "onnxruntime: onnxruntime could not load" in text and "torch: backend 'torch' runs checkpoints" in text


# ----------------------------------------------------------------------------- through a live node


def test_live_node_falls_back_to_torch_and_checks_it_on_the_first_frame(depth_node, checkpoint: Path) -> None:
    """backend 'auto' with a checkpoint: ONNX Runtime cannot load it, the node says so and runs torch; the torch
    backend has a dynamic input size, so its check runs on the first frame's network input (518x686 for 4:3)
    and its result is in diagnostics before that frame's depth is published."""
    from oracles import camera_info, rgb_image

    process, client = depth_node({"model": str(checkpoint), "backend": "auto", "backend_check": "fail",
                                  "num_threads": 2})
    before = client.latest_diagnostics(timeout=20.0)
    assert before["backend"] == "torch" and before["backend_check"].startswith("pending"), before
    assert "onnxruntime could not load" in before["backend_fallback"], before
    rgb = probe_images(96, 128)[0]
    out = client.send(rgb_image(rgb), camera_info(128, 96, 100.0, 100.0, 63.5, 47.5), 10**9, wanted=("depth",),
                      timeout=240.0)
    assert out.depth.height == 96 and out.depth.width == 128
    diag = client.latest_diagnostics(timeout=20.0)
    assert diag["backend_check"].startswith("ok (median "), diag
    assert "backend_check: backend 'torch' at input 518x686 agrees with ONNX Runtime" in process.output()
