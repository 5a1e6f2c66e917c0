"""The package's layers, checked on its source: every import goes down a layer (or stays in its own), no two
modules import each other (directly or round a loop), and the lower layers import no ROS, no file formats and
no runtimes. Deferred imports (inside functions, under TYPE_CHECKING) count: they are dependencies too.

The layer table below is the one README.md's "Map of the code" describes; a new module belongs to the layer of
its subpackage. Each check also runs on a small made-up package with a known violation, so it can fail.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Lowest first. A module may import modules of its own layer and of the layers before it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("depth_ros", "depth_ros.resources")),  # the version; where installed files are
    ("core", ("depth_ros.core",)),  # pure arrays: one frame's steps
    ("scenes and nets", ("depth_ros.synthetic", "depth_ros.nets")),  # procedural scenes; torch networks
    ("backends", ("depth_ros.backends",)),  # runtimes behind one protocol, engine cache, ONNX export
    ("pipeline", ("depth_ros.pipeline",)),  # DepthEstimator: a model + the per-frame path
    ("ros", ("depth_ros.ros",)),  # node, parameters, codecs, frame processor, diagnostics, DDS
    ("bags", ("depth_ros.bags",)),  # recorded data: bags and RGB-D samples
    ("training", ("depth_ros.training",)),  # the learning side's training loop and data
    ("cli", ("depth_ros.cli",)),  # the depth-ros commands
)

ROS = ("rclpy", "rosidl_runtime_py", "sensor_msgs", "std_msgs", "builtin_interfaces", "diagnostic_msgs",
       "lifecycle_msgs", "rcl_interfaces", "launch", "launch_ros", "ament_index_python")
FILE_FORMATS = ("rosbags", "onnx", "yaml", "safetensors")
RUNTIMES = ("onnxruntime", "tensorrt", "modelopt", "polygraphy")
# Third-party imports a layer must not make: (importer's subpackage, banned top-level packages, why).
BANNED: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("core", ROS + FILE_FORMATS + RUNTIMES, "the core is pure arrays"),
    ("synthetic", ROS + FILE_FORMATS + RUNTIMES + ("torch",), "scenes are numpy only"),
    ("nets", ROS + RUNTIMES, "networks are torch modules"),
    ("backends", ROS, "backends run without ROS"),
    ("pipeline", ROS, "the pipeline runs without ROS (bag tools, eval, benchmarks)"),
)
TORCH_IN_CORE = ("core.torch_ops",)  # the core's one torch module (the device twin of the steps)


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # a module of the package, or a third-party top-level name
    line: int


def package_modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under root/package (a package is its __init__)."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path], package: str) -> list[Import]:
    """Every import in one file: package modules resolved to the module imported (``from pkg import mod`` is
    pkg.mod), anything else to its top-level name."""
    found = []
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        for target in targets:
            if target == package or target.startswith(package + "."):
                while target not in modules:  # depth_ros.x.Name -> depth_ros.x
                    target = target.rpartition(".")[0]
            else:
                target = target.split(".")[0]
            if target != name:
                found.append(Import(name, target, node.lineno))
    return found


def layer_of(module: str, layers: tuple[tuple[str, tuple[str, ...]], ...]) -> int:
    best, rank = -1, -1
    for index, (_, prefixes) in enumerate(layers):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    if rank < 0:
        raise AssertionError(f"{module} is in no layer: add its subpackage to LAYERS (and to README's map)")
    return rank


def upward_imports(root: Path, package: str, layers: tuple[tuple[str, tuple[str, ...]], ...]) -> list[str]:
    modules = package_modules(root, package)
    problems = []
    for name, path in modules.items():
        for imp in imports_of(name, path, modules, package):
            if imp.target in modules and layer_of(imp.target, layers) > layer_of(name, layers):
                problems.append(f"{path.relative_to(root)}:{imp.line}: {name} ({layers[layer_of(name, layers)][0]}) "
                                f"imports {imp.target} ({layers[layer_of(imp.target, layers)][0]}), a higher layer")
    return problems


def import_cycles(root: Path, package: str) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), i.e. modules that import each other."""
    modules = package_modules(root, package)
    graph = {name: sorted({i.target for i in imports_of(name, path, modules, package) if i.target in modules})
             for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for name in graph:
        if name not in index:
            visit(name)
    return cycles


def banned_imports(root: Path, package: str) -> list[str]:
    modules = package_modules(root, package)
    problems = []
    for name, path in modules.items():
        relative = name.removeprefix(package + ".")
        for imp in imports_of(name, path, modules, package):
            if imp.target in modules:
                continue
            for prefix, banned, why in BANNED:
                if (relative == prefix or relative.startswith(prefix + ".")) and imp.target in banned:
                    problems.append(f"{path.relative_to(root)}:{imp.line}: {name} imports {imp.target} ({why})")
            if relative.startswith("core.") and imp.target == "torch" and relative not in TORCH_IN_CORE:
                problems.append(f"{path.relative_to(root)}:{imp.line}: {name} imports torch (the core's torch code "
                                f"is {', '.join(TORCH_IN_CORE)} alone)")
    return problems


# ----------------------------------------------------------------------------- the package


def test_every_import_goes_down_a_layer() -> None:
    assert upward_imports(REPO, "depth_ros", LAYERS) == []


def test_no_module_imports_itself_round_a_loop() -> None:
    assert import_cycles(REPO, "depth_ros") == []


def test_lower_layers_import_no_ros_file_formats_or_runtimes() -> None:
    assert banned_imports(REPO, "depth_ros") == []


def test_every_module_is_in_a_layer_and_the_top_level_holds_no_stray_modules() -> None:
    modules = package_modules(REPO, "depth_ros")
    for name in modules:
        layer_of(name, LAYERS)  # raises for a module outside every layer
    top_level = sorted(p.name for p in (REPO / "depth_ros").glob("*.py"))
    assert top_level == ["__init__.py", "pipeline.py", "resources.py"]


def test_the_layer_table_is_the_readme_map() -> None:
    """Each layer's packages are named in README.md's map of the code, in the same order."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Map of the code"):]
    end = section.find("\n## ", 4)
    section = section if end < 0 else section[:end]
    positions = []
    for _, prefixes in LAYERS[1:]:
        short = prefixes[0].removeprefix("depth_ros.")
        label = f"`{short}/`" if short != "pipeline" else "`pipeline.py`"
        assert label in section, f"README's map does not name {label}"
        positions.append(section.index(label))
    assert positions == sorted(positions), "README's map lists the layers in another order than LAYERS"


# ----------------------------------------------------------------------------- the checks can fail


def make_package(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / "pkg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


TOY_LAYERS = (("base", ("pkg",)), ("low", ("pkg.low",)), ("high", ("pkg.high",)))


@pytest.mark.parametrize("statement", [
    "from pkg.high.top import thing",  # module level
    "def f():\n    from pkg.high import top\n",  # deferred, resolved to the module
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.high.top\n",
    "from ..high.top import thing",  # relative
])
def test_an_upward_import_is_reported(tmp_path: Path, statement: str) -> None:
    make_package(tmp_path, {"__init__.py": "", "low/__init__.py": "", "low/step.py": statement + "\n",
                            "high/__init__.py": "", "high/top.py": "thing = 1\n"})
    problems = upward_imports(tmp_path, "pkg", TOY_LAYERS)
    assert len(problems) == 1 and "pkg.low.step (low) imports pkg.high.top (high)" in problems[0]


def test_a_downward_import_is_not_reported(tmp_path: Path) -> None:
    make_package(tmp_path, {"__init__.py": "", "low/__init__.py": "", "low/step.py": "thing = 1\n",
                            "high/__init__.py": "", "high/top.py": "from pkg.low.step import thing\n"})
    assert upward_imports(tmp_path, "pkg", TOY_LAYERS) == []


def test_a_cycle_within_one_layer_is_reported(tmp_path: Path) -> None:
    # The old pipeline <-> torch_pipeline pair: each imported the other inside a function.
    make_package(tmp_path, {"__init__.py": "", "low/__init__.py": "",
                            "low/a.py": "def f():\n    from pkg.low import b\n",
                            "low/b.py": "def g():\n    from pkg.low.c import x\n",
                            "low/c.py": "from pkg.low.a import f\nx = 1\n",
                            "low/d.py": "from pkg.low import a\n"})
    assert import_cycles(tmp_path, "pkg") == [["pkg.low.a", "pkg.low.b", "pkg.low.c"]]


def test_a_package_importing_its_modules_while_they_import_it_is_a_cycle(tmp_path: Path) -> None:
    # The old backends/__init__: it imported its backends, they imported the protocol from it.
    make_package(tmp_path, {"__init__.py": "", "low/__init__.py": "from pkg.low import impl\nclass Proto: ...\n",
                            "low/impl.py": "from pkg.low import Proto\n"})
    assert import_cycles(tmp_path, "pkg") == [["pkg.low", "pkg.low.impl"]]


def test_ros_in_the_core_is_reported(tmp_path: Path) -> None:
    make_package(tmp_path, {"__init__.py": "", "core/__init__.py": "", "core/x.py": "import rclpy.node\n",
                            "core/y.py": "def f():\n    import torch\n"})
    problems = banned_imports(tmp_path, "pkg")
    assert len(problems) == 2
    assert "pkg.core.x imports rclpy (the core is pure arrays)" in problems[0]
    assert "pkg.core.y imports torch" in problems[1]
