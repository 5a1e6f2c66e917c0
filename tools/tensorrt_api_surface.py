#!/usr/bin/env python3
"""Write the Python API surface of the installed ``tensorrt`` module as a deterministic JSON manifest.

Run it inside an environment where ``import tensorrt`` works (no GPU is needed: the bindings only touch
CUDA when a Builder/Runtime is created, never at import). The manifest lets CPU-only tests check that
every TensorRT name our backend uses exists in a given TensorRT release::

    python tools/tensorrt_api_surface.py --output tests/data/tensorrt_api/tensorrt-11.4.json \\
        --note "tensorrt-cu12-bindings 11.4.0.106 wheel from PyPI"

Layout of the JSON::

    {"tensorrt_version": "11.4.0.106",
     "produced_by": {"packages": {"tensorrt-cu12-bindings": "11.4.0.106", ...}, "python": "3.12.1", ...},
     "enums": ["DataType", ...],                 # classes that are enums (have __members__)
     "names": {"": [module-level functions, constants and tensorrt submodules],
               "Builder": ["create_network", ...],
               "ILogger.Severity": ["ERROR", ...],  # nested classes, keyed by their access path
               ...},
     "signatures": {"Builder.create_network": ["create_network(self: ..., flags: int = 0) -> ..."], ...}}

Where only the bindings wheel installs (PyPI's tensorrt-cu12-libs fetches the libraries from NVIDIA's own
index), ``import tensorrt`` still works with no-op stand-ins for the three libraries tensorrt.so links:
nothing is called at import, so every name and docstring comes from the real bindings (each manifest's
``produced_by.note`` says how it was made).

Every list is sorted and every name is public (no leading underscore), so two runs against the same
TensorRT give byte-identical files.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import inspect
import json
import platform
import re
import sys
import types
from pathlib import Path
from typing import Any

# Nested classes deeper than this are not walked (TensorRT nests at most one level: ILogger.Severity).
MAX_DEPTH = 3


def public(obj: Any) -> list[str]:
    """Sorted public attribute names of ``obj`` (dir() without leading underscores)."""
    return sorted(name for name in dir(obj) if not name.startswith("_"))


def is_enum(cls: type) -> bool:
    """pybind11 enums (and Python enums) expose their members through ``__members__``."""
    return isinstance(getattr(cls, "__members__", None), dict | types.MappingProxyType)


def signatures(obj: Any) -> list[str]:
    """The overload signatures of a callable: pybind11 writes one "name(args) -> result" line per overload into
    the docstring (numbered "1. ", "2. " after an "Overloaded function." line); plain Python callables fall back
    to inspect.signature. Properties and other non-callables give []."""
    if not callable(obj) or isinstance(obj, type):
        return []
    name = getattr(obj, "__name__", None)
    doc = getattr(obj, "__doc__", None)
    if isinstance(name, str) and isinstance(doc, str):
        lines = [line.strip() for line in doc.splitlines()]
        overloaded = "Overloaded function." in lines
        prefix = r"\d+\. " if overloaded else ""
        pattern = re.compile("^" + prefix + "(" + re.escape(name) + r"\(.*)$")
        found = [match.group(1) for line in lines if (match := pattern.match(line))]
        if found:
            return found
    try:
        return [f"{name}{inspect.signature(obj)}"]
    except (TypeError, ValueError):
        return []


def _own_module(value: types.ModuleType, root: str) -> bool:
    return (
        value.__name__ == root or value.__name__.startswith(root + ".") or value.__name__.startswith(root + "_bindings")
    )


def walk_class(
    cls: type, path: str, names: dict[str, list[str]], sigs: dict[str, list[str]], enums: set[str], depth: int
) -> None:
    """Record ``cls`` under ``path``, then its method signatures and nested classes."""
    attrs = public(cls)
    names[path] = attrs
    if is_enum(cls):
        enums.add(path)
    for attr in attrs:
        try:
            value = inspect.getattr_static(cls, attr)
        except AttributeError:
            value = getattr(cls, attr, None)
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, type):
            if depth < MAX_DEPTH and f"{path}.{attr}" not in names:
                walk_class(value, f"{path}.{attr}", names, sigs, enums, depth + 1)
            continue
        found = signatures(value)
        if found:
            sigs[f"{path}.{attr}"] = found


def surface(module: types.ModuleType) -> dict[str, Any]:
    """The manifest body for ``module`` (names, enums, signatures)."""
    root = module.__name__
    names: dict[str, list[str]] = {}
    sigs: dict[str, list[str]] = {}
    enums: set[str] = set()
    top: list[str] = []
    for name in public(module):
        value = getattr(module, name)
        if isinstance(value, types.ModuleType) and not _own_module(value, root):
            continue  # stdlib modules that tensorrt's __init__ imports (ctypes, os, sys, warnings)
        if isinstance(value, type):
            walk_class(value, name, names, sigs, enums, 1)
            continue
        top.append(name)
        found = signatures(value)
        if found:
            sigs[name] = found
    names[""] = top
    return {
        "enums": sorted(enums),
        "names": {key: names[key] for key in sorted(names)},
        "signatures": {key: sigs[key] for key in sorted(sigs)},
    }


def installed_packages() -> dict[str, str]:
    """Installed distributions whose name mentions tensorrt (how this module got here)."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and "tensorrt" in name.lower():
            found[name.lower().replace("_", "-")] = dist.version
    return dict(sorted(found.items()))


def manifest(module: types.ModuleType, note: str | None) -> dict[str, Any]:
    produced_by: dict[str, Any] = {
        "tool": "tools/tensorrt_api_surface.py",
        "module": module.__name__,
        "packages": installed_packages(),
        "python": platform.python_version(),
    }
    if note:
        produced_by["note"] = note
    return {
        "tensorrt_version": str(getattr(module, "__version__", "unknown")),
        "produced_by": produced_by,
        **surface(module),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", "-o", type=Path, help="JSON file to write (default: stdout)")
    parser.add_argument("--module", default="tensorrt", help="module to describe (default: tensorrt)")
    parser.add_argument("--note", help="free text recorded under produced_by.note (how the module was installed)")
    args = parser.parse_args(argv)
    try:
        module = importlib.import_module(args.module)
    except ImportError as exc:
        print(f"cannot import {args.module}: {exc}", file=sys.stderr)
        return 1
    if getattr(module, "__version__", None) is None or getattr(module, "__file__", None) is None:
        # e.g. tensorrt-stubs alone installs tensorrt/ with only .pyi files: it imports as an empty namespace package.
        print(
            f"{args.module} imported from {list(getattr(module, '__path__', []))} but is not the real module "
            "(no __version__/__file__: a stub-only or namespace package?)",
            file=sys.stderr,
        )
        return 1
    text = json.dumps(manifest(module, args.note), indent=1, sort_keys=False) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(f"wrote {args.output} ({len(text)} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
