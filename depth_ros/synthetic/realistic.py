"""The realistic recipe: indoor layouts as a robot's camera sees them, with exact metric depth.

What the basic recipe lacks and real indoor frames are full of (DESIGN.md §4: precise synthetic labels are
worth only as much as the scenes resemble the world):

- layouts: rooms and halls with the camera anywhere and facing any way (oblique walls, corners), close-up
  walls, desks seen from above with clutter at real sizes, corridors, outdoor streets with kerbs and poles;
- furniture built from parts (a table is a top on four legs, the floor shows under it; chairs have backs);
- flat things on walls that are texture, not depth (posters, whiteboards, doors, windows, skirting);
- surfaces with natural-image statistics (1/f noise, wood grain, tiles) in indoor palettes;
- light: a ceiling lamp falling off with distance, shadows of furniture, contact darkening in corners and
  under objects, windows and screens that glow, exposure, white balance and vignetting.

``sample(seed, index, width, height)`` is a pure function of its arguments, like the basic recipe's.
"""

from __future__ import annotations

import math

import numpy as np

from depth_ros.synthetic.generator import random_intrinsics
from depth_ros.synthetic.scene import Box, Frame, Material, PinholeCamera, Plane, Scene, render

SCENE_KINDS = ("room", "desk", "wall", "corridor", "hall", "outdoor")
SCENE_WEIGHTS = (0.3, 0.2, 0.15, 0.1, 0.1, 0.15)

# Small things on tables, desks and cabinets (width, height, depth in metres).
CLUTTER = {
    "mug": (0.09, 0.1, 0.09), "can": (0.07, 0.12, 0.07), "bottle": (0.08, 0.26, 0.08), "book": (0.2, 0.04, 0.28),
    "book_upright": (0.04, 0.24, 0.17), "keyboard": (0.45, 0.025, 0.15), "laptop": (0.33, 0.02, 0.23),
    "carton": (0.3, 0.2, 0.25), "phone": (0.2, 0.09, 0.2), "tape": (0.11, 0.05, 0.11), "plant": (0.25, 0.45, 0.25),
    "box": (0.16, 0.12, 0.1), "lamp": (0.15, 0.4, 0.15), "binder": (0.06, 0.3, 0.28),
}


# ---------------------------------------------------------------------------------------------- materials

def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def _tone(rng: np.random.Generator, value: tuple[float, float], saturation: tuple[float, float],
          hue: float | None = None) -> tuple[float, float, float]:
    h = rng.random() if hue is None else (hue + rng.normal(0, 0.03)) % 1.0
    return _hsv(h, float(rng.uniform(*saturation)), float(rng.uniform(*value)))


def _darker(colour: tuple[float, float, float], factor: float) -> tuple[float, float, float]:
    return tuple(float(c) * factor for c in colour)  # type: ignore[return-value]


# Surfaces that are one tone and a darker copy of it: (value range, saturation range, hue or None (any), how much
# darker the second colour is, texture, texture scale range in cycles per metre).
SIMPLE_SURFACES: dict[str, tuple[tuple[float, float], tuple[float, float], float | None, float, str,
                                 tuple[float, float]]] = {
    "floor_wood": ((0.3, 0.7), (0.3, 0.6), 0.08, 0.7, "wood", (0.8, 3.0)),
    "floor_tiles": ((0.35, 0.85), (0.0, 0.25), None, 0.6, "tiles", (1.5, 4.0)),
    "wood": ((0.3, 0.85), (0.15, 0.55), 0.08, 0.75, "wood", (1.0, 4.0)),
    "white": ((0.75, 0.95), (0.0, 0.08), None, 0.9, "fractal", (0.5, 2.0)),
    "dark": ((0.03, 0.2), (0.0, 0.3), None, 0.6, "fractal", (0.5, 3.0)),
    "metal": ((0.35, 0.75), (0.0, 0.1), None, 0.85, "grain", (1.0, 5.0)),
}


def _simple_surface(rng: np.random.Generator, kind: str, angle: float) -> Material:
    value, saturation, hue, darker, texture, scale = SIMPLE_SURFACES[kind]
    base = _tone(rng, value, saturation, hue=hue)
    return Material(base, _darker(base, darker), texture, float(rng.uniform(*scale)), angle)


