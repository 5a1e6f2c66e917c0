"""The realistic recipe and the renderer's opt-in realism: light never touches the depth labels, the frustum
cull is exact, shadows and contact darkening fall where the geometry puts them, furniture from parts leaves
the floor visible under a table, and frames are deterministic and varied."""

from __future__ import annotations

import math

import numpy as np
import pytest

from depth_ros.synthetic import realistic
from depth_ros.synthetic.recipes import RECIPES, recipe
from depth_ros.synthetic.scene import (
    Box,
    Material,
    PinholeCamera,
    Plane,
    Scene,
    _intersect_boxes,
    _intersect_planes,
    pixel_rays,
    render,
)

GREY = Material((0.5, 0.5, 0.5), (0.3, 0.3, 0.3), "fractal", 1.0)
W, H, FX, FY, CX, CY = 160, 120, 140.0, 142.0, 79.5, 59.5


def _lit(scene: Scene) -> Scene:
    scene.lamp, scene.lamp_power, scene.lamp_reference = (0.0, 3.0, 3.0), 1.0, 3.0
    scene.shadows, scene.occlusion, scene.sun = True, 0.5, 0.3
    return scene


def test_realism_changes_the_image_never_the_depth() -> None:
    """Floor depth under a camera pitched down follows the ground-plane formula with the lamp, shadows and
    occlusion on, bit for bit the depth of the plain render."""
    h, pitch = 1.2, math.radians(30.0)
    camera = PinholeCamera(W, H, FX, FY, CX, CY, position=(0.0, h, 0.0), pitch=pitch)
    boxes = [Box((0.3, 0.4, 2.5), (0.3, 0.4, 0.3), 0.4, GREY)]
    plain = render(Scene([Plane(1, 0.0, 1.0, GREY)], boxes), camera)
    lit = render(_lit(Scene([Plane(1, 0.0, 1.0, GREY)], boxes)), camera)
    np.testing.assert_array_equal(plain.depth, lit.depth)
    assert not np.array_equal(plain.rgb, lit.rgb)
    y_n = (np.arange(H, dtype=np.float64)[:, None] - CY) / FY
    inverse = np.broadcast_to((y_n * math.cos(pitch) + math.sin(pitch)) / h, (H, W))
    floor = (inverse > 0) & (np.abs(lit.depth - 1.0 / np.where(inverse > 0, inverse, 1.0)) < 1e-4)
    assert floor.mean() > 0.5  # most of the image is floor at exactly the formula's depth


def test_frustum_cull_keeps_every_hit() -> None:
    """Render's depth (boxes culled to the frustum) equals ray casting against every box."""
    rng = np.random.default_rng(5)
    boxes = [Box(tuple(rng.uniform([-8, 0, -8], [8, 2, 8])), tuple(rng.uniform(0.05, 1.0, 3)),
                 float(rng.uniform(-3, 3)), GREY) for _ in range(120)]
    planes = [Plane(1, 0.0, 1.0, GREY)]
    for yaw in (0.0, 1.3, -2.5):
        camera = PinholeCamera(W, H, FX, FY, CX, CY, position=(0.2, 1.0, 0.1), yaw=yaw, pitch=0.2, roll=0.05)
        dirs = pixel_rays(camera) @ camera.rotation().T
        origin = np.asarray(camera.position)
        t_box = _intersect_boxes(boxes, origin, dirs)[0]
        t_plane = _intersect_planes(planes, origin, dirs)[0]
        expected = np.minimum(t_box, t_plane).reshape(H, W).astype(np.float32)
        np.testing.assert_array_equal(render(Scene(planes, boxes), camera).depth, expected)


