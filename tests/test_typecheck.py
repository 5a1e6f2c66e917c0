"""The TensorRT/CUDA code type-checks against tensorrt-stubs, so API misuse is caught without a GPU."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The TensorRT backend and the torch pipeline it feeds (CUDA paths that no CPU test executes).
CHECKED = ["depth_ros/backends/tensorrt_backend.py", "depth_ros/backends/mixed_precision.py",
           "depth_ros/backends/check.py", "depth_ros/backends/engine_cache.py", "depth_ros/core/torch_ops.py",
           "depth_ros/pipeline.py"]


@pytest.fixture(scope="module")
def stub_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mypy", reason="mypy is not installed (pip install mypy)")
    try:
        import tensorrt_stubs  # noqa: F401
    except ImportError:
        pytest.skip("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs)")
    site = Path(tensorrt_stubs.__file__).resolve().parents[1]
    # This run's own copy (concurrent runs must not rewrite each other's stubs under a shared path).
    out = tmp_path_factory.mktemp("tensorrt_stubs")
    # The stub package ships its .pyi files under the runtime's package names without py.typed, so mypy
    # is pointed at them through MYPYPATH. tensorrt-stubs 10.13 also declares a few plugin methods with a
    # parameter named 'in' (a keyword: a syntax error for mypy); rename those parameters in a copy.
    for package in ("tensorrt", "tensorrt_bindings"):
        shutil.copytree(site / package, out / package, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    bindings = out / "tensorrt_bindings" / "tensorrt.pyi"
    text = re.sub(r"([(,] ?)in: ", r"\1in_: ", bindings.read_text())
    # ... and add_scale_nd puts a parameter without a default after defaulted ones.
    text = text.replace("power: Weights = None, channel_axis: int)", "power: Weights = None, channel_axis: int = ...)")
    bindings.write_text(text)
    return out


def _mypy(stub_path: Path, *files: str) -> subprocess.CompletedProcess:
    env = {"MYPYPATH": str(stub_path), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "mypy", "--ignore-missing-imports", "--follow-imports", "silent",
                           "--cache-dir", str(stub_path / ".mypy_cache"), *files],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_tensorrt_code_typechecks_and_stubs_catch_misuse(stub_path, tmp_path):
    """One mypy run (checking the 10k-line stubs costs most of the time) over our TensorRT modules and a
    positive control: TensorRT 8's execute_async_v2 and a string as a device pointer must be reported."""
    bad = tmp_path / "bad_trt.py"
    bad.write_text("import tensorrt as trt\n\n\n"
                   "def run(context: trt.IExecutionContext, engine: trt.ICudaEngine) -> None:\n"
                   "    context.execute_async_v2([], 0)\n"
                   "    context.set_tensor_address(engine.get_tensor_name(0), 'not a pointer')\n")
    result = _mypy(stub_path, *CHECKED, str(bad))
    lines = result.stdout.splitlines()
    # The stubs themselves carry type errors (they shadow 'bool'); only syntax errors would stop the check.
    assert not [line for line in lines if "[syntax]" in line], result.stdout[-2000:]
    ours = [line for line in lines if line.startswith("depth_ros/")]
    assert ours == [], "\n".join(ours)
    control = [line for line in lines if "bad_trt.py" in line and "error" in line]
    assert any("execute_async_v2" in line for line in control), result.stdout[-2000:]
    assert any("set_tensor_address" in line for line in control), result.stdout[-2000:]