def _surface(rng: np.random.Generator, kind: str) -> Material:
    """A material typical of ``kind``: wall, ceiling, floor, wood, fabric, metal, plastic, paper, ..."""
    angle = float(rng.uniform(-np.pi, np.pi))
    if kind == "wall":
        base = _tone(rng, (0.55, 0.92), (0.0, 0.25)) if rng.random() < 0.8 else _tone(rng, (0.4, 0.85), (0.3, 0.7))
        texture = str(rng.choice(["plain", "fractal", "noise"], p=(0.3, 0.5, 0.2)))
        return Material(base, _darker(base, rng.uniform(0.85, 0.97)), texture, float(rng.uniform(0.2, 1.5)), angle)
    if kind == "ceiling":
        base = _tone(rng, (0.7, 0.95), (0.0, 0.08))
        texture = str(rng.choice(["plain", "tiles", "fractal"], p=(0.4, 0.35, 0.25)))
        return Material(base, _darker(base, 0.75), texture, float(rng.uniform(0.8, 1.7)))
    if kind == "floor":
        choice = rng.choice(["wood", "tiles", "carpet", "concrete"], p=(0.3, 0.3, 0.2, 0.2))
        if choice in ("wood", "tiles"):
            return _simple_surface(rng, f"floor_{choice}", angle)
        base = _tone(rng, (0.2, 0.6), (0.0, 0.3))
        return Material(base, _darker(base, rng.uniform(0.5, 0.8)), "fractal", float(rng.uniform(0.2, 2.0)), angle)
    if kind in SIMPLE_SURFACES:
        return _simple_surface(rng, kind, angle)
    if kind == "whiteboard":
        ink = _tone(rng, (0.2, 0.6), (0.6, 1.0))
        return Material(_tone(rng, (0.88, 0.98), (0.0, 0.04)), ink, "marker", float(rng.uniform(0.5, 2.0)), angle)
    if kind == "window":
        sky = _tone(rng, (0.85, 1.0), (0.05, 0.3), hue=0.58)
        return Material(sky, _darker(sky, 0.8), "fractal", 0.3, 0.0, float(rng.uniform(0.6, 1.4)))
    if kind == "screen":
        if rng.random() < 0.5:
            return Material((0.02, 0.02, 0.03), (0.05, 0.05, 0.06), "plain")
        glow = _tone(rng, (0.4, 0.9), (0.0, 0.6))
        return Material(glow, _darker(glow, 0.4), "fractal", float(rng.uniform(4.0, 10.0)), 0.0, 0.4)
    # fabric, plastic, paper, cardboard: anything goes, with natural-image statistics
    base = _tone(rng, (0.1, 0.9), (0.0, 0.8))
    other = _tone(rng, (0.1, 0.9), (0.0, 0.8)) if rng.random() < 0.3 else _darker(base, rng.uniform(0.5, 0.9))
    texture = str(rng.choice(["plain", "fractal", "noise", "stripes", "checker"], p=(0.25, 0.45, 0.15, 0.1, 0.05)))
    return Material(base, other, texture, float(np.exp(rng.uniform(math.log(0.5), math.log(12.0)))), angle)


# ---------------------------------------------------------------------------------------------- furniture

def _rotate(x: float, z: float, yaw: float) -> tuple[float, float]:
    """A point in an object's frame (x right, z ahead) turned by yaw about Y, as the renderer's boxes are."""
    c, s = math.cos(yaw), math.sin(yaw)
    return c * x + s * z, -s * x + c * z


def _part(centre: tuple[float, float, float], local: tuple[float, float, float], half: tuple[float, float, float],
          yaw: float, material: Material) -> Box:
    dx, dz = _rotate(local[0], local[2], yaw)
    return Box((centre[0] + dx, centre[1] + local[1], centre[2] + dz), half, yaw, material)


