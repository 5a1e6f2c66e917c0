"""Ground-truth RGB-D samples for evaluation and training: image folders (TUM, NYU, KITTI PNG conventions),
bags with an image and a registered depth topic, and procedural frames with exact depth."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from depth_ros.core.camera import CameraModel
from depth_ros.core.evaluation import valid_depth

# Published conventions: depth PNG scale (value / scale = metres), intrinsics, evaluated depth range.
DATASETS: dict[str, dict[str, Any]] = {
    # TUM RGB-D (Sturm et al. 2012): 16-bit PNG, 5000 per metre; per-sensor calibration.
    "tum_fr1": {"depth_scale": 5000.0, "intrinsics": (517.3, 516.5, 318.6, 255.3), "range": (0.1, 10.0)},
    "tum_fr2": {"depth_scale": 5000.0, "intrinsics": (520.9, 521.0, 325.1, 249.7), "range": (0.1, 10.0)},
    "tum_fr3": {"depth_scale": 5000.0, "intrinsics": (535.4, 539.2, 320.1, 247.6), "range": (0.1, 10.0)},
    # NYU Depth v2 (Silberman et al. 2012) as exported to 16-bit PNG in millimetres.
    "nyu": {"depth_scale": 1000.0, "intrinsics": (518.8579, 519.4696, 325.5824, 253.7362), "range": (1e-3, 10.0)},
    # KITTI depth benchmark: 16-bit PNG, 256 per metre; intrinsics differ per drive (give --fx ...).
    "kitti": {"depth_scale": 256.0, "intrinsics": None, "range": (1e-3, 80.0)},
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".tif", ".tiff")
STAMP_TOLERANCE_NS = 20_000_000  # TUM's associate.py default (0.02 s)


@dataclass
class Sample:
    """One frame to score."""

    name: str
    truth: np.ndarray  # float32 metres, NaN = no data
    rgb: np.ndarray | None = None  # HxWx3 uint8 (needed to run a model; shown in the error maps)
    camera: CameraModel | None = None
    stamp_ns: int | None = None


# ----------------------------------------------------------------------------- ground truth: folders


def _number(stem: str) -> float | None:
    """The last number in a file stem (frame index or TUM timestamp), or None."""
    found = re.findall(r"\d+(?:\.\d+)?", stem)
    return float(found[-1]) if found else None


def _images(folder: Path, pattern: str) -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES or p.suffix == ".npy")


def pair_files(rgb_dir: Path, depth_dir: Path, rgb_pattern: str | None = None, depth_pattern: str | None = None,
               associations: Path | None = None) -> list[tuple[Path, Path]]:
    """(rgb, depth) file pairs.

    With a TUM associations file (lines 'stamp rgb/x.png stamp depth/y.png', as associate.py writes):
    its pairs, paths relative to the file's folder. Otherwise by the last number in each name
    (frame index, or a TUM timestamp matched to the nearest within 0.02), or by sorted order when
    names carry no numbers. When both folders are the same, the patterns default to rgb* and depth*.
    """
    if associations is not None:
        root = associations.parent
        pairs = []
        for line in associations.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 4 and not line.startswith("#"):
                pairs.append((root / parts[1], root / parts[3]))
        if not pairs:
            raise ValueError(f"{associations}: no 'stamp rgb stamp depth' lines")
        return pairs
    same = rgb_dir.resolve() == depth_dir.resolve()
    rgbs = _images(rgb_dir, rgb_pattern or ("rgb*" if same else "*"))
    depths = _images(depth_dir, depth_pattern or ("depth*" if same else "*"))
    if not rgbs or not depths:
        raise ValueError(f"no images found (rgb: {len(rgbs)} in {rgb_dir}, depth: {len(depths)} in {depth_dir})")
    rgb_keys = [_number(p.stem) for p in rgbs]
    depth_keys = [_number(p.stem) for p in depths]
    if None not in rgb_keys and None not in depth_keys:
        keys = np.array(depth_keys, dtype=np.float64)
        pairs = []
        for path, key in zip(rgbs, rgb_keys, strict=True):
            nearest = int(np.argmin(np.abs(keys - key)))
            if abs(keys[nearest] - key) <= 0.02:
                pairs.append((path, depths[nearest]))
        if pairs:
            return pairs
    if len(rgbs) != len(depths):
        raise ValueError(f"cannot pair {len(rgbs)} images with {len(depths)} depth maps by name; "
                         "give --associations or --rgb-pattern/--depth-pattern")
    return list(zip(rgbs, depths, strict=True))


def read_depth_file(path: Path, depth_scale: float) -> np.ndarray:
    """Metres (float32, NaN = no data) from an integer PNG (value / depth_scale, 0 = none) or a float .npy."""
    import cv2

    if path.suffix == ".npy":
        raw = np.load(path)
    else:
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise ValueError(f"cannot read depth image {path}")
    if raw.ndim != 2:
        raise ValueError(f"{path}: depth must be single-channel, got shape {raw.shape}")
    metres = raw.astype(np.float32)
    if np.issubdtype(raw.dtype, np.integer):
        metres /= np.float32(depth_scale)
    metres[~valid_depth(metres)] = np.nan
    return metres


def read_rgb_file(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def pinhole_camera(width: int, height: int, fx: float, fy: float, cx: float, cy: float) -> CameraModel:
    k = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    p = np.hstack([k, np.zeros((3, 1))])
    return CameraModel(width=width, height=height, k=k, p=p, r=np.eye(3), d=(), distortion_model="plumb_bob",
                       rectified=True)


def folder_samples(pairs: list[tuple[Path, Path]], depth_scale: float,
                   intrinsics: tuple[float, float, float, float] | None) -> Iterator[Sample]:
    for rgb_path, depth_path in pairs:
        rgb = read_rgb_file(rgb_path)
        truth = read_depth_file(depth_path, depth_scale)
        camera = pinhole_camera(rgb.shape[1], rgb.shape[0], *intrinsics) if intrinsics else None
        yield Sample(rgb_path.stem, truth, rgb, camera)


# The real RGB-D frames shipped in data/ (licences and calibration in their READMEs): (depth file, colour file,
# depth value per metre, colour intrinsics fx, fy, cx, cy; depth registered to colour).
SHIPPED_FRAMES = (
    ("tum_fr2_desk/depth_1.png", "tum_fr2_desk/rgb_1.png", 5000.0, DATASETS["tum_fr2"]["intrinsics"]),
    ("tum_fr2_desk/depth_2.png", "tum_fr2_desk/rgb_2.png", 5000.0, DATASETS["tum_fr2"]["intrinsics"]),
    ("realsense_d435/depth_in_color_mm.png", "realsense_d435/color.png", 1000.0,
     (613.2037, 613.4193, 319.9388, 239.1830)),
)


def shipped_samples() -> list[Sample]:
    """The frames of ``SHIPPED_FRAMES`` that are installed, named by their depth file (relative to data/)."""
    from depth_ros.resources import package_file

    samples = []
    for depth_file, rgb_file, depth_scale, intrinsics in SHIPPED_FRAMES:
        depth_path, rgb_path = package_file(f"data/{depth_file}"), package_file(f"data/{rgb_file}")
        if depth_path is None or rgb_path is None:
            continue
        rgb = read_rgb_file(rgb_path)
        samples.append(Sample(depth_file, read_depth_file(depth_path, depth_scale), rgb,
                              pinhole_camera(rgb.shape[1], rgb.shape[0], *intrinsics)))
    return samples


def synthetic_samples(count: int, seed: int, width: int, height: int, motion: tuple[float, float] | None = None,
                      rate_hz: float = 15.0, recipe_name: str = "realistic") -> Iterator[Sample]:
    """Procedural frames (depth_ros.synthetic) with exact depth and intrinsics; sky (no hit) has no data.

    ``motion`` (m/s ahead, rad/s turning): instead of independent scenes, one scene seen by a moving camera at
    ``rate_hz``, stamped (synthetic.generator.sequence; what the temporal filter is scored on).
    ``recipe_name``: depth_ros.synthetic.recipes (sequences are rendered with the basic recipe's scenes).
    Use a seed no training run used: `depth-ros train --synthetic-seed` picks the training frames.
    """
    from depth_ros.synthetic.generator import sequence
    from depth_ros.synthetic.recipes import recipe

    synthetic_sample = recipe(recipe_name)

    moving = None if motion is None else sequence(seed, count, width, height, rate_hz, *motion)
    for index in range(count):
        frame = synthetic_sample(seed, index, width, height) if moving is None else moving[index]
        c = frame.camera
        truth = np.where(np.isfinite(frame.depth), frame.depth, np.nan).astype(np.float32)
        stamp = None if moving is None else round(index * 1e9 / rate_hz)
        yield Sample(f"synthetic_{seed}_{index:05d}", truth, frame.rgb, pinhole_camera(width, height, c.fx, c.fy,
                                                                                        c.cx, c.cy), stamp)


# ----------------------------------------------------------------------------- bags


def stamp_ns(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec)


def depth_msg_metres(msg: Any) -> np.ndarray:
    """A depth Image (32FC1 metres, 16UC1/mono16 millimetres) in metres, NaN = no data."""
    from depth_ros.ros.codecs import image_msg_to_array

    array = image_msg_to_array(msg)
    if msg.encoding in ("16UC1", "mono16"):
        metres = array.astype(np.float32) * np.float32(1e-3)
    elif msg.encoding == "32FC1":
        metres = array
    else:
        raise ValueError(f"depth topic has encoding {msg.encoding!r}; expected 32FC1, 16UC1 or mono16")
    metres[~valid_depth(metres)] = np.nan
    return metres


def read_topic(bag: Path, topic: str, msg_type: type) -> list[Any]:
    from rclpy.serialization import deserialize_message

    from depth_ros.bags.io import read_raw

    return [deserialize_message(raw.data, msg_type) for raw in read_raw(bag, [topic])]


def nearest_stamp(stamps: np.ndarray, stamp: int) -> int | None:
    if stamps.size == 0:
        return None
    index = int(np.argmin(np.abs(stamps - stamp)))
    return index if abs(int(stamps[index]) - stamp) <= STAMP_TOLERANCE_NS else None


def bag_samples(bag: Path, depth_topic: str, image_topic: str | None, info_topic: str | None,
                intrinsics: tuple[float, float, float, float] | None) -> Iterator[Sample]:
    """Ground-truth depth from a bag (registered to the image), with the image and its camera when asked."""
    from sensor_msgs.msg import CameraInfo, Image

    from depth_ros.ros.codecs import image_to_rgb

    truths = read_topic(bag, depth_topic, Image)
    images = read_topic(bag, image_topic, Image) if image_topic else []
    infos = read_topic(bag, info_topic, CameraInfo) if info_topic else []
    image_stamps = np.array([stamp_ns(m) for m in images], dtype=np.int64)
    for index, msg in enumerate(truths):
        stamp = stamp_ns(msg)
        rgb = camera = None
        if images:
            nearest = nearest_stamp(image_stamps, stamp)
            if nearest is None:
                continue  # no image for this depth frame
            rgb = image_to_rgb(images[nearest])
        if infos:
            camera = CameraModel.from_camera_info(infos[-1])
        elif intrinsics is not None and rgb is not None:
            camera = pinhole_camera(rgb.shape[1], rgb.shape[0], *intrinsics)
        yield Sample(f"{index:05d}", depth_msg_metres(msg), rgb, camera, stamp)
