"""Network definitions (torch), looked up by name.

``REGISTRY`` maps an architecture name (e.g. "depth_anything_v2_vits") to a builder returning a
``torch.nn.Module`` that maps a (N, 3, H, W) float32 normalised image to a (N, 1, H, W) map.
Modules register themselves with ``@register(name)``; importing this package imports the built-in
ones lazily via ``load_builtin()`` so that ``import depth_ros.nets`` stays cheap and torch-free.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

REGISTRY: dict[str, Callable[..., Any]] = {}

# Modules that define and register architectures (the students module may not exist in every checkout).
_BUILTIN_MODULES = ("depth_ros.nets.depth_anything_v2", "depth_ros.nets.students")


def register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: ``@register("my_net")`` on a builder function or class."""

    def wrap(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in REGISTRY and REGISTRY[name] is not builder:
            raise ValueError(f"network {name!r} is registered twice")
        REGISTRY[name] = builder
        return builder

    return wrap


# Alias for code written against the fallback registry name in the helper notes.
register_net = register
NETS = REGISTRY


def load_builtin() -> None:
    for module in _BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a real missing dependency inside the module: surface it
                raise


def build(name: str, **kwargs: Any) -> Any:
    load_builtin()
    if name not in REGISTRY:
        raise KeyError(f"unknown network {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**kwargs)
