"""Procedural scenes with exact metric depth: rooms, corridors and outdoor ground planes with furniture.

Pure numpy ray casting of analytic primitives (DESIGN.md §4, the Depth Anything V2 insight: precise
synthetic labels). World frame: X right, Y up, Z forward; floor at Y = 0. Camera (optical) frame: x right,
y down, z forward (REP-103). A pixel (u, v) (OpenCV convention: pixel centres at integer coordinates) casts
the ray (x_n, y_n, 1) = ((u − cx)/fx, (v − cy)/fy, 1) in the camera frame; the ray parameter t of a hit along
this unnormalised direction IS the depth Z (the optical-axis distance), so depth labels are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TEXTURES = ("plain", "checker", "stripes", "noise", "grain")


@dataclass(frozen=True)
class Material:
    colour_a: tuple[float, float, float]
    colour_b: tuple[float, float, float]
    texture: str = "plain"  # one of TEXTURES
    scale: float = 1.0  # texture cycles per metre


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
    centres = np.array([b.centre for b in boxes])  # (B, 3)
    halves = np.array([b.half for b in boxes])
    c, s = np.cos([b.yaw for b in boxes]), np.sin([b.yaw for b in boxes])
    # World -> box rotation about Y (the transpose of the box's yaw rotation).
    rot = np.zeros((len(boxes), 3, 3))
    rot[:, 0, 0], rot[:, 0, 2], rot[:, 1, 1], rot[:, 2, 0], rot[:, 2, 2] = c, -s, 1.0, s, c
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
    t_near = t_lo.max(axis=2)
    t_far = t_hi.min(axis=2)
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
    su, sv = u * scale, v * scale
    checker = (np.floor(su) + np.floor(sv)) % 2
    stripes = (np.floor(su * 2) % 2).astype(float)
    size = NOISE.shape[0]
    noise = NOISE[(np.floor(sv * 16).astype(int)) % size, (np.floor(su * 16).astype(int)) % size]
    grain = NOISE[(np.floor(sv * 64).astype(int)) % size, (np.floor(su * 4).astype(int)) % size]
    mix = np.select([kind == 1, kind == 2, kind == 3, kind == 4], [checker, stripes, noise, grain], 0.0)
    return colour_a * (1 - mix[:, None]) + colour_b * mix[:, None]


def render(scene: Scene, camera: PinholeCamera, rng: np.random.Generator | None = None) -> Frame:
    """Ray-cast ``scene``: RGB (Lambertian shading of procedural textures) and exact depth Z."""
    rays = pixel_rays(camera)
    rot = camera.rotation()
    dirs = rays @ rot.T  # world directions, still scaled so that t = Z
    origin = np.asarray(camera.position, dtype=np.float64)
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
    shade = scene.ambient + (1 - scene.ambient) * (0.75 * diffuse + 0.25 * head)
    colour = albedo * shade[:, None]
    sky = np.asarray(scene.sky if scene.sky is not None else (0.0, 0.0, 0.0))
    colour = np.where(hit[:, None], colour, sky[None, :])
    if rng is not None:
        colour = colour + rng.normal(0.0, 0.01, colour.shape)  # sensor noise
    rgb = (np.clip(colour, 0.0, 1.0) ** (1 / 2.2) * 255.0 + 0.5).astype(np.uint8)
    shape = (camera.height, camera.width)
    return Frame(rgb.reshape(*shape, 3), t.reshape(shape).astype(np.float32), camera)
