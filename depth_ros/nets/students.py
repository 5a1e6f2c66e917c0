"""Compact CNN students sized for Jetson Orin Nano-class devices and CPU inference.

An inverted-residual (MobileNetV2-style) encoder down to 1/32 and a light top-down decoder with skip
connections back to 1/2, then a bilinear upsample to the input size. The last activation is a softplus,
so the output is positive: canonical inverse depth (or disparity), whatever the contract says it is.
Only ONNX-friendly operators (conv, batch norm, ReLU, bilinear resize), opset 17.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from depth_ros.nets import register


def _conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.residual = stride == 1 and cin == cout
        self.body = nn.Sequential(
            _conv_bn(cin, hidden, 1),
            _conv_bn(hidden, hidden, 3, stride, groups=hidden),
            _conv_bn(hidden, cout, 1, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class SeparableBlock(nn.Module):
    """Depthwise 3x3 + pointwise: the decoder's cheap refinement."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn(channels, channels, 3, groups=channels), _conv_bn(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class CompactDepthNet(nn.Module):
    """Encoder stages (channels, blocks) each halving the resolution; decoder of width ``decoder``."""

    def __init__(self, stages: tuple[tuple[int, int], ...] = ((24, 2), (40, 2), (80, 3), (128, 2)),
                 stem: int = 16, decoder: int = 48, expand: int = 4) -> None:
        super().__init__()
        self.stem = _conv_bn(3, stem, 3, 2)  # 1/2
        blocks = []
        cin = stem
        for cout, depth in stages:
            layers = [InvertedResidual(cin, cout, 2, expand)]
            layers += [InvertedResidual(cout, cout, 1, expand) for _ in range(depth - 1)]
            blocks.append(nn.Sequential(*layers))
            cin = cout
        self.stages = nn.ModuleList(blocks)
        skip_channels = [stem] + [c for c, _ in stages[:-1]]
        self.top = _conv_bn(stages[-1][0], decoder, 1)
        self.lateral = nn.ModuleList([_conv_bn(c, decoder, 1) for c in skip_channels])
        self.refine = nn.ModuleList([SeparableBlock(decoder) for _ in skip_channels])
        self.head = nn.Sequential(_conv_bn(decoder, decoder // 2, 3), nn.Conv2d(decoder // 2, 1, 1))
        # The network features, exposed for feature alignment (the deepest encoder stage).
        self.feature_channels = stages[-1][0]

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(output map (N, 1, H, W), deepest features (N, C, H/32, W/32))."""
        size = x.shape[-2:]
        skips = [self.stem(x)]
        y = skips[0]
        for stage in self.stages:
            y = stage(y)
            skips.append(y)
        deepest = skips.pop()
        top = self.top(deepest)
        for skip, lateral, refine in zip(reversed(skips), reversed(self.lateral), reversed(self.refine), strict=True):
            top = F.interpolate(top, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            top = refine(top + lateral(skip))
        out = F.interpolate(self.head(top), size=size, mode="bilinear", align_corners=False)
        return F.softplus(out), deepest

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]


class MirrorAveraged(nn.Module):
    """A depth network averaged with its prediction on the mirrored image, mirrored back (a test-time flip).

    Depth is mirror-equivariant: the mirror image of a scene has the mirrored depth map, the same focal length,
    and a canonical output does not depend on the principal point. The two passes estimate the same map, so
    their mean cancels the network's left-right biases. Both run as one batch of 2N: one more forward pass of
    work, one call."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        both = self.network(torch.cat([x, torch.flip(x, dims=[3])], dim=0))
        return 0.5 * (both[:n] + torch.flip(both[n:], dims=[3]))


@register("student_cnn_s")
def student_cnn_s(**kwargs: object) -> CompactDepthNet:
    """≈0.41 M parameters (≈0.3 GFLOP at 256x192): the embedded default's architecture."""
    return CompactDepthNet(**kwargs)  # type: ignore[arg-type]


@register("student_cnn_xs")
def student_cnn_xs(**kwargs: object) -> CompactDepthNet:
    """≈17 k parameters: for tests and very small devices."""
    return CompactDepthNet(stages=((16, 1), (24, 1), (32, 1), (48, 1)), stem=8, decoder=16, expand=2,
                           **kwargs)  # type: ignore[arg-type]


@register("tiny_conv")
def tiny_conv(**kwargs: object) -> nn.Module:
    """A 3-layer conv net: a deliberately weak teacher/student for quick distillation tests."""
    channels = int(kwargs.get("channels", 8))  # type: ignore[arg-type]
    return nn.Sequential(nn.Conv2d(3, channels, 5, padding=2), nn.ReLU(), nn.Conv2d(channels, channels, 5, padding=2),
                         nn.ReLU(), nn.Conv2d(channels, 1, 3, padding=1), nn.Softplus())
