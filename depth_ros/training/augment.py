"""Strong perturbations of the student's input only (DESIGN.md §4): colour jitter, Gaussian blur, CutMix.

Images are (B, 3, H, W) float tensors in [0, 1] (before the contract's normalisation). Randomness comes
from an explicit torch.Generator so that a seed reproduces a run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _uniform(generator: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)


def colour_jitter(images: torch.Tensor, generator: torch.Generator, brightness: float = 0.4,
                  contrast: float = 0.4, saturation: float = 0.4, hue_shift: float = 0.05) -> torch.Tensor:
    """Per-image random brightness, contrast, saturation and a small channel-mixing hue shift."""
    b = images.shape[0]
    device = images.device
    out = images * _uniform(generator, (b, 1, 1, 1), 1 - brightness, 1 + brightness).to(device)
    grey = out.mean(dim=(1, 2, 3), keepdim=True)
    out = grey + (out - grey) * _uniform(generator, (b, 1, 1, 1), 1 - contrast, 1 + contrast).to(device)
    luma = out.mean(dim=1, keepdim=True)
    out = luma + (out - luma) * _uniform(generator, (b, 1, 1, 1), 1 - saturation, 1 + saturation).to(device)
    # Hue: rotate a little towards the next channel (a cheap stand-in for an HSV rotation).
    mix = _uniform(generator, (b, 1, 1, 1), -hue_shift, hue_shift).to(device)
    out = out * (1 - mix.abs()) + torch.roll(out, shifts=1, dims=1) * mix.clamp(min=0) \
        + torch.roll(out, shifts=-1, dims=1) * (-mix).clamp(min=0)
    return out.clamp(0.0, 1.0)


def gaussian_blur(images: torch.Tensor, generator: torch.Generator, p: float = 0.5,
                  max_sigma: float = 1.5) -> torch.Tensor:
    """Blur each image with probability ``p`` by a Gaussian of random sigma in [0.1, max_sigma]."""
    out = images.clone()
    apply = torch.rand(images.shape[0], generator=generator) < p
    sigmas = _uniform(generator, (images.shape[0],), 0.1, max_sigma)
    for i in torch.nonzero(apply).flatten().tolist():  # per image (not per pixel): a few per batch
        sigma = float(sigmas[i])
        radius = max(1, int(3 * sigma + 0.5))
        x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
        kernel = torch.exp(-0.5 * (x / sigma) ** 2)
        kernel = kernel / kernel.sum()
        img = images[i : i + 1].transpose(0, 1)  # (3, 1, H, W): one depthwise pass per channel
        img = F.conv2d(F.pad(img, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
        img = F.conv2d(F.pad(img, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
        out[i] = img.transpose(0, 1)[0]
    return out


def cutmix_boxes(batch: int, height: int, width: int, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """(B, H, W) bool regions: with probability ``p`` a random box (area fraction ~ U(0.1, 0.5)), else empty."""
    region = torch.zeros(batch, height, width, dtype=torch.bool)
    apply = torch.rand(batch, generator=generator) < p
    fractions = _uniform(generator, (batch,), 0.1, 0.5)
    aspects = torch.exp(_uniform(generator, (batch,), -0.7, 0.7))
    corners = torch.rand(batch, 2, generator=generator)
    for i in torch.nonzero(apply).flatten().tolist():
        h = int(min(height, max(1, round(height * (float(fractions[i]) * float(aspects[i])) ** 0.5))))
        w = int(min(width, max(1, round(width * (float(fractions[i]) / float(aspects[i])) ** 0.5))))
        top = int(float(corners[i, 0]) * (height - h + 1))
        left = int(float(corners[i, 1]) * (width - w + 1))
        region[i, top : top + h, left : left + w] = True
    return region


def apply_cutmix(images: torch.Tensor, region: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
    """Image b (``images[partner]``) pasted into ``region`` of each image a."""
    return torch.where(region[:, None].to(images.device), images[partner], images)
