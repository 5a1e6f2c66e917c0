"""Training examples for a student: images at the student's input size with their labels.

Labels are one of two kinds:
- ``canonical``: canonical inverse depth C = (f/W) / Z (exact for synthetic frames and RGB-D sensors, or a
  ``canonical_inverse_depth`` teacher): the student learns metric depth given the focal length;
- ``disparity``: relative inverse depth up to scale and shift (a relative teacher): affine-invariant losses only.

Teacher pseudo-labels are computed once and cached on disk (npz), keyed by the teacher file's hash, the
image's hash and the student size, so a second run (or a resumed one) never runs the teacher again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from depth_ros.synthetic.recipes import DEFAULT_RECIPE, recipe

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass
class Examples:
    rgb: np.ndarray  # (N, H, W, 3) uint8
    label: np.ndarray  # (N, H, W) float32 (canonical inverse depth or disparity), NaN = invalid
    kind: str  # "canonical" or "disparity"
    pseudo: bool  # labels from a teacher network (noisy): trim the largest losses

    def __len__(self) -> int:
        return int(self.rgb.shape[0])


def _canonical_from_depth(depth: np.ndarray, f_over_w: float, max_depth: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = np.isfinite(depth) & (depth > 0) & (depth <= max_depth)
        return np.where(ok, f_over_w / depth, np.nan).astype(np.float32)


def _synthetic_one(args: tuple[str, int, int, int, int, float]) -> tuple[np.ndarray, np.ndarray]:
    name, seed, index, width, height, max_depth = args
    frame = recipe(name)(seed, index, width, height)
    return frame.rgb, _canonical_from_depth(frame.depth, frame.camera.fx / width, max_depth)


def synthetic_examples(count: int, seed: int, width: int, height: int, max_depth: float = 80.0,
                       workers: int = 1, start: int = 0, recipe_name: str = DEFAULT_RECIPE) -> Examples:
    """``count`` procedural frames (indices start.. of data set ``seed`` of a recipe) with exact canonical labels."""
    recipe(recipe_name)  # an unknown name fails here, not in a worker
    jobs = [(recipe_name, seed, start + i, width, height, max_depth) for i in range(count)]
    if workers > 1:
        with get_context("spawn").Pool(workers) as pool:
            results = pool.map(_synthetic_one, jobs, chunksize=16)
    else:
        results = [_synthetic_one(job) for job in jobs]
    return Examples(np.stack([r[0] for r in results]), np.stack([r[1] for r in results]), "canonical", False)


def resize_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    if rgb.shape[:2] == (height, width):
        return rgb
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def resize_sensor_depth(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest neighbour: a sensor's holes and edges must not be blended into fake depths."""
    return cv2.resize(depth.astype(np.float32), (width, height), interpolation=cv2.INTER_NEAREST)


def image_files(folders: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            files.append(folder)
            continue
        if not folder.is_dir():
            raise FileNotFoundError(f"image folder {folder} does not exist")
        files += sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, folders))}")
    return files


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


class TeacherLabeller:
    """Pseudo-labels from any model the node can run (through DepthEstimator and its backends), cached."""

    def __init__(self, model: str, cache_dir: Path, backend: str = "auto") -> None:
        from depth_ros.pipeline import DepthEstimator
        from depth_ros.resources import resolve_model_path

        path = resolve_model_path(model)
        self.estimator = DepthEstimator.from_path(path, backend)
        self.teacher_hash = file_hash(path)
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        kind = self.estimator.contract.output_kind
        # canonical_inverse_depth is already the student's metric target; anything else is used as a
        # relative disparity (metric depth without the images' focal lengths cannot be made canonical).
        self.kind = "canonical" if kind == "canonical_inverse_depth" else "disparity"
        self.teacher_kind = kind
        self.computed = 0  # teacher runs (not cache hits), for reporting and tests

    def label(self, rgb: np.ndarray, width: int, height: int) -> np.ndarray:
        from depth_ros.core.preprocess import postprocess

        key = hashlib.sha256(rgb.tobytes() + f"{rgb.shape}{width}x{height}".encode()).hexdigest()[:24]
        path = self.cache_dir / f"{self.teacher_hash}_{key}.npz"
        if path.is_file():
            with np.load(path) as cached:
                return cached["label"]
        raw, geometry, _ = self.estimator.predict(rgb)
        label = postprocess(raw, geometry, width, height).astype(np.float32)
        if self.teacher_kind in ("metric_depth", "canonical_metric_depth"):
            with np.errstate(divide="ignore"):
                label = np.where(label > 0, 1.0 / label, np.nan).astype(np.float32)
        label[~np.isfinite(label)] = np.nan
        tmp = path.with_suffix(".partial.npz")
        np.savez_compressed(tmp, label=label)
        tmp.replace(path)  # whole files only, even if interrupted
        self.computed += 1
        return label


def teacher_examples(images: list[np.ndarray], labeller: TeacherLabeller, width: int, height: int) -> Examples:
    rgb = np.stack([resize_rgb(image, width, height) for image in images])
    labels = np.stack([labeller.label(image, width, height) for image in images])
    return Examples(rgb, labels, labeller.kind, True)


def bag_images(bag: Path, image_topic: str) -> list[np.ndarray]:
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage, Image

    from depth_ros.bags.io import read_raw
    from depth_ros.ros.codecs import compressed_to_rgb, image_to_rgb

    compressed = image_topic.endswith("/compressed")
    out = []
    for raw in read_raw(bag, [image_topic]):
        if compressed:
            out.append(compressed_to_rgb(deserialize_message(raw.data, CompressedImage)))
        else:
            out.append(image_to_rgb(deserialize_message(raw.data, Image)))
    if not out:
        raise ValueError(f"bag {bag} has no messages on {image_topic}")
    return out


def sensor_examples(bag: Path, depth_topic: str, image_topic: str, info_topic: str | None, width: int,
                    height: int, max_depth: float) -> Examples:
    """An RGB-D sensor as the teacher: depth registered to the image, made canonical with the camera's f/W."""
    from depth_ros.bags.samples import bag_samples

    rgbs, labels = [], []
    for sample in bag_samples(bag, depth_topic, image_topic, info_topic, None):
        if sample.rgb is None or sample.camera is None:
            continue
        depth = resize_sensor_depth(sample.truth, width, height)
        rgbs.append(resize_rgb(sample.rgb, width, height))
        labels.append(_canonical_from_depth(depth, sample.camera.f_over_w, max_depth))
    if not rgbs:
        raise ValueError(f"no image/depth pairs on {image_topic} and {depth_topic} in {bag} (with a CameraInfo)")
    return Examples(np.stack(rgbs), np.stack(labels), "canonical", False)


def concatenate(parts: list[Examples]) -> Examples:
    kinds = {p.kind for p in parts}
    if len(kinds) > 1:
        raise ValueError("cannot mix canonical (metric) and relative labels in one run; train in two stages")
    return Examples(np.concatenate([p.rgb for p in parts]), np.concatenate([p.label for p in parts]),
                    parts[0].kind, any(p.pseudo for p in parts))
