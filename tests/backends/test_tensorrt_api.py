"""Every TensorRT name the backend uses exists in TensorRT 10.3 (JetPack 6) and in 11.x (pip).

tests/data/tensorrt_api/tensorrt-*.json are the API surfaces of NVIDIA's real Python bindings of those
versions (tools/tensorrt_api_surface.py: every class, its attributes and pybind signatures). From each a
typed stub package is generated (return types from the signatures, Any elsewhere) and mypy checks the
backend against it, so a name that one generation lacks (TensorRT 11 removed BuilderFlag.FP16, layer
precisions, EXPLICIT_BATCH, ...) fails the suite rather than a user's first run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "tests" / "data" / "tensorrt_api").glob("tensorrt-*.json"))
BACKEND = "depth_ros/backends/tensorrt_backend.py"
# Protocol methods the manifests do not list (dir() without underscores), as the bindings define them.
DUNDERS = {
    "Dims": ["    def __getitem__(self, index: int) -> int: ...", "    def __len__(self) -> int: ..."],
    "IHostMemory": ["    def __buffer__(self, flags: int) -> memoryview: ..."],
}
RETURN = re.compile(r"->\s*(?:tensorrt_bindings\.)?tensorrt\.(\w+)\s*$")


def write_stub(manifest: Path, out: Path) -> str:
    """A ``tensorrt`` stub package for mypy from one API manifest; returns the TensorRT version."""
    data = json.loads(manifest.read_text())
    names: dict[str, list[str]] = data["names"]
    signatures: dict[str, list[str]] = data["signatures"]
    classes = {name for name in names if name and "." not in name}
    enums = set(data["enums"])
    lines = ["from typing import Any, ClassVar", "", "__version__: str"]
    for name in names.get("", []):
        if name.isidentifier() and name not in classes and name != "__version__":
            lines.append(f"{name}: Any")
    for cls in sorted(classes):
        lines += ["", f"class {cls}:", "    def __init__(self, *args: Any, **kwargs: Any) -> None: ..."]
        for attr in names[cls]:
            if not attr.isidentifier() or (attr in ("name", "value") and cls in enums):
                continue
            overloads = signatures.get(f"{cls}.{attr}")
            if cls in enums and not overloads:
                lines.append(f"    {attr}: ClassVar[{cls}]")
            elif overloads:
                returns = {m.group(1) if (m := RETURN.search(s)) else None for s in overloads}
                result = returns.pop() if len(returns) == 1 else None
                annotation = result if result in classes else ("bool" if all(s.endswith("-> bool")
                                                                            for s in overloads) else "Any")
                lines.append(f"    def {attr}(self, *args: Any, **kwargs: Any) -> {annotation}: ...")
            else:
                lines.append(f"    {attr}: Any")
        if cls in enums:
            lines += ["    name: str", "    value: int", "    def __int__(self) -> int: ..."]
        lines += DUNDERS.get(cls, [])
    package = out / "tensorrt"
    package.mkdir(parents=True)
    (package / "__init__.pyi").write_text("\n".join(lines) + "\n")
    return str(data["tensorrt_version"])


def mypy(stubs: Path, *files: str) -> list[str]:
    env = {"MYPYPATH": str(stubs), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "mypy", "--ignore-missing-imports", "--follow-imports", "silent",
                             "--cache-dir", str(stubs / ".mypy_cache"), *files],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return [line for line in result.stdout.splitlines() if ": error:" in line]


def test_manifests_are_the_two_supported_generations() -> None:
    versions = sorted(json.loads(m.read_text())["tensorrt_version"].split(".")[0] for m in MANIFESTS)
    assert versions == ["10", "11"], MANIFESTS


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.stem)
def test_backend_uses_only_names_this_tensorrt_has(manifest: Path, tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy is not installed (pip install mypy)")
    version = write_stub(manifest, tmp_path)
    # A positive control per generation: the weakly typed FP16 build of the old backend, and 10.x's
    # EXPLICIT_BATCH flag, exist in 10.3 and are gone in 11.x.
    control = tmp_path / "weak_typing.py"
    control.write_text("import tensorrt as trt\n\n\n"
                       "def build(config: trt.IBuilderConfig, layer: trt.ILayer) -> int:\n"
                       "    config.set_flag(trt.BuilderFlag.FP16)\n"
                       "    layer.precision = trt.DataType.FLOAT\n"
                       "    return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)\n")
    errors = mypy(tmp_path, BACKEND, "depth_ros/backends/mixed_precision.py", str(control))
    ours = [e for e in errors if e.startswith("depth_ros/")]
    assert ours == [], f"TensorRT {version}:\n" + "\n".join(ours)
    controls = [e for e in errors if "weak_typing.py" in e]
    if version.startswith("11."):
        assert any('"FP16"' in e for e in controls) and any('"EXPLICIT_BATCH"' in e for e in controls), errors
        assert any('"precision"' in e for e in controls), errors
    else:
        assert controls == [], controls
