"""Distillation losses against values computed by hand (plain Python arithmetic, not the code under test)."""

from __future__ import annotations

import math

import pytest
import torch

from depth_ros.training import augment, losses


def _row(values: list[float]) -> torch.Tensor:
    return torch.tensor([[values]], dtype=torch.float64)  # (1, 1, n)


def _all(t: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(t, dtype=torch.bool)


def test_normalisation_is_median_and_mean_absolute_deviation() -> None:
    d = _row([1, 2, 3, 4, 10])
    # t = median = 3; |d - t| = 2, 1, 0, 1, 7 -> s = 11/5
    expected = [(v - 3) / 2.2 for v in (1, 2, 3, 4, 10)]
    assert losses.normalise_disparity(d, _all(d))[0, 0].tolist() == pytest.approx(expected)


def test_affine_invariant_loss_hand_values_and_trimming() -> None:
    target = _row([1, 2, 3, 4, 10])
    pred = _row([1, 2, 3, 4, 5])
    p_hat = [(v - 3) / 1.2 for v in (1, 2, 3, 4, 5)]  # s = (2+1+0+1+2)/5
    t_hat = [(v - 3) / 2.2 for v in (1, 2, 3, 4, 10)]
    residuals = [abs(a - b) for a, b in zip(p_hat, t_hat, strict=True)]
    mask = _all(pred)
    assert float(losses.affine_invariant_loss(pred, target, mask)) == pytest.approx(sum(residuals) / 5)
    # 10 % of 5 pixels drops none; 20 % drops the largest one.
    assert float(losses.affine_invariant_loss(pred, target, mask, trim=0.1)) == pytest.approx(sum(residuals) / 5)
    kept = sorted(residuals)[:4]
    assert float(losses.affine_invariant_loss(pred, target, mask, trim=0.2)) == pytest.approx(sum(kept) / 4)


def test_affine_invariant_loss_ignores_scale_shift_and_masked_pixels() -> None:
    target = torch.rand(2, 6, 7, dtype=torch.float64) + 0.1
    pred = 3.5 * target + 0.7
    mask = _all(target)
    assert float(losses.affine_invariant_loss(pred, target, mask)) == pytest.approx(0.0, abs=1e-12)
    # Garbage in masked-out pixels changes nothing.
    mask[:, :2] = False
    spoiled = pred.clone()
    spoiled[:, :2] = 1e6
    assert float(losses.affine_invariant_loss(spoiled, target, mask)) == pytest.approx(0.0, abs=1e-12)


def test_gradient_matching_hand_value_single_scale() -> None:
    # 2x2 image; target's normalisation: values 0,1,2,3 -> lower median 1, s = (1+0+1+2)/4 = 1 -> -1,0,1,2.
    target = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]], dtype=torch.float64)
    # pred 0,0,0,4: median 0, s = 1 -> 0,0,0,4.
    pred = torch.tensor([[[0.0, 0.0], [0.0, 4.0]]], dtype=torch.float64)
    r = [[0 - -1, 0 - 0], [0 - 1, 4 - 2]]  # residual 1, 0 / -1, 2
    gx = [abs(r[0][1] - r[0][0]), abs(r[1][1] - r[1][0])]
    gy = [abs(r[1][0] - r[0][0]), abs(r[1][1] - r[0][1])]
    expected = (sum(gx) + sum(gy)) / 4
    got = losses.gradient_matching_loss(pred, target, _all(pred), scales=1)
    assert float(got) == pytest.approx(expected)
    assert float(losses.gradient_matching_loss(2 * target + 1, target, _all(target))) == pytest.approx(0.0, abs=1e-12)