def test_box_shadows_the_floor_under_it_from_the_lamp() -> None:
    """A lamp straight above a raised slab: the floor under the slab is darker than the floor beside it."""
    camera = PinholeCamera(W, H, FX, FY, CX, CY, position=(0.0, 2.0, 0.0), pitch=math.radians(60))
    slab = Box((0.0, 1.0, 1.2), (0.25, 0.02, 0.25), 0.0, GREY)
    plain = Material((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "plain")
    scene = Scene([Plane(1, 0.0, 1.0, plain)], [slab], ambient=0.2, lamp=(0.0, 2.5, 1.2), lamp_power=1.0,
                  lamp_reference=2.5, sun=0.0, shadows=True)
    frame = render(scene, camera)
    no_shadow = render(Scene([Plane(1, 0.0, 1.0, plain)], [slab], ambient=0.2, lamp=(0.0, 2.5, 1.2),
                             lamp_power=1.0, lamp_reference=2.5, sun=0.0, shadows=False), camera)

    def pixel(x: float, z: float) -> tuple[int, int]:  # where the floor point (x, 0, z) is seen
        p = camera.rotation().T @ (np.array([x, 0.0, z]) - np.asarray(camera.position))
        return int(round(FY * p[1] / p[2] + CY)), int(round(FX * p[0] / p[2] + CX))

    # The shadow of a 0.5 m slab 1 m up, from a lamp 2.5 m up: 0.5 · 2.5 / 1.5 ≈ 0.83 m wide, centred at z = 1.2.
    under = pixel(0.0, 1.2 + 0.3)  # in the shadow, beyond the slab as seen from the camera
    beside = pixel(0.8, 1.2 + 0.3)
    assert frame.depth[under] > 2.0 and frame.depth[beside] > 2.0  # both floor, not the slab
    assert int(frame.rgb[under].mean()) < int(no_shadow.rgb[under].mean()) - 20
    assert abs(int(frame.rgb[beside].mean()) - int(no_shadow.rgb[beside].mean())) <= 1


def test_contact_darkening_in_a_corner() -> None:
    """Occlusion darkens the floor where it meets a wall and leaves it alone a metre away; a poster on the wall
    (a flat box) is not darkened by the wall behind it."""
    plain = Material((0.6, 0.6, 0.6), (0.6, 0.6, 0.6), "plain")
    poster = Box((0.0, 1.0, 3.0 - 0.005), (0.4, 0.3, 0.005), 0.0, plain)
    planes = [Plane(1, 0.0, 1.0, plain), Plane(2, 3.0, -1.0, plain)]
    camera = PinholeCamera(W, H, FX, FY, CX, CY, position=(0.0, 1.0, 0.0), pitch=math.radians(15))
    dark = render(Scene(planes, [poster], ambient=1.0, lamp=(0.0, 2.0, 1.0), occlusion=0.6), camera)
    flat = render(Scene(planes, [poster], ambient=1.0, lamp=(0.0, 2.0, 1.0), occlusion=0.0), camera)

    def pixel(point: tuple[float, float, float]) -> tuple[int, int]:
        p = camera.rotation().T @ (np.array(point) - np.asarray(camera.position))
        return int(round(FY * p[1] / p[2] + CY)), int(round(FX * p[0] / p[2] + CX))

    corner, open_floor, on_poster = pixel((0.0, 0.0, 2.97)), pixel((0.0, 0.0, 2.0)), pixel((0.0, 1.0, 2.99))
    assert int(dark.rgb[corner].mean()) < int(flat.rgb[corner].mean()) - 15
    assert abs(int(dark.rgb[open_floor].mean()) - int(flat.rgb[open_floor].mean())) <= 3
    assert abs(int(dark.rgb[on_poster].mean()) - int(flat.rgb[on_poster].mean())) <= 3


def test_table_from_parts_shows_the_floor_under_its_top() -> None:
    rng = np.random.default_rng(0)
    boxes, top = realistic.table(rng, 0.0, 2.0, 0.0, 1.2, 0.8, 0.75)
    assert top == 0.75 and len(boxes) == 5
    camera = PinholeCamera(W, H, FX, FY, CX, CY, position=(0.0, 0.3, 0.0))  # low, looking under the top
    frame = render(Scene([Plane(1, 0.0, 1.0, GREY), Plane(2, 6.0, -1.0, GREY)], boxes), camera)
    # Straight ahead at the camera's height lies the gap between the legs: the wall 6 m away shows through.
    assert frame.depth[int(round(CY)), int(round(CX))] == pytest.approx(6.0, rel=1e-5)
    # Just above the top's height, the top's front edge at z = 1.6 hides the wall.
    p_top = (0.74 - 0.3) / 1.6
    assert frame.depth[int(round(CY - FY * p_top)) + 1, int(round(CX))] == pytest.approx(1.6, rel=1e-3)


@pytest.mark.parametrize("kind", realistic.SCENE_KINDS)
def test_every_kind_renders_plausible_varied_frames(kind: str) -> None:
    frames = [realistic.sample(11, i, 128, 96, kind) for i in range(4)]
    again = realistic.sample(11, 2, 128, 96, kind)
    assert np.array_equal(frames[2].rgb, again.rgb) and np.array_equal(frames[2].depth, again.depth)
    for f in frames:
        finite = np.isfinite(f.depth)
        assert finite.mean() > (0.3 if kind == "outdoor" else 0.99)  # indoors every ray hits something
        assert f.depth[finite].min() > 0.02
        assert f.rgb.std() > 3 and f.rgb.mean() > 20  # neither flat nor black
    assert len({round(float(np.nanmedian(np.where(np.isfinite(f.depth), f.depth, np.nan))), 3) for f in frames}) == 4


def test_desk_views_look_down_at_a_near_top() -> None:
    """The desk kind is the TUM-style view: most of the lower image is within reach (under 2 m)."""
    near = [np.nanmedian(np.where(np.isfinite(f.depth), f.depth, np.nan)[48:])
            for f in (realistic.sample(3, i, 128, 96, "desk") for i in range(6))]
    assert np.median(near) < 2.0


def test_recipe_registry() -> None:
    assert set(RECIPES) >= {"basic", "realistic"}
    assert recipe("realistic") is realistic.sample
    with pytest.raises(ValueError, match="choose one of"):
        recipe("photoreal")
