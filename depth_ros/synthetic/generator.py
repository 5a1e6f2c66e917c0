"""Random scenes and cameras: rooms, corridors and outdoor ground planes with objects at realistic sizes.

``sample(seed, index, width, height)`` is a pure function of its arguments, so a data set is its recipe
(seed, count, size) and workers can render frames in any order.
"""

from __future__ import annotations

import math

import numpy as np

from depth_ros.synthetic.scene import TEXTURES, Box, Frame, Material, PinholeCamera, Plane, Scene, render

BASIC_TEXTURES = TEXTURES[:5]  # the basic recipe draws from these only (its frames never change)
SCENE_KINDS = ("room", "corridor", "outdoor")
SCENE_WEIGHTS = (0.5, 0.2, 0.3)

# Furniture-like objects (width, height, depth in metres) and how much each size may vary.
INDOOR_OBJECTS = {
    "table": (1.2, 0.75, 0.8), "desk": (1.4, 0.74, 0.7), "chair": (0.45, 0.9, 0.45), "cabinet": (0.6, 1.8, 0.45),
    "shelf": (0.9, 2.0, 0.35), "sofa": (2.0, 0.85, 0.9), "bed": (1.6, 0.55, 2.0), "box": (0.45, 0.4, 0.45),
    "bin": (0.35, 0.6, 0.35), "pillar": (0.4, 2.6, 0.4), "fridge": (0.7, 1.8, 0.7),
}
OUTDOOR_OBJECTS = {
    "car": (1.8, 1.5, 4.5), "van": (2.0, 2.2, 5.2), "building": (10.0, 8.0, 10.0), "wall": (8.0, 2.0, 0.3),
    "bench": (1.6, 0.8, 0.5), "kiosk": (2.5, 2.6, 2.5), "post": (0.2, 3.0, 0.2), "container": (2.4, 2.6, 6.0),
    "hedge": (4.0, 1.2, 1.0), "person": (0.5, 1.75, 0.35),
}


def _colour(rng: np.random.Generator) -> tuple[float, float, float]:
    base = rng.uniform(0.05, 0.95)
    tint = rng.normal(0.0, 0.15, 3)
    return tuple(float(np.clip(base + t, 0.02, 1.0)) for t in tint)  # type: ignore[return-value]


def _material(rng: np.random.Generator, scale_range: tuple[float, float] = (0.5, 4.0)) -> Material:
    a = _colour(rng)
    b = _colour(rng) if rng.random() < 0.7 else tuple(float(c) * rng.uniform(0.5, 0.9) for c in a)
    texture = str(rng.choice(BASIC_TEXTURES, p=(0.15, 0.15, 0.15, 0.35, 0.2)))
    return Material(a, b, texture, float(np.exp(rng.uniform(*np.log(scale_range)))))  # type: ignore[arg-type]


def _place_objects(rng: np.random.Generator, catalogue: dict[str, tuple[float, float, float]], count: int,
                   x_range: tuple[float, float], z_range: tuple[float, float], camera_xz: tuple[float, float],
                   keep_clear: float) -> list[Box]:
    names = list(catalogue)
    boxes = []
    for _ in range(count):
        w, h, d = catalogue[names[rng.integers(len(names))]]
        size = np.array([w, h, d]) * rng.uniform(0.75, 1.3, 3)
        x = rng.uniform(*x_range)
        z = rng.uniform(*z_range)
        if math.hypot(x - camera_xz[0], z - camera_xz[1]) < keep_clear + 0.5 * max(size[0], size[2]):
            continue  # not on top of the camera
        lift = 0.0 if rng.random() < 0.85 else rng.uniform(0.3, 1.0)  # a few shelves/wall units off the floor
        boxes.append(Box((x, lift + size[1] / 2, z), tuple(size / 2), float(rng.uniform(-np.pi, np.pi)),
                         _material(rng)))
    return boxes


def random_intrinsics(rng: np.random.Generator, width: int, height: int) -> tuple[float, float, float, float]:
    """Horizontal field of view 45–100°, square-ish pixels, principal point near the centre."""
    hfov = math.radians(rng.uniform(45.0, 100.0))
    fx = 0.5 * width / math.tan(0.5 * hfov)
    fy = fx * rng.uniform(0.98, 1.02)
    cx = (width - 1) / 2 + rng.uniform(-0.04, 0.04) * width
    cy = (height - 1) / 2 + rng.uniform(-0.04, 0.04) * height
    return fx, fy, cx, cy


