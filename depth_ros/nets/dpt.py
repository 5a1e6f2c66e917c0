"""DPT decoder head of Depth Anything V2 (DESIGN.md §3), official parameter names.

Four token maps -> project (1x1 conv) -> resample to strides 4, 8, 16, 32 of the patch grid ->
3x3 conv to ``features`` channels -> fused coarse-to-fine by residual refinement blocks ->
output convolutions at the input resolution -> one channel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from depth_ros.nets.dinov2 import PATCH


class ResidualUnit(nn.Module):
    """relu -> conv3x3 -> relu -> conv3x3, plus the input."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """Adds the skip input (after its residual unit), refines, upsamples to ``size`` (or x2), 1x1 conv."""

    def __init__(self, features: int) -> None:
        super().__init__()
        # The names are the checkpoint's ("resConfUnit"); the deepest block never uses unit 1 but the
        # official checkpoints contain it, so it is kept for strict loading.
        self.resConfUnit1 = ResidualUnit(features)
        self.resConfUnit2 = ResidualUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None,
                size: tuple[int, int] | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        else:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class Scratch(nn.Module):
    def __init__(self, channels: tuple[int, int, int, int], features: int, final: nn.Module) -> None:
        super().__init__()
        for i, c in enumerate(channels, start=1):
            setattr(self, f"layer{i}_rn", nn.Conv2d(c, features, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(self, f"refinenet{i}", FusionBlock(features))
        self.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        # Indices 0 and 2 carry weights (the checkpoint's output_conv2.0 / .2).
        self.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 1, 1), final,
        )


class DPTHead(nn.Module):
    def __init__(self, dim: int, features: int, channels: tuple[int, int, int, int], final: nn.Module) -> None:
        super().__init__()
        self.projects = nn.ModuleList(nn.Conv2d(dim, c, 1) for c in channels)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(channels[0], channels[0], 4, stride=4),  # stride 14/4 of the input
            nn.ConvTranspose2d(channels[1], channels[1], 2, stride=2),
            nn.Identity(),
            nn.Conv2d(channels[3], channels[3], 3, stride=2, padding=1),
        ])
        self.scratch = Scratch(channels, features, final)

    def forward(self, tokens: list[torch.Tensor], grid_h: int, grid_w: int) -> torch.Tensor:
        maps = []
        for i, t in enumerate(tokens):
            x = t.transpose(1, 2).reshape(t.shape[0], t.shape[-1], grid_h, grid_w)
            maps.append(self.resize_layers[i](self.projects[i](x)))
        s = self.scratch
        l1, l2, l3, l4 = s.layer1_rn(maps[0]), s.layer2_rn(maps[1]), s.layer3_rn(maps[2]), s.layer4_rn(maps[3])
        path = s.refinenet4(l4, size=l3.shape[2:])
        path = s.refinenet3(path, l3, size=l2.shape[2:])
        path = s.refinenet2(path, l2, size=l1.shape[2:])
        path = s.refinenet1(path, l1)
        out = s.output_conv1(path)
        out = F.interpolate(out, size=(grid_h * PATCH, grid_w * PATCH), mode="bilinear", align_corners=True)
        return s.output_conv2(out)