def test_silog_and_log_l1_of_a_pure_scale_error() -> None:
    target = torch.rand(1, 4, 5, dtype=torch.float64) + 0.5
    pred = 2.0 * target
    mask = _all(target)
    # g = ln 2 everywhere: sqrt(ln2² − λ ln2²) = ln2·sqrt(1 − λ)
    assert float(losses.silog_loss(pred, target, mask, lam=0.85)) == pytest.approx(math.log(2) * math.sqrt(0.15))
    assert float(losses.silog_loss(pred, target, mask, lam=1.0)) == pytest.approx(0.0, abs=1e-5)
    assert float(losses.log_l1_loss(pred, target, mask)) == pytest.approx(math.log(2))


def test_cutmix_loss_weights_each_region_by_its_area() -> None:
    pred = torch.zeros(1, 4, 4, dtype=torch.float64)
    label_a = torch.ones_like(pred)
    label_b = torch.full_like(pred, 3.0)
    region = torch.zeros(1, 4, 4, dtype=torch.bool)
    region[0, :2, :2] = True  # a quarter of the image came from image b

    def mean_abs(p: torch.Tensor, t: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return ((p - t).abs() * m).flatten(1).sum(1) / m.flatten(1).sum(1)

    valid = _all(pred)
    got = losses.cutmix_loss(mean_abs, pred, label_a, label_b, valid, valid, region)
    assert float(got) == pytest.approx(0.75 * 1.0 + 0.25 * 3.0)


def test_cutmix_per_region_affine_loss_is_zero_for_a_region_wise_correct_prediction() -> None:
    gen = torch.Generator().manual_seed(0)
    label_a = torch.rand(1, 8, 8, generator=gen, dtype=torch.float64) + 0.1
    label_b = torch.rand(1, 8, 8, generator=gen, dtype=torch.float64) + 0.1
    region = torch.zeros(1, 8, 8, dtype=torch.bool)
    region[0, 2:6, 1:5] = True
    # Each region right up to its own scale and shift (the teacher labelled the two images separately).
    pred = torch.where(region, 5 * label_b + 2, 0.5 * label_a + 0.1)
    valid = _all(pred)
    per_region = losses.cutmix_loss(losses.affine_invariant_per_image, pred, label_a, label_b, valid, valid, region)
    assert float(per_region) == pytest.approx(0.0, abs=1e-12)
    # Scoring the mixed image against image a's labels alone would punish the correct prediction.
    assert float(losses.affine_invariant_loss(pred, label_a, valid)) > 0.1


def test_feature_alignment_margin() -> None:
    frozen = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]).T.reshape(1, 2, 1, 4)
    # cosines: 1 (excluded, above the margin), 0, -1, 0.6
    student = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.6, 0.8]]).T.reshape(1, 2, 1, 4)
    got = losses.feature_alignment_loss(student, frozen, margin=0.85)
    assert float(got) == pytest.approx(((1 - 0) + (1 - -1) + (1 - 0.6)) / 3)
    assert float(losses.feature_alignment_loss(frozen * 3, frozen)) == 0.0


def test_perturbations_are_seeded_and_cutmix_boxes_have_the_drawn_area() -> None:
    images = torch.rand(6, 3, 32, 40, generator=torch.Generator().manual_seed(1))
    one = augment.gaussian_blur(augment.colour_jitter(images, torch.Generator().manual_seed(5)),
                                torch.Generator().manual_seed(6), p=1.0)
    two = augment.gaussian_blur(augment.colour_jitter(images, torch.Generator().manual_seed(5)),
                                torch.Generator().manual_seed(6), p=1.0)
    assert torch.equal(one, two) and not torch.equal(one, images)
    assert float(one.min()) >= 0.0 and float(one.max()) <= 1.0
    boxes = augment.cutmix_boxes(200, 32, 40, torch.Generator().manual_seed(3), p=0.5)
    areas = boxes.flatten(1).float().mean(1)
    used = areas > 0
    assert 0.35 < float(used.float().mean()) < 0.65  # p = 0.5
    assert float(areas[used].min()) > 0.05 and float(areas[used].max()) < 0.6
