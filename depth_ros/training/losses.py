"""Distillation losses (DESIGN.md §4): Depth Anything's affine-invariant loss, gradient matching, CutMix
per-region weighting, scale-invariant / metric losses and feature alignment with a margin.

Shapes: predictions and targets are (B, H, W) float tensors; ``mask`` is a (B, H, W) bool tensor of pixels
that count (valid label, and the region for CutMix). Every loss returns a scalar: the mean over the images
of the batch of each image's loss, so an image with few valid pixels weighs as much as a full one. Images
with no usable pixel contribute 0 (and no NaN).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-6


def _count(mask: torch.Tensor) -> torch.Tensor:
    return mask.flatten(1).sum(dim=1)


def masked_median(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image median over the masked pixels, (B,); the lower median for an even count (torch's convention)."""
    values = torch.where(mask, x, torch.full_like(x, float("nan"))).flatten(1)
    median = torch.nanmedian(values, dim=1).values
    return torch.nan_to_num(median, nan=0.0)


def normalise_disparity(d: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Depth Anything's per-image normalisation: (d − t) / s, t = median(d), s = mean |d − t| over ``mask``.

    This removes the unknown scale and shift of a relative disparity, so prediction and label can be
    compared whatever their affine ambiguity.
    """
    t = masked_median(d, mask)[:, None, None]
    centred = d - t
    n = _count(mask).clamp(min=1)
    s = (centred.abs() * mask).flatten(1).sum(dim=1) / n
    return centred / s.clamp(min=EPS)[:, None, None]


def trimmed_mean(per_pixel: torch.Tensor, mask: torch.Tensor, trim: float) -> torch.Tensor:
    """Per-image mean of ``per_pixel`` over ``mask`` after dropping the ⌊trim·n⌋ largest values, (B,).

    Depth Anything V2 ignores the 10 % largest losses on pseudo-labelled images: noisy labels there
    (sky, reflections, thin structures) would otherwise dominate the gradient.
    """
    n = _count(mask)
    if trim <= 0.0:  # exact labels: a plain masked mean (no per-image sort)
        return (per_pixel * mask).flatten(1).sum(dim=1) / n.clamp(min=1).to(per_pixel.dtype)
    flat = torch.where(mask, per_pixel, torch.full_like(per_pixel, float("inf"))).flatten(1)
    keep = n - torch.floor(n.to(per_pixel.dtype) * trim).to(n.dtype)
    ordered, _ = torch.sort(flat, dim=1)
    rank = torch.arange(ordered.shape[1], device=ordered.device)[None, :]
    kept = rank < keep[:, None]
    total = torch.where(kept, ordered, torch.zeros_like(ordered)).sum(dim=1)
    return total / keep.clamp(min=1).to(per_pixel.dtype)


def affine_invariant_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                          trim: float = 0.0) -> torch.Tensor:
    """Mean |d̂_pred − d̂_target| over ``mask`` (both normalised per image), top ``trim`` fraction ignored."""
    return affine_invariant_per_image(pred, target, mask, trim).mean()


def affine_invariant_per_image(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                               trim: float = 0.0) -> torch.Tensor:
    residual = normalise_disparity(pred, mask) - normalise_disparity(target, mask)
    return trimmed_mean(residual.abs(), mask, trim)


def affine_and_gradient_per_image(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, trim: float = 0.0,
                                  gradient_weight: float = 2.0, scales: int = 4) -> torch.Tensor:
    """affine_invariant_per_image + gradient_weight * gradient_matching_per_image, normalising only once."""
    residual = normalise_disparity(pred, mask) - normalise_disparity(target, mask)
    total = trimmed_mean(residual.abs(), mask, trim)
    if gradient_weight:
        total = total + gradient_weight * _gradient_matching(residual, mask, scales)
    return total


def gradient_matching_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                           scales: int = 4) -> torch.Tensor:
    return gradient_matching_per_image(pred, target, mask, scales).mean()


def gradient_matching_per_image(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                                scales: int = 4) -> torch.Tensor:
    """Multi-scale gradient matching on the normalised disparities (MiDaS; Depth Anything V2 weight 2).

    R = d̂_pred − d̂_target; at each scale k (every 2^k-th pixel) the loss is the mean of |∂x R| and
    |∂y R| over neighbour pairs whose both pixels are in ``mask``; the scales are averaged. It keeps
    edges sharp: R is constant wherever the prediction is right up to the normalisation.
    """
    return _gradient_matching(normalise_disparity(pred, mask) - normalise_disparity(target, mask), mask, scales)


def _gradient_matching(residual: torch.Tensor, mask: torch.Tensor, scales: int) -> torch.Tensor:
    per_scale = []
    for k in range(scales):
        step = 2**k
        r = residual[:, ::step, ::step]
        m = mask[:, ::step, ::step]
        if r.shape[1] < 2 and r.shape[2] < 2:
            break
        mx = m[:, :, 1:] & m[:, :, :-1]
        my = m[:, 1:, :] & m[:, :-1, :]
        gx = (r[:, :, 1:] - r[:, :, :-1]).abs() * mx
        gy = (r[:, 1:, :] - r[:, :-1, :]).abs() * my
        n = _count(mx) + _count(my)
        per_scale.append((gx.flatten(1).sum(1) + gy.flatten(1).sum(1)) / n.clamp(min=1))
    return torch.stack(per_scale, dim=0).mean(dim=0)


def silog_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, lam: float = 0.85) -> torch.Tensor:
    return silog_per_image(pred, target, mask, lam).mean()


def silog_per_image(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, lam: float = 0.85) -> torch.Tensor:
    """Scale-invariant log loss (Eigen et al.): sqrt(mean(g²) − λ·mean(g)²), g = ln pred − ln target.

    Works on depth or inverse depth alike (g only changes sign). λ = 1 is fully scale-invariant; λ < 1
    keeps a (1 − λ) share of the absolute scale error, which is what metric/canonical labels teach.
    """
    n = _count(mask).clamp(min=1)
    g = (torch.log(pred.clamp(min=EPS)) - torch.log(target.clamp(min=EPS))) * mask
    mean_sq = (g**2).flatten(1).sum(1) / n
    mean = g.flatten(1).sum(1) / n
    return torch.sqrt((mean_sq - lam * mean**2).clamp(min=0.0) + 1e-12)  # finite gradient at a perfect fit


def log_l1_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |ln pred − ln target|: the metric error in relative terms (≈ AbsRel for small errors)."""
    n = _count(mask).clamp(min=1)
    g = (torch.log(pred.clamp(min=EPS)) - torch.log(target.clamp(min=EPS))).abs() * mask
    return (g.flatten(1).sum(1) / n).mean()


def cutmix_loss(per_image_loss, pred: torch.Tensor, target_a: torch.Tensor, target_b: torch.Tensor,
                valid_a: torch.Tensor, valid_b: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Loss of a CutMix image: each region against its own source image's label, weighted by area.

    The student saw image a outside ``region`` (B, H, W bool) and image b inside it; the teacher labelled
    a and b separately, so the loss is area(a)/A · L(pred, label_a | outside) + area(b)/A · L(pred, label_b |
    inside), with each region normalised on its own (Depth Anything V1). ``per_image_loss(pred, target,
    mask)`` returns the (B,) per-image losses.
    """
    area = region.flatten(1).to(pred.dtype).mean(dim=1)
    outside = per_image_loss(pred, target_a, valid_a & ~region)
    inside = per_image_loss(pred, target_b, valid_b & region)
    return ((1.0 - area) * outside + area * inside).mean()


def feature_alignment_loss(student: torch.Tensor, frozen: torch.Tensor, margin: float = 0.85) -> torch.Tensor:
    """1 − cosine similarity of (B, C, h, w) feature maps, pixels already above ``margin`` excluded.

    Depth Anything's semantic-prior loss: the margin leaves the student free to differ from the frozen
    encoder where depth needs it (two parts of one object at different depths) once it is close enough.
    """
    if student.shape != frozen.shape:
        frozen = F.interpolate(frozen, size=student.shape[-2:], mode="bilinear", align_corners=False)
    cosine = F.cosine_similarity(student, frozen.detach(), dim=1, eps=EPS)
    active = cosine < margin
    n = active.sum()
    if n == 0:
        return (student * 0.0).sum()  # keeps the graph (DDP needs every parameter used)
    return ((1.0 - cosine) * active).sum() / n