def table(rng: np.random.Generator, x: float, z: float, yaw: float, width: float, depth: float,
          height: float) -> tuple[list[Box], float]:
    """A top on four legs (the floor shows underneath): the boxes and the top's height."""
    top = _surface(rng, str(rng.choice(["wood", "white", "dark", "metal"], p=(0.45, 0.3, 0.15, 0.1))))
    legs = _surface(rng, str(rng.choice(["metal", "dark", "wood"])))
    thickness = float(rng.uniform(0.02, 0.05))
    leg = float(rng.uniform(0.025, 0.05))
    boxes = [_part((x, 0.0, z), (0.0, height - thickness / 2, 0.0), (width / 2, thickness / 2, depth / 2), yaw, top)]
    inset = float(rng.uniform(0.03, 0.12))
    for sx in (-1, 1):
        for sz in (-1, 1):
            boxes.append(_part((x, 0.0, z), (sx * (width / 2 - inset), (height - thickness) / 2,
                                             sz * (depth / 2 - inset)),
                               (leg, (height - thickness) / 2, leg), yaw, legs))
    return boxes, height


def chair(rng: np.random.Generator, x: float, z: float, yaw: float) -> list[Box]:
    seat_h = float(rng.uniform(0.42, 0.5))
    w = float(rng.uniform(0.4, 0.52))
    body = _surface(rng, str(rng.choice(["fabric", "dark", "wood", "metal"], p=(0.4, 0.3, 0.2, 0.1))))
    frame = _surface(rng, "metal")
    boxes = [_part((x, 0.0, z), (0.0, seat_h, 0.0), (w / 2, 0.04, w / 2), yaw, body),
             _part((x, 0.0, z), (0.0, seat_h + 0.3, -w / 2 + 0.03), (w / 2, 0.26, 0.03), yaw, body)]
    if rng.random() < 0.5:  # one central column (an office chair), else four legs
        boxes.append(_part((x, 0.0, z), (0.0, seat_h / 2, 0.0), (0.03, seat_h / 2, 0.03), yaw, frame))
        boxes.append(_part((x, 0.0, z), (0.0, 0.03, 0.0), (0.3, 0.03, 0.05), yaw, frame))
        boxes.append(_part((x, 0.0, z), (0.0, 0.03, 0.0), (0.05, 0.03, 0.3), yaw, frame))
    else:
        for sx in (-1, 1):
            for sz in (-1, 1):
                boxes.append(_part((x, 0.0, z), (sx * (w / 2 - 0.03), seat_h / 2, sz * (w / 2 - 0.03)),
                                   (0.02, seat_h / 2, 0.02), yaw, frame))
    return boxes


def cabinet(rng: np.random.Generator, x: float, z: float, yaw: float, kind: str) -> tuple[list[Box], float]:
    """Solid furniture (cabinet, shelf, sofa, bed, fridge, drawers): a body with a front of doors or books."""
    sizes = {"cabinet": (0.8, 0.9, 0.45), "tall_cabinet": (0.8, 1.9, 0.45), "shelf": (0.9, 1.9, 0.32),
             "sofa": (1.9, 0.8, 0.9), "bed": (1.5, 0.5, 2.0), "fridge": (0.65, 1.8, 0.65),
             "drawers": (0.45, 0.6, 0.5), "crate": (0.6, 0.45, 0.4)}
    w, h, d = (s * float(rng.uniform(0.8, 1.25)) for s in sizes[kind])
    body = _surface(rng, str(rng.choice(["wood", "white", "dark", "metal", "fabric"], p=(0.3, 0.25, 0.15, 0.1, 0.2))))
    boxes = [_part((x, 0.0, z), (0.0, h / 2, 0.0), (w / 2, h / 2, d / 2), yaw, body)]
    if kind in ("shelf", "tall_cabinet", "cabinet", "drawers"):
        rows = max(1, int(round(h / float(rng.uniform(0.3, 0.45)))))
        for r in range(rows):  # books or drawer fronts: thin panels on the front face
            y = (r + 0.5) * h / rows
            panel = _surface(rng, "fabric" if kind == "shelf" else str(rng.choice(["wood", "white", "metal"])))
            boxes.append(_part((x, 0.0, z), (0.0, y, d / 2 + 0.005), (w / 2 - 0.03, h / rows / 2 - 0.02, 0.008),
                               yaw, panel))
    if kind == "sofa":
        boxes.append(_part((x, 0.0, z), (0.0, h + 0.2, -d / 2 + 0.1), (w / 2, 0.25, 0.1), yaw, body))
    return boxes, h