def random_scene(rng: np.random.Generator, kind: str) -> tuple[Scene, tuple[float, float, float], float]:
    """A scene of ``kind``, a camera position inside it and a sensible camera height."""
    if kind in ("room", "corridor"):
        if kind == "room":
            half_x, half_z = rng.uniform(1.5, 5.0), rng.uniform(1.5, 6.0)
        else:
            half_x, half_z = rng.uniform(0.7, 1.6), rng.uniform(6.0, 20.0)
        ceiling = rng.uniform(2.3, 3.5)
        wall = _material(rng)
        planes = [
            Plane(1, 0.0, 1.0, _material(rng, (1.0, 6.0))),  # floor (visible from above)
            Plane(1, ceiling, -1.0, _material(rng)),
            Plane(0, -half_x, 1.0, wall), Plane(0, half_x, -1.0, wall),
            Plane(2, -half_z, 1.0, _material(rng)), Plane(2, half_z, -1.0, _material(rng)),
        ]
        cam = (rng.uniform(-0.6, 0.6) * half_x, rng.uniform(0.15, 1.9), rng.uniform(-0.8, 0.2) * half_z)
        count = int(rng.integers(0, 4 if kind == "corridor" else 14))
        boxes = _place_objects(rng, INDOOR_OBJECTS, count, (-half_x, half_x), (-half_z, half_z), (cam[0], cam[2]), 0.4)
        light = (rng.normal(0, 0.5), 1.0, rng.normal(0, 0.5))
        return Scene(planes, boxes, light, float(rng.uniform(0.25, 0.6)), None, kind), cam, cam[1]
    planes = [Plane(1, 0.0, 1.0, _material(rng, (0.3, 3.0)))]
    cam = (0.0, rng.uniform(0.2, 2.0), 0.0)
    count = int(rng.integers(4, 25))
    boxes = _place_objects(rng, OUTDOOR_OBJECTS, count, (-40.0, 40.0), (-10.0, 60.0), (0.0, 0.0), 1.5)
    sky = tuple(float(c) for c in np.clip(np.array([0.55, 0.7, 0.95]) * rng.uniform(0.6, 1.1)
                                          + rng.normal(0, 0.05, 3), 0, 1))
    light = (rng.normal(0, 0.7), rng.uniform(0.3, 1.0), rng.normal(0, 0.7))
    return Scene(planes, boxes, light, float(rng.uniform(0.3, 0.55)), sky, "outdoor"), cam, cam[1]  # type: ignore[arg-type]


def sample(seed: int, index: int, width: int, height: int, kind: str | None = None) -> Frame:
    """Frame ``index`` of the data set ``seed``: a random scene, camera pose and intrinsics, rendered."""
    rng = np.random.default_rng([seed, index])
    kind = kind or str(rng.choice(SCENE_KINDS, p=SCENE_WEIGHTS))
    scene, position, _ = random_scene(rng, kind)
    fx, fy, cx, cy = random_intrinsics(rng, width, height)
    yaw = rng.uniform(-0.5, 0.5) if kind != "outdoor" else rng.uniform(-np.pi, np.pi)
    if kind == "outdoor":
        yaw = rng.uniform(-0.6, 0.6)  # objects are placed mostly ahead (+Z)
    camera = PinholeCamera(width, height, fx, fy, cx, cy, position, float(yaw),
                           float(rng.uniform(-0.15, 0.45)), float(rng.normal(0.0, 0.03)))
    return render(scene, camera, rng)


def sequence(seed: int, count: int, width: int, height: int, rate_hz: float = 15.0, speed: float = 0.0,
             yaw_rate: float = 0.0, kind: str | None = None) -> list[Frame]:
    """``count`` frames of ONE random scene (``sample``'s scene, intrinsics and start pose for ``seed``)
    seen by a camera that moves ahead along its heading at ``speed`` m/s and turns at ``yaw_rate`` rad/s,
    ``rate_hz`` frames per second: a sequence with exact depth for temporal filtering."""
    rng = np.random.default_rng([seed, 0])
    kind = kind or str(rng.choice(SCENE_KINDS, p=SCENE_WEIGHTS))
    scene, position, _ = random_scene(rng, kind)
    fx, fy, cx, cy = random_intrinsics(rng, width, height)
    yaw = rng.uniform(-0.5, 0.5) if kind != "outdoor" else rng.uniform(-0.6, 0.6)
    pitch, roll = float(rng.uniform(-0.15, 0.45)), float(rng.normal(0.0, 0.03))
    frames = []
    x, y, z = position
    for index in range(count):
        heading = yaw + yaw_rate * index / rate_hz
        camera = PinholeCamera(width, height, fx, fy, cx, cy, (x, y, z), float(heading), pitch, roll)
        frames.append(render(scene, camera, np.random.default_rng([seed, 1, index])))
        step = speed / rate_hz
        x, z = x + step * math.sin(heading), z + step * math.cos(heading)
    return frames
