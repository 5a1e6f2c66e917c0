"""Procedural scenes with exact metric depth: rooms, corridors and outdoor ground planes with furniture.

Pure numpy ray casting of analytic primitives (DESIGN.md §4, the Depth Anything V2 insight: precise
synthetic labels). World frame: X right, Y up, Z forward; floor at Y = 0. Camera (optical) frame: x right,
y down, z forward (REP-103). A pixel (u, v) (OpenCV convention: pixel centres at integer coordinates) casts
the ray (x_n, y_n, 1) = ((u − cx)/fx, (v − cy)/fy, 1) in the camera frame; the ray parameter t of a hit along
this unnormalised direction IS the depth Z (the optical-axis distance), so depth labels are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

# The first five are the basic recipe's; the rest have natural-image statistics (1/f spectra) or mimic common
# indoor surfaces (wood grain, floor and ceiling tiles, marker scribbles on a whiteboard).
TEXTURES = ("plain", "checker", "stripes", "noise", "grain", "fractal", "wood", "tiles", "marker")


@dataclass(frozen=True)
class Material:
    colour_a: tuple[float, float, float]
    colour_b: tuple[float, float, float]
    texture: str = "plain"  # one of TEXTURES
    scale: float = 1.0  # texture cycles per metre
    angle: float = 0.0  # radians: rotation of the texture on the surface
    emissive: float = 0.0  # light of its own (screens, windows, lamps), added to the shading


@dataclass(frozen=True)
class Plane:
    """Points X with X[axis] = offset; visible from the side ``facing`` (+1: from larger coordinates)."""

    axis: int  # 0 = X, 1 = Y, 2 = Z
    offset: float
    facing: float
    material: Material


@dataclass(frozen=True)
class Box:
    """A box of half-sizes ``half`` centred at ``centre``, rotated by ``yaw`` about the world Y axis."""

    centre: tuple[float, float, float]
    half: tuple[float, float, float]
    yaw: float
    material: Material


@dataclass(frozen=True)
class PinholeCamera:
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    position: tuple[float, float, float] = (0.0, 1.0, 0.0)
    yaw: float = 0.0  # radians about world Y (positive turns the view towards +X)
    pitch: float = 0.0  # radians, positive looks down
    roll: float = 0.0  # radians about the optical axis

    def rotation(self) -> np.ndarray:
        """Camera-to-world rotation (columns: the camera's x, y, z axes in world coordinates)."""
        flip = np.diag([1.0, -1.0, 1.0])  # optical y down -> world Y up
        cr, sr = np.cos(self.roll), np.sin(self.roll)
        roll = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
        cp, sp = np.cos(self.pitch), np.sin(self.pitch)
        pitch = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])  # +pitch tilts z towards -Y
        cy_, sy_ = np.cos(self.yaw), np.sin(self.yaw)
        yaw = np.array([[cy_, 0.0, sy_], [0.0, 1.0, 0.0], [-sy_, 0.0, cy_]])
        return yaw @ pitch @ flip @ roll

    def k(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


@dataclass
class Scene:
    planes: list[Plane] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    light_dir: tuple[float, float, float] = (0.3, 1.0, 0.2)  # towards the light, world frame
    ambient: float = 0.35
    sky: tuple[float, float, float] | None = None  # colour where nothing is hit (outdoors)
    kind: str = "room"
    # Opt-in realism (the basic recipe leaves these off, so its frames never change):
    lamp: tuple[float, float, float] | None = None  # a point light (world), falling off with distance squared
    lamp_power: float = 0.0  # the lamp's term at distance lamp_reference along its surface normal
    lamp_reference: float = 1.0  # metres
    sun: float = 1.0  # weight of the directional light (light_dir)
    shadows: bool = False  # boxes cast shadows of the lamp and the directional light
    occlusion: float = 0.0  # strength of the ambient-occlusion approximation (contact darkening)
    occlusion_radius: float = 0.25  # metres
    sky_horizon: tuple[float, float, float] | None = None  # sky colour at the horizon (a vertical gradient)


@dataclass
class Frame:
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 metres along the optical axis; +inf where nothing is hit (sky)
    camera: PinholeCamera


def _noise_tile(seed: int = 12345, size: int = 128) -> np.ndarray:
    """A smooth tileable value-noise tile in [0, 1] (three octaves), made once."""
    rng = np.random.default_rng(seed)
    tile = np.zeros((size, size))
    for octave, weight in ((8, 0.5), (16, 0.3), (32, 0.2)):
        coarse = rng.random((octave, octave))
        reps = size // octave
        # Bilinear upsampling of a periodic grid keeps the tile seamless.
        idx = np.arange(size) / reps
        i0 = np.floor(idx).astype(int) % octave
        i1 = (i0 + 1) % octave
        f = idx - np.floor(idx)
        rows = coarse[i0] * (1 - f)[:, None] + coarse[i1] * f[:, None]
        tile += weight * (rows[:, i0] * (1 - f)[None, :] + rows[:, i1] * f[None, :])
    return (tile - tile.min()) / (tile.max() - tile.min())


NOISE = _noise_tile()


def _fractal_tile(seed: int = 4321, size: int = 256, exponent: float = 1.8) -> np.ndarray:
    """A tileable noise tile in [0, 1] with a 1/f^exponent power spectrum (natural images: ~2), made once."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(size)
    radius = np.hypot(f[:, None], f[None, :])
    radius[0, 0] = 1.0
    spectrum = np.fft.fft2(rng.normal(size=(size, size))) / radius ** (exponent / 2)
    spectrum[0, 0] = 0.0
    tile = np.real(np.fft.ifft2(spectrum))
    return (tile - tile.min()) / (tile.max() - tile.min())


FRACTAL = _fractal_tile()


def _lookup(tile: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    size = tile.shape[0]
    return tile[np.floor(v).astype(np.int64) % size, np.floor(u).astype(np.int64) % size]


def pixel_rays(camera: PinholeCamera) -> np.ndarray:
    """(H*W, 3) camera-frame rays (x_n, y_n, 1), row-major."""
    u = (np.arange(camera.width, dtype=np.float64) - camera.cx) / camera.fx
    v = (np.arange(camera.height, dtype=np.float64) - camera.cy) / camera.fy
    xn, yn = np.meshgrid(u, v)
    return np.stack([xn.ravel(), yn.ravel(), np.ones(xn.size)], axis=1)


def _intersect_planes(planes: list[Plane], origin: np.ndarray, dirs: np.ndarray):
    """Nearest plane hit per ray: (t, index, normal, uv) with t = inf where none."""
    n = dirs.shape[0]
    best_t = np.full(n, np.inf)
    best_i = np.full(n, -1)
    for i, plane in enumerate(planes):
        d = dirs[:, plane.axis]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (plane.offset - origin[plane.axis]) / d
        # Visible only from its facing side: the ray must travel against the facing direction.
        ok = (t > 1e-9) & (d * plane.facing < 0) & (t < best_t)
        best_t = np.where(ok, t, best_t)
        best_i = np.where(ok, i, best_i)
    return best_t, best_i


def _intersect_boxes(boxes: list[Box], origin: np.ndarray, dirs: np.ndarray):
    """Nearest box hit per ray (slab method in each box's own frame, vectorised over rays and boxes).

    Returns (t, box index, face axis, sign of the face normal in the box frame, local hit point).
    """
    n = dirs.shape[0]
    if not boxes:
        return np.full(n, np.inf), np.full(n, -1), np.zeros(n, int), np.ones(n), np.zeros((n, 3))
    centres, halves, rot = _box_frames(boxes)  # rot: world -> box (the transpose of the box's yaw rotation)
    o_local = np.einsum("bij,bj->bi", rot, origin[None, :] - centres)  # (B, 3)
    d_local = np.einsum("bij,nj->nbi", rot, dirs)  # (N, B, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d_local
        t1 = (-halves[None] - o_local[None]) * inv
        t2 = (halves[None] - o_local[None]) * inv
    t_lo = np.minimum(t1, t2)
    t_hi = np.maximum(t1, t2)
    t_lo = np.where(np.isnan(t_lo), -np.inf, t_lo)  # a ray parallel to a slab inside it
    t_hi = np.where(np.isnan(t_hi), np.inf, t_hi)
    t_near = np.maximum(np.maximum(t_lo[..., 0], t_lo[..., 1]), t_lo[..., 2])  # faster than .max(axis=2)
    t_far = np.minimum(np.minimum(t_hi[..., 0], t_hi[..., 1]), t_hi[..., 2])
    hit = (t_near <= t_far) & (t_near > 1e-9)
    t_box = np.where(hit, t_near, np.inf)  # (N, B); a camera inside a box sees out (no hit)
    index = t_box.argmin(axis=1)
    rows = np.arange(n)
    t = t_box[rows, index]
    axis = t_lo[rows, index].argmax(axis=1)
    sign = -np.sign(d_local[rows, index, axis])
    local = o_local[index] + t[:, None] * d_local[rows, index]
    index = np.where(np.isfinite(t), index, -1)
    return t, index, axis, sign, local


def _texture(material_ids: np.ndarray, materials: list[Material], u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Albedo (N, 3) from each hit's material and its surface coordinates (u, v) in metres."""
    colour_a = np.array([m.colour_a for m in materials])[material_ids]
    colour_b = np.array([m.colour_b for m in materials])[material_ids]
    scale = np.array([m.scale for m in materials])[material_ids]
    kind = np.array([TEXTURES.index(m.texture) for m in materials])[material_ids]
    angle = np.array([m.angle for m in materials])[material_ids]
    if np.any(angle != 0.0):
        c, s = np.cos(angle), np.sin(angle)
        u, v = c * u - s * v, s * u + c * v
    su, sv = u * scale, v * scale
    checker = (np.floor(su) + np.floor(sv)) % 2
    stripes = (np.floor(su * 2) % 2).astype(float)
    size = NOISE.shape[0]
    noise = NOISE[(np.floor(sv * 16).astype(int)) % size, (np.floor(su * 16).astype(int)) % size]
    grain = NOISE[(np.floor(sv * 64).astype(int)) % size, (np.floor(su * 4).astype(int)) % size]
    choices = [kind == 1, kind == 2, kind == 3, kind == 4]
    values = [checker, stripes, noise, grain]
    if kind.max(initial=0) >= 5:
        fractal = _lookup(FRACTAL, su * 32, sv * 32)
        # Wood: growth rings along u, warped by low-frequency noise, with fine fibres.
        warp = _lookup(FRACTAL, su * 4, sv * 24)
        wood = 0.5 + 0.5 * np.sin(2 * np.pi * (su * 3 + 4 * warp)) * (0.6 + 0.4 * _lookup(FRACTAL, su * 200, sv * 6))
        # Tiles: grout lines on a unit grid, each tile's shade a little different.
        fu, fv = su - np.floor(su), sv - np.floor(sv)
        grout = (fu < 0.04) | (fv < 0.04)
        shade = _lookup(FRACTAL, np.floor(su) * 37.0, np.floor(sv) * 53.0)
        tiles = np.where(grout, 1.0, 0.25 * shade + 0.15 * fractal)
        # Marker: thin contour lines of a noise field look like handwriting and drawings.
        field = _lookup(FRACTAL, su * 48, sv * 48)
        marker = (np.abs(field - 0.5) < 0.012).astype(float)
        choices += [kind == 5, kind == 6, kind == 7, kind == 8]
        values += [fractal, wood, tiles, marker]
    mix = np.select(choices, values, 0.0)
    return colour_a * (1 - mix[:, None]) + colour_b * mix[:, None]


def _box_frames(boxes: list[Box]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centres (B, 3), half sizes (B, 3), world-to-box rotations (B, 3, 3))."""
    centres = np.array([b.centre for b in boxes], dtype=np.float64)
    halves = np.array([b.half for b in boxes], dtype=np.float64)
    c, s = np.cos([b.yaw for b in boxes]), np.sin([b.yaw for b in boxes])
    rot = np.zeros((len(boxes), 3, 3))
    rot[:, 0, 0], rot[:, 0, 2], rot[:, 1, 1], rot[:, 2, 0], rot[:, 2, 2] = c, -s, 1.0, s, c
    return centres, halves, rot


def _occluded(boxes: list[Box], points: np.ndarray, towards: np.ndarray, t_max: np.ndarray) -> np.ndarray:
    """Whether a box lies on each segment points + t·towards, 0 < t < t_max (shadow rays)."""
    occluded = np.zeros(points.shape[0], dtype=bool)
    if not boxes:
        return occluded
    centres, halves, rot = _box_frames(boxes)
    for b in range(len(boxes)):  # one box at a time keeps the memory at O(rays)
        o = (points - centres[b]) @ rot[b].T
        d = towards @ rot[b].T
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / d
            t1 = (-halves[b] - o) * inv
            t2 = (halves[b] - o) * inv
        lo = np.where(np.isnan(t1), -np.inf, np.minimum(t1, t2))
        hi = np.where(np.isnan(t2), np.inf, np.maximum(t1, t2))
        t_lo = np.maximum(np.maximum(lo[:, 0], lo[:, 1]), lo[:, 2])
        t_hi = np.minimum(np.minimum(hi[:, 0], hi[:, 1]), hi[:, 2])
        occluded |= (t_lo <= t_hi) & (t_hi > 1e-6) & (t_lo < t_max)
    return occluded


def _ambient_occlusion(scene: Scene, point: np.ndarray, normal: np.ndarray, own_plane: np.ndarray,
                       own_box: np.ndarray) -> np.ndarray:
    """Contact darkening in [0.25, 1]: every other surface near a point, in front of its tangent plane, occludes
    part of its sky. A cheap stand-in for ray-traced ambient occlusion (corners, the floor under furniture)."""
    radius = scene.occlusion_radius
    total = np.zeros(point.shape[0])
    for i, plane in enumerate(scene.planes):
        gap = plane.offset - point[:, plane.axis]
        distance = np.abs(gap)
        facing = np.sign(gap) * normal[:, plane.axis]  # cos of the direction to the plane against the normal
        weight = np.clip(1.0 + facing, 0.0, 1.0) * np.exp(-distance / radius)
        total += np.where(own_plane == i, 0.0, weight)
    if scene.boxes:
        centres, halves, rot = _box_frames(scene.boxes)
        for b in range(len(scene.boxes)):
            local = (point - centres[b]) @ rot[b].T
            nearest = np.clip(local, -halves[b], halves[b])
            offset = (nearest - local) @ rot[b]  # to the nearest box point, world frame
            distance = np.linalg.norm(offset, axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                facing = np.where(distance > 1e-9, np.einsum("ij,ij->i", offset, normal) / distance, 0.0)
            weight = np.clip(1.0 + facing, 0.0, 1.0) * np.exp(-distance / radius)
            total += np.where(own_box == b, 0.0, weight)
    return np.clip(1.0 - scene.occlusion * total, 0.25, 1.0)


def _in_view(boxes: list[Box], camera: PinholeCamera, rotation: np.ndarray) -> list[Box]:
    """The boxes whose bounding spheres reach into the camera's frustum: no other box can be hit by a pixel's ray,
    so the others are skipped (an exact cull: the hits are the same)."""
    if not boxes:
        return boxes
    centres = np.array([b.centre for b in boxes], dtype=np.float64) - np.asarray(camera.position)[None, :]
    local = centres @ rotation  # world -> camera frame (rotation: camera -> world)
    radius = np.linalg.norm(np.array([b.half for b in boxes]), axis=1) * 1.001 + 1e-6
    u_lo, u_hi = (-0.5 - camera.cx) / camera.fx, (camera.width - 0.5 - camera.cx) / camera.fx
    v_lo, v_hi = (-0.5 - camera.cy) / camera.fy, (camera.height - 0.5 - camera.cy) / camera.fy
    x, y, z = local[:, 0], local[:, 1], local[:, 2]
    keep = z > -radius
    for a, b in ((1.0, -u_lo), (-1.0, u_hi)):  # side planes a·x + b·z >= 0 through the optical centre
        keep &= (a * x + b * z) / np.hypot(a, b) > -radius
    for a, b in ((1.0, -v_lo), (-1.0, v_hi)):
        keep &= (a * y + b * z) / np.hypot(a, b) > -radius
    return [box for box, k in zip(boxes, keep, strict=True) if k]


def render(scene: Scene, camera: PinholeCamera, rng: np.random.Generator | None = None) -> Frame:
    """Ray-cast ``scene``: RGB (Lambertian shading of procedural textures) and exact depth Z."""
    rays = pixel_rays(camera)
    rot = camera.rotation()
    dirs = rays @ rot.T  # world directions, still scaled so that t = Z
    origin = np.asarray(camera.position, dtype=np.float64)
    # Shadows and occlusion come from the boxes in view only: a cheap approximation off screen.
    scene = replace(scene, boxes=_in_view(scene.boxes, camera, rot))
    t_plane, i_plane = _intersect_planes(scene.planes, origin, dirs)
    t_box, i_box, face_axis, face_sign, local = _intersect_boxes(scene.boxes, origin, dirs)
    use_box = t_box < t_plane
    t = np.where(use_box, t_box, t_plane)
    hit = np.isfinite(t)
    point = origin[None, :] + np.where(hit, t, 0.0)[:, None] * dirs

    n_rays = rays.shape[0]
    normal = np.zeros((n_rays, 3))
    u = np.zeros(n_rays)
    v = np.zeros(n_rays)
    materials = [p.material for p in scene.planes] + [b.material for b in scene.boxes]
    material = np.zeros(n_rays, dtype=int)
    # Planes: normal along the axis, texture coordinates = the other two world coordinates.
    on_plane = hit & ~use_box
    if scene.planes:
        axes = np.array([p.axis for p in scene.planes])[np.maximum(i_plane, 0)]
        facing = np.array([p.facing for p in scene.planes])[np.maximum(i_plane, 0)]
        normal[on_plane, axes[on_plane]] = facing[on_plane]
        other = np.array([[1, 2], [0, 2], [0, 1]])[axes]
        rows = np.arange(n_rays)
        u = np.where(on_plane, point[rows, other[:, 0]], u)
        v = np.where(on_plane, point[rows, other[:, 1]], v)
        material = np.where(on_plane, i_plane, material)
    if scene.boxes:
        on_box = hit & use_box
        rows = np.arange(n_rays)
        local_normal = np.zeros((n_rays, 3))
        local_normal[rows, face_axis] = face_sign
        yaw = np.array([b.yaw for b in scene.boxes])[np.maximum(i_box, 0)]
        c, s = np.cos(yaw), np.sin(yaw)
        world_normal = np.stack([c * local_normal[:, 0] + s * local_normal[:, 2], local_normal[:, 1],
                                 -s * local_normal[:, 0] + c * local_normal[:, 2]], axis=1)
        normal = np.where(on_box[:, None], world_normal, normal)
        other = np.array([[1, 2], [0, 2], [0, 1]])[face_axis]
        u = np.where(on_box, local[rows, other[:, 0]], u)
        v = np.where(on_box, local[rows, other[:, 1]], v)
        material = np.where(on_box, len(scene.planes) + np.maximum(i_box, 0), material)

    albedo = _texture(material, materials, u, v)
    light = np.asarray(scene.light_dir, dtype=np.float64)
    light = light / np.linalg.norm(light)
    diffuse = np.clip(normal @ light, 0.0, None)
    # A soft headlight term keeps faces turned away from the main light from going flat black.
    view = -dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    head = np.clip(np.einsum("ij,ij->i", normal, view), 0.0, None)
    realistic = scene.lamp is not None or scene.shadows or scene.occlusion > 0
    if not realistic:
        shade = scene.ambient + (1 - scene.ambient) * (0.75 * diffuse + 0.25 * head)
    else:
        lit = hit.copy()
        start = point + 1e-4 * normal  # off the surface, so it does not shadow itself
        sun = scene.sun * diffuse
        if scene.shadows and scene.boxes:
            in_sun = lit & (diffuse > 0)
            sun[in_sun] *= ~_occluded(scene.boxes, start[in_sun], np.broadcast_to(light, (int(in_sun.sum()), 3)),
                                      np.full(int(in_sun.sum()), np.inf))
        lamp_term = np.zeros(n_rays)
        if scene.lamp is not None:
            to_lamp = np.asarray(scene.lamp, dtype=np.float64)[None, :] - point
            distance = np.linalg.norm(to_lamp, axis=1)
            cos = np.clip(np.einsum("ij,ij->i", normal, to_lamp) / np.maximum(distance, 1e-6), 0.0, None)
            lamp_term = scene.lamp_power * cos * (scene.lamp_reference / np.maximum(distance, 0.05)) ** 2
            if scene.shadows and scene.boxes:
                in_lamp = lit & (cos > 0)
                lamp_term[in_lamp] *= ~_occluded(scene.boxes, start[in_lamp], to_lamp[in_lamp],
                                                 np.ones(int(in_lamp.sum())))
        ambient = np.full(n_rays, scene.ambient)
        if scene.occlusion > 0:
            own_plane = np.where(on_plane, i_plane, -1)
            own_box = np.where(hit & use_box, i_box, -1)
            ambient = ambient * _ambient_occlusion(scene, point, normal, own_plane, own_box)
        emissive = np.array([m.emissive for m in materials])[material] if materials else np.zeros(n_rays)
        shade = ambient + (1 - scene.ambient) * (sun + lamp_term + 0.15 * head) + emissive
    colour = albedo * shade[:, None]
    sky = np.asarray(scene.sky if scene.sky is not None else (0.0, 0.0, 0.0))
    if scene.sky_horizon is not None:  # brighter towards the horizon: blend by the ray's elevation
        elevation = np.clip(dirs[:, 1] / np.linalg.norm(dirs, axis=1), 0.0, 1.0) ** 0.5
        sky = np.asarray(scene.sky_horizon)[None, :] * (1 - elevation[:, None]) + sky[None, :] * elevation[:, None]
    colour = np.where(hit[:, None], colour, sky)
    if rng is not None:
        colour = colour + rng.normal(0.0, 0.01, colour.shape)  # sensor noise
    rgb = (np.clip(colour, 0.0, 1.0) ** (1 / 2.2) * 255.0 + 0.5).astype(np.uint8)
    shape = (camera.height, camera.width)
    return Frame(rgb.reshape(*shape, 3), t.reshape(shape).astype(np.float32), camera)