def clutter_on(rng: np.random.Generator, x: float, z: float, yaw: float, width: float, depth: float,
               height: float, count: int) -> list[Box]:
    """``count`` small objects standing on a top of (width, depth) at ``height``, centred at (x, z)."""
    names = list(CLUTTER)
    boxes = []
    for _ in range(count):
        name = names[rng.integers(len(names))]
        w, h, d = (s * float(rng.uniform(0.8, 1.25)) for s in CLUTTER[name])
        lx = float(rng.uniform(-width / 2 + w / 2, width / 2 - w / 2)) if width > w else 0.0
        lz = float(rng.uniform(-depth / 2 + d / 2, depth / 2 - d / 2)) if depth > d else 0.0
        turn = yaw + float(rng.normal(0, 0.4))
        boxes.append(_part((x, height, z), (lx, h / 2, lz), (w / 2, h / 2, d / 2), turn, _surface(rng, "object")))
    if rng.random() < 0.5:  # a monitor on a stand at the back
        lx = float(rng.uniform(-width / 4, width / 4))
        screen_w, screen_h = float(rng.uniform(0.45, 0.65)), float(rng.uniform(0.3, 0.4))
        lift = float(rng.uniform(0.08, 0.15))
        back = -depth / 2 + 0.15
        frame = _surface(rng, "dark")
        boxes.append(_part((x, height, z), (lx, lift / 2, back), (0.03, lift / 2, 0.03), yaw, frame))
        boxes.append(_part((x, height, z), (lx, 0.01, back), (0.12, 0.01, 0.1), yaw, frame))
        boxes.append(_part((x, height, z), (lx, lift + screen_h / 2, back), (screen_w / 2, screen_h / 2, 0.025), yaw,
                           frame))
        boxes.append(_part((x, height, z), (lx, lift + screen_h / 2, back + 0.03),
                           (screen_w / 2 - 0.02, screen_h / 2 - 0.02, 0.004), yaw, _surface(rng, "screen")))
    return boxes


# ---------------------------------------------------------------------------------------------- rooms

def _wall_items(rng: np.random.Generator, axis: int, offset: float, facing: float, along: tuple[float, float],
                ceiling: float, count: int) -> list[Box]:
    """Flat things on one wall (posters, boards, doors, windows, skirting): depth barely changes, colour does."""
    boxes = []
    other = 2 if axis == 0 else 0

    def flat(centre_along: float, y: float, w: float, h: float, thick: float, material: Material) -> Box:
        centre = [0.0, y, 0.0]
        centre[axis] = offset + facing * thick / 2
        centre[other] = centre_along
        half = [0.0, h / 2, 0.0]
        half[axis] = thick / 2
        half[other] = w / 2
        return Box(tuple(centre), tuple(half), 0.0, material)  # type: ignore[arg-type]

    if rng.random() < 0.6:  # skirting board along the whole wall
        boxes.append(flat(0.5 * (along[0] + along[1]), 0.05, along[1] - along[0], 0.1, 0.015,
                          _surface(rng, str(rng.choice(["white", "wood", "dark"])))))
    for _ in range(count):
        kind = str(rng.choice(["poster", "board", "door", "window", "frame"], p=(0.3, 0.2, 0.2, 0.15, 0.15)))
        if kind == "door":
            door = _surface(rng, str(rng.choice(["wood", "white", "metal"])))
            w, h, y, thick, material = 0.9, 2.05, 1.025, 0.03, door
        elif kind == "window":
            w, h = float(rng.uniform(0.8, 2.0)), float(rng.uniform(0.8, 1.5))
            y, thick, material = float(rng.uniform(0.9, 1.2)) + h / 2, 0.01, _surface(rng, "window")
        elif kind == "board":
            w, h = float(rng.uniform(0.9, 2.0)), float(rng.uniform(0.6, 1.2))
            y, thick, material = float(rng.uniform(0.9, 1.3)) + h / 2, 0.02, _surface(rng, "whiteboard")
        else:
            w, h = float(rng.uniform(0.2, 1.0)), float(rng.uniform(0.25, 1.0))
            y, thick, material = float(rng.uniform(1.0, 1.6)) + h / 2, 0.01, _surface(rng, "object")
        if y + h / 2 > ceiling - 0.05 or along[1] - along[0] < w + 0.1:
            continue
        c = float(rng.uniform(along[0] + w / 2, along[1] - w / 2))
        boxes.append(flat(c, y, w, h, thick, material))
        if kind in ("board", "window", "frame") and rng.random() < 0.6:  # its frame: a few mm proud of the wall
            boxes.append(flat(c, y, w + 0.04, h + 0.04, thick * 0.5, _surface(rng, str(rng.choice(["metal", "dark"])))))
    return boxes


