"""Depth Anything V2 (ViT-S/B/L encoders, relative or metric head) — DESIGN.md §3.

The relative model predicts affine-invariant inverse depth (ReLU output); the metric models
(Hypersim indoor, max_depth 20; VKITTI outdoor, max_depth 80) predict metres as sigmoid * max_depth.
Both take an ImageNet-normalised RGB image whose sides are multiples of 14 and return (N, 1, H, W).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn

from depth_ros.nets import register
from depth_ros.nets.dinov2 import PATCH, DinoV2, VitConfig
from depth_ros.nets.dpt import DPTHead

Head = Literal["relative", "metric"]


@dataclass(frozen=True)
class DAv2Config:
    vit: VitConfig
    layers: tuple[int, int, int, int]  # blocks whose tokens feed the DPT head
    features: int
    channels: tuple[int, int, int, int]


CONFIGS: dict[str, DAv2Config] = {
    "vits": DAv2Config(VitConfig(384, 12, 6), (2, 5, 8, 11), 64, (48, 96, 192, 384)),
    "vitb": DAv2Config(VitConfig(768, 12, 12), (2, 5, 8, 11), 128, (96, 192, 384, 768)),
    "vitl": DAv2Config(VitConfig(1024, 24, 16), (4, 11, 17, 23), 256, (256, 512, 1024, 1024)),
}

# Licences of the official weights (DESIGN.md §3).
LICENSES = {"vits": "Apache-2.0", "vitb": "CC-BY-NC-4.0", "vitl": "CC-BY-NC-4.0"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def reduced(config: DAv2Config, depth: int) -> DAv2Config:
    """The same widths with only ``depth`` blocks (tests: key layout and forward without full cost)."""
    if depth < 4:
        raise ValueError("a reduced Depth Anything V2 needs at least 4 blocks (one per DPT input)")
    layers = tuple(depth * (i + 1) // 4 - 1 for i in range(4))
    return replace(config, vit=replace(config.vit, depth=depth), layers=layers)  # type: ignore[arg-type]


class DepthAnythingV2(nn.Module):
    # The position embedding is resampled for the input grid at trace time (see DinoV2.position_embedding):
    # export one fixed size per camera aspect ratio.
    supports_dynamic_input = False

    def __init__(self, config: DAv2Config, head: Head = "relative", max_depth: float = 20.0) -> None:
        super().__init__()
        if head not in ("relative", "metric"):
            raise ValueError(f"head must be 'relative' or 'metric', got {head!r}")
        self.config = config
        self.head = head
        self.max_depth = float(max_depth)
        self.pretrained = DinoV2(config.vit)
        final = nn.ReLU() if head == "relative" else nn.Sigmoid()
        self.depth_head = DPTHead(config.vit.dim, config.features, config.channels, final)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % PATCH or x.shape[-1] % PATCH:
            raise ValueError(f"input sides must be multiples of {PATCH}, got {tuple(x.shape[-2:])}")
        grid_h, grid_w = x.shape[-2] // PATCH, x.shape[-1] // PATCH
        tokens = self.pretrained.intermediate(x, self.config.layers)
        out = self.depth_head(tokens, grid_h, grid_w)
        return out * self.max_depth if self.head == "metric" else out

    def contract_fields(self, encoder: str, height: int, width: int) -> dict[str, object]:
        """The model contract (depth_ros.core.contract) for this network at a network input of height x width."""
        data: dict[str, object] = {
            "output_kind": "metric_depth" if self.head == "metric" else "relative_disparity",
            "input": {"height": height, "width": width, "resize": "keep_aspect", "channels": "rgb",
                      "scale": 1.0 / 255.0, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                      "multiple_of": PATCH},
            "name": f"Depth Anything V2 {encoder.upper()} ({self.head})",
            "license": LICENSES.get(encoder, ""),
            "source": "https://github.com/DepthAnything/Depth-Anything-V2",
        }
        if self.head == "metric":
            data["max_depth"] = self.max_depth
        return data


def build(encoder: str = "vits", head: Head = "relative", max_depth: float = 20.0,
          depth: int | None = None) -> DepthAnythingV2:
    if encoder not in CONFIGS:
        raise ValueError(f"unknown encoder {encoder!r}; choose one of {', '.join(CONFIGS)}")
    config = CONFIGS[encoder] if depth is None else reduced(CONFIGS[encoder], depth)
    return DepthAnythingV2(config, head, max_depth).eval()


for _encoder in CONFIGS:
    register(f"depth_anything_v2_{_encoder}")(
        lambda encoder=_encoder, **kwargs: build(encoder, **kwargs)  # type: ignore[misc]
    )
