"""Image -> network input, and network output -> depth-image-sized prediction.

Both directions share one `InputGeometry`, so the output is cropped and resized back exactly
the way the input was placed: stretched to the input size, or letterboxed into it keeping the
aspect ratio (the content region is centred, the padding is zero after normalisation).
All resampling uses half-pixel centres (OpenCV's convention), which `CameraModel.scaled_to`
assumes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from depth_ros.core.contract import InputSpec


@dataclass(frozen=True)
class InputGeometry:
    """Where the image sits inside the network input tensor."""

    net_height: int
    net_width: int
    top: int
    left: int
    content_height: int
    content_width: int
    image_height: int
    image_width: int

    @property
    def scale_x(self) -> float:
        """Image pixels -> network input pixels, horizontally."""
        return self.content_width / self.image_width

    @property
    def scale_y(self) -> float:
        return self.content_height / self.image_height

    def content_region(self, out_height: int, out_width: int) -> tuple[slice, slice]:
        """(rows, cols) of the image's region in a network output of out_height x out_width
        (the output may be smaller than the input, e.g. a stride-2 head)."""
        sy, sx = out_height / self.net_height, out_width / self.net_width
        top = int(round(self.top * sy))
        left = int(round(self.left * sx))
        bottom = top + max(1, int(round(self.content_height * sy)))
        right = left + max(1, int(round(self.content_width * sx)))
        return slice(top, bottom), slice(left, right)


def _round_to_multiple(value: float, multiple: int, lower_bound: int) -> int:
    """Nearest multiple of ``multiple``, rounded up instead when that would fall below ``lower_bound``
    (Depth Anything's "lower bound" rule: no side ends up smaller than the target)."""
    rounded = int(round(value / multiple)) * multiple
    if rounded < lower_bound:
        rounded = int(np.ceil(value / multiple)) * multiple
    return max(multiple, rounded)


def plan_input(
    image_height: int,
    image_width: int,
    spec: InputSpec,
    fixed_size: tuple[int, int] | None,
) -> InputGeometry:
    """Choose the network input size and the image's place in it.

    ``fixed_size`` is the model's static (height, width), or None when its input is dynamic.
    A dynamic keep_aspect model gets the whole image scaled so that its shorter side equals
    the contract's shorter side, each side rounded to ``multiple_of`` (Depth Anything's rule).
    """
    if fixed_size is None and spec.resize == "keep_aspect":
        target = min(spec.height, spec.width)
        scale = target / min(image_height, image_width)
        net_h = _round_to_multiple(image_height * scale, spec.multiple_of, target)
        net_w = _round_to_multiple(image_width * scale, spec.multiple_of, target)
        return InputGeometry(net_h, net_w, 0, 0, net_h, net_w, image_height, image_width)
    net_h, net_w = fixed_size if fixed_size is not None else (spec.height, spec.width)
    if spec.resize == "stretch":
        return InputGeometry(net_h, net_w, 0, 0, net_h, net_w, image_height, image_width)
    scale = min(net_h / image_height, net_w / image_width)
    content_h = min(net_h, max(1, int(round(image_height * scale))))
    content_w = min(net_w, max(1, int(round(image_width * scale))))
    top = (net_h - content_h) // 2
    left = (net_w - content_w) // 2
    return InputGeometry(net_h, net_w, top, left, content_h, content_w, image_height, image_width)


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize with area averaging when shrinking (no aliasing) and bilinear otherwise."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    shrinking = width < image.shape[1] and height < image.shape[0]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def preprocess(rgb: np.ndarray, spec: InputSpec, geometry: InputGeometry) -> np.ndarray:
    """HxWx3 uint8 RGB -> (1, 3, net_h, net_w) float32, normalised as the contract says."""
    content = resize(rgb, geometry.content_width, geometry.content_height)
    if spec.channels == "bgr":
        content = content[:, :, ::-1]
    std = np.asarray(spec.std, dtype=np.float32)
    gain = np.float32(spec.scale) / std
    offset = -np.asarray(spec.mean, dtype=np.float32) / std
    tensor = np.zeros((1, 3, geometry.net_height, geometry.net_width), dtype=np.float32)
    region = tensor[0, :, geometry.top:geometry.top + geometry.content_height,
                    geometry.left:geometry.left + geometry.content_width]
    # HWC uint8 -> CHW float32 in one pass per channel (no intermediate HWC float copy).
    for c in range(3):
        np.multiply(content[:, :, c], gain[c], out=region[c], casting="unsafe")
        region[c] += offset[c]
    return tensor


class OutputShapeError(ValueError):
    """The model's output is not [1,1,h,w], [1,h,w] or [h,w]."""


def output_to_map(raw: np.ndarray) -> np.ndarray:
    """Squeeze the model's first output to a 2-D float32 map."""
    out = np.asarray(raw)
    while out.ndim > 2 and out.shape[0] == 1:
        out = out[0]
    if out.ndim != 2 or out.size == 0:
        raise OutputShapeError(
            f"model output has shape {tuple(np.shape(raw))}; expected [1,1,h,w], [1,h,w] or [h,w]"
        )
    return out.astype(np.float32, copy=False)


def postprocess(prediction: np.ndarray, geometry: InputGeometry, width: int, height: int) -> np.ndarray:
    """Crop the image's region out of a network-resolution map and resize it bilinearly to width x height."""
    crop = prediction[geometry.content_region(*prediction.shape)]
    if crop.shape == (height, width):
        return np.array(crop, dtype=np.float32, copy=True)
    return cv2.resize(np.ascontiguousarray(crop), (width, height), interpolation=cv2.INTER_LINEAR)