def _furnish(rng: np.random.Generator, half_x: float, half_z: float, count: int,
             keep_clear: tuple[float, float, float]) -> list[Box]:
    """Furniture against the walls and in the room, none within keep_clear (x, z, radius) of the camera."""
    boxes: list[Box] = []
    for _ in range(count):
        kind = str(rng.choice(["table", "chair", "cabinet", "tall_cabinet", "shelf", "sofa", "bed", "fridge",
                               "drawers", "crate"], p=(0.2, 0.2, 0.12, 0.08, 0.1, 0.06, 0.04, 0.04, 0.08, 0.08)))
        against_wall = kind not in ("chair", "table", "crate") or rng.random() < 0.3
        if against_wall:
            wall = int(rng.integers(4))
            yaw = (0.0, math.pi, math.pi / 2, -math.pi / 2)[wall]  # its front faces into the room
            depth = 0.5
            if wall == 0:
                x, z = float(rng.uniform(-half_x, half_x)), -half_z + depth
            elif wall == 1:
                x, z = float(rng.uniform(-half_x, half_x)), half_z - depth
            elif wall == 2:
                x, z = -half_x + depth, float(rng.uniform(-half_z, half_z))
            else:
                x, z = half_x - depth, float(rng.uniform(-half_z, half_z))
            yaw += float(rng.normal(0, 0.03))
        else:
            x, z = float(rng.uniform(-half_x, half_x)) * 0.8, float(rng.uniform(-half_z, half_z)) * 0.8
            yaw = float(rng.uniform(-np.pi, np.pi))
        if math.hypot(x - keep_clear[0], z - keep_clear[1]) < keep_clear[2]:
            continue
        if kind == "table":
            w, d, h = float(rng.uniform(0.8, 1.8)), float(rng.uniform(0.6, 1.0)), float(rng.uniform(0.7, 0.78))
            parts, top = table(rng, x, z, yaw, w, d, h)
            boxes += parts + clutter_on(rng, x, z, yaw, w, d, top, int(rng.integers(0, 7)))
        elif kind == "chair":
            boxes += chair(rng, x, z, yaw)
        else:
            parts, top = cabinet(rng, x, z, yaw, kind)
            boxes += parts
            if kind in ("cabinet", "drawers", "crate") and rng.random() < 0.5:
                boxes += clutter_on(rng, x, z, yaw, 0.6, 0.35, top, int(rng.integers(1, 4)))
    return boxes


