"""The registry of procedural data-set recipes: a data set is (recipe, seed, count, size).

- ``basic``: rooms, corridors and streets of plain boxes, simple textures and Lambertian light (the first
  recipe; its frames never change, the geometry oracles and the filter benchmarks are built on it);
- ``realistic``: indoor layouts as a robot sees them, furniture from parts, natural-statistics textures,
  lamp light with shadows and contact darkening, camera response (``depth_ros.synthetic.realistic``).
"""

from __future__ import annotations

from collections.abc import Callable

from depth_ros.synthetic import generator, realistic
from depth_ros.synthetic.scene import Frame

Recipe = Callable[[int, int, int, int], Frame]  # (seed, index, width, height) -> frame

RECIPES: dict[str, Recipe] = {"basic": generator.sample, "realistic": realistic.sample}
DEFAULT_RECIPE = "realistic"


def recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown synthetic recipe {name!r}: choose one of {', '.join(RECIPES)}") from None