def _room_shell(rng: np.random.Generator, half_x: float, half_z: float, ceiling: float,
                items_per_wall: int) -> tuple[list[Plane], list[Box], tuple[float, float, float]]:
    """Floor, ceiling and walls, the flat things on the walls, and the ceiling lamp (its position, returned)."""
    wall = _surface(rng, "wall")
    walls = [wall if rng.random() < 0.75 else _surface(rng, "wall") for _ in range(4)]
    planes = [Plane(1, 0.0, 1.0, _surface(rng, "floor")), Plane(1, ceiling, -1.0, _surface(rng, "ceiling")),
              Plane(2, -half_z, 1.0, walls[0]), Plane(2, half_z, -1.0, walls[1]),
              Plane(0, -half_x, 1.0, walls[2]), Plane(0, half_x, -1.0, walls[3])]
    boxes: list[Box] = []
    for axis, offset, facing, extent in ((2, -half_z, 1.0, half_x), (2, half_z, -1.0, half_x),
                                         (0, -half_x, 1.0, half_z), (0, half_x, -1.0, half_z)):
        count = int(rng.integers(0, items_per_wall + 1))
        boxes += _wall_items(rng, axis, offset, facing, (-extent, extent), ceiling, count)
    # The ceiling lamp: a glowing panel, and the point light just below it.
    lamp = (float(rng.uniform(-0.7, 0.7)) * half_x, ceiling - 0.02, float(rng.uniform(-0.7, 0.7)) * half_z)
    glow = Material((1.0, 0.98, 0.92), (1.0, 0.98, 0.92), "plain", 1.0, 0.0, 1.5)
    boxes.append(Box(lamp, (0.3, 0.02, 0.3), 0.0, glow))
    return planes, boxes, lamp


def _lit(rng: np.random.Generator, planes: list[Plane], boxes: list[Box], lamp: tuple[float, float, float],
         height: float, kind: str) -> Scene:
    return Scene(planes, boxes, light_dir=(float(rng.normal(0, 0.6)), 1.0, float(rng.normal(0, 0.6))),
                 ambient=float(rng.uniform(0.2, 0.45)), kind=kind, lamp=(lamp[0], lamp[1] - 0.1, lamp[2]),
                 lamp_power=float(rng.uniform(0.4, 1.1)), lamp_reference=height, sun=float(rng.uniform(0.0, 0.4)),
                 shadows=True, occlusion=float(rng.uniform(0.3, 0.6)), occlusion_radius=float(rng.uniform(0.12, 0.35)))


def _indoor(rng: np.random.Generator, kind: str) -> tuple[Scene, tuple[float, float, float], float, float]:
    """(scene, camera position, yaw, pitch) for an indoor kind."""
    if kind == "hall":
        half_x, half_z, ceiling = float(rng.uniform(5, 15)), float(rng.uniform(5, 20)), float(rng.uniform(3.5, 8))
    elif kind == "corridor":
        half_x, half_z = float(rng.uniform(0.8, 1.6)), float(rng.uniform(6, 25))
        ceiling = float(rng.uniform(2.3, 3.2))
    else:
        half_x, half_z = float(rng.uniform(1.5, 4.5)), float(rng.uniform(1.5, 5.0))
        ceiling = float(rng.uniform(2.4, 3.2))
    planes, boxes, lamp = _room_shell(rng, half_x, half_z, ceiling, 3 if kind != "hall" else 5)
    height = float(rng.uniform(0.15, 1.8))
    pitch = float(rng.uniform(-0.2, 0.5))
    if kind == "corridor":
        position = (float(rng.uniform(-0.5, 0.5)) * half_x, height, float(rng.uniform(-0.9, 0.5)) * half_z)
        yaw = float(rng.normal(0, 0.25)) + (math.pi if rng.random() < 0.3 else 0.0)
        boxes += _furnish(rng, half_x, half_z, int(rng.integers(0, 5)), (position[0], position[2], 0.8))
    elif kind == "wall":
        # Close to one wall, looking along it at an angle: the D435-style view of a wall receding.
        distance = float(rng.uniform(0.3, 1.5))
        angle = float(rng.uniform(0.25, 1.3)) * (1 if rng.random() < 0.5 else -1)  # to the wall's normal
        position = (float(rng.uniform(-0.5, 0.5)) * half_x, height, half_z - distance)
        yaw = angle  # the wall at +Z faces -Z; yaw 0 looks straight at it
        pitch = float(rng.uniform(-0.25, 0.35))
        boxes += _wall_items(rng, 2, half_z, -1.0, (-half_x, half_x), ceiling, 4)
        boxes += _furnish(rng, half_x, half_z, int(rng.integers(2, 8)), (position[0], position[2], 0.35))
    else:
        position = (float(rng.uniform(-0.85, 0.85)) * half_x, height, float(rng.uniform(-0.85, 0.85)) * half_z)
        yaw = float(rng.uniform(-np.pi, np.pi))
        count = int(rng.integers(3, 14)) if kind == "room" else int(rng.integers(6, 25))
        boxes += _furnish(rng, half_x, half_z, count, (position[0], position[2], 0.6))
    return _lit(rng, planes, boxes, lamp, ceiling, kind), position, yaw, pitch


def _desk(rng: np.random.Generator) -> tuple[Scene, tuple[float, float, float], float, float]:
    """A desk or table in front of a standing or seated camera pitched down at it (the TUM-style view)."""
    hall = rng.random() < 0.3
    half_x = float(rng.uniform(5, 12)) if hall else float(rng.uniform(1.8, 4.0))
    half_z = float(rng.uniform(5, 12)) if hall else float(rng.uniform(2.0, 4.5))
    ceiling = float(rng.uniform(3.5, 7)) if hall else float(rng.uniform(2.4, 3.2))
    planes, boxes, lamp = _room_shell(rng, half_x, half_z, ceiling, 3)
    height = float(rng.uniform(0.9, 1.7))
    position = (float(rng.uniform(-0.4, 0.4)) * half_x, height, float(rng.uniform(-0.6, -0.1)) * half_z)
    yaw = float(rng.normal(0, 0.35))
    w, d, h = float(rng.uniform(1.0, 2.0)), float(rng.uniform(0.6, 1.0)), float(rng.uniform(0.7, 0.78))
    gap = float(rng.uniform(0.3, 0.9))
    dx, dz = math.sin(yaw) * (gap + d / 2), math.cos(yaw) * (gap + d / 2)
    turn = yaw + float(rng.normal(0, 0.15))
    x, z = position[0] + dx, position[2] + dz
    parts, top = table(rng, x, z, turn, w, d, h)
    boxes += parts + clutter_on(rng, x, z, turn, w, d, top, int(rng.integers(4, 16)))
    boxes += _furnish(rng, half_x, half_z, int(rng.integers(2, 10)), (position[0], position[2], 0.6))
    boxes = [b for b in boxes if math.hypot(b.centre[0] - x, b.centre[2] - z) > 0.8 or b in parts
             or b.centre[1] > h]  # nothing from the room inside the desk
    pitch = float(rng.uniform(0.3, 0.95))
    return _lit(rng, planes, boxes, lamp, ceiling, "desk"), position, yaw, pitch


def _outdoor(rng: np.random.Generator) -> tuple[Scene, tuple[float, float, float], float, float]:
    """A street: road and pavements with kerbs, building fronts, walls, poles, cars, people."""
    asphalt = Material(_tone(rng, (0.15, 0.4), (0.0, 0.1)), _tone(rng, (0.1, 0.3), (0.0, 0.1)), "fractal",
                       float(rng.uniform(0.3, 2.0)))
    planes = [Plane(1, 0.0, 1.0, asphalt)]
    boxes: list[Box] = []
    road = float(rng.uniform(3.0, 7.0))
    pavement = float(rng.uniform(1.5, 4.0))
    length = 120.0
    for side in (-1, 1):
        kerb = _surface(rng, "metal")
        boxes.append(Box((side * (road + pavement / 2), 0.06, length / 2 - 10), (pavement / 2, 0.06, length / 2),
                         0.0, Material(kerb.colour_a, kerb.colour_b, "tiles", float(rng.uniform(1.0, 3.0)))))
        z = -10.0
        while z < length - 10:  # building fronts of different depths and heights
            w = float(rng.uniform(6, 20))
            h = float(rng.uniform(3, 20))
            front = road + pavement + float(rng.uniform(0, 3))
            facade = _surface(rng, "wall")
            boxes.append(Box((side * (front + 5), h / 2, z + w / 2), (5.0, h / 2, w / 2), 0.0, facade))
            for _ in range(int(rng.integers(0, 6))):  # windows and doors on the facade
                wy, wz = float(rng.uniform(0.5, max(0.6, h - 1.5))), float(rng.uniform(z + 0.8, z + w - 0.8))
                boxes.append(Box((side * (front - 0.01), wy + 0.6, wz), (0.02, 0.6, 0.5), 0.0,
                                 _surface(rng, str(rng.choice(["window", "dark"])))))
            z += w + float(rng.uniform(0, 4))
        for _ in range(int(rng.integers(2, 8))):  # poles and posts on the pavement
            pz = float(rng.uniform(0, 60))
            boxes.append(Box((side * (road + 0.4), 1.5, pz), (0.06, 1.5 * float(rng.uniform(0.6, 2)), 0.06), 0.0,
                             _surface(rng, "metal")))
    for _ in range(int(rng.integers(0, 8))):  # parked and driving cars
        cx = float(rng.uniform(-road + 1, road - 1))
        cz = float(rng.uniform(3, 60))
        body = _surface(rng, "object")
        boxes.append(Box((cx, 0.75, cz), (0.9, 0.45, 2.2), float(rng.normal(0, 0.1)), body))
        boxes.append(Box((cx, 1.35, cz - 0.2), (0.8, 0.3, 1.1), float(rng.normal(0, 0.1)), _surface(rng, "screen")))
    for _ in range(int(rng.integers(0, 6))):  # people
        boxes.append(Box((float(rng.uniform(-road - pavement, road + pavement)), 0.87, float(rng.uniform(2, 30))),
                         (0.25, 0.87, 0.17), float(rng.uniform(-np.pi, np.pi)), _surface(rng, "object")))
    sky = tuple(float(c) for c in np.clip(np.array([0.45, 0.6, 0.9]) * rng.uniform(0.7, 1.1), 0, 1))
    horizon = tuple(float(c) for c in np.clip(np.array([0.85, 0.88, 0.92]) * rng.uniform(0.8, 1.1), 0, 1))
    scene = Scene(planes, boxes, light_dir=(float(rng.normal(0, 0.7)), float(rng.uniform(0.3, 1.0)),
                                            float(rng.normal(0, 0.7))),
                  ambient=float(rng.uniform(0.3, 0.5)), sky=sky, kind="outdoor", sun=float(rng.uniform(0.6, 1.0)),
                  shadows=True, occlusion=float(rng.uniform(0.2, 0.4)), occlusion_radius=0.4,
                  sky_horizon=horizon)  # type: ignore[arg-type]
    position = (float(rng.uniform(-road + 0.5, road - 0.5)), float(rng.uniform(0.2, 2.0)), 0.0)
    return scene, position, float(rng.normal(0, 0.3)), float(rng.uniform(-0.1, 0.3))


def random_scene(rng: np.random.Generator, kind: str) -> tuple[Scene, tuple[float, float, float], float, float]:
    """(scene, camera position, yaw, pitch) of ``kind``."""
    if kind == "desk":
        return _desk(rng)
    if kind == "outdoor":
        return _outdoor(rng)
    return _indoor(rng, kind)


def _camera_response(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exposure, white balance and vignetting as a real camera applies them (in linear light)."""
    linear = (rgb.astype(np.float32) / 255.0) ** 2.2
    gain = float(np.exp(rng.normal(0.0, 0.3))) * np.exp(rng.normal(0.0, 0.06, 3)).astype(np.float32)
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    vignette = 1.0 - float(rng.uniform(0.0, 0.35)) * r2 / 2
    linear = linear * gain[None, None, :] * vignette[..., None]
    return (np.clip(linear, 0.0, 1.0) ** (1 / 2.2) * 255.0 + 0.5).astype(np.uint8)


def sample(seed: int, index: int, width: int, height: int, kind: str | None = None) -> Frame:
    """Frame ``index`` of the realistic data set ``seed``: a random layout, camera pose and intrinsics."""
    rng = np.random.default_rng([seed, index, 2])  # 2: never the basic recipe's stream for the same seed
    kind = kind or str(rng.choice(SCENE_KINDS, p=SCENE_WEIGHTS))
    scene, position, yaw, pitch = random_scene(rng, kind)
    fx, fy, cx, cy = random_intrinsics(rng, width, height)
    camera = PinholeCamera(width, height, fx, fy, cx, cy, position, yaw, pitch, float(rng.normal(0.0, 0.04)))
    frame = render(scene, camera, rng)
    return Frame(_camera_response(frame.rgb, rng), frame.depth, camera)
