"""Distil a student (`depth-ros train`): data, perturbations, losses, validation, checkpoints, export.

Single process on CPU or one GPU; under ``torchrun`` (WORLD_SIZE > 1) each rank trains on its shard of every
epoch's batches with DistributedDataParallel and rank 0 validates, checkpoints and exports.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from depth_ros.core.evaluation import align, depth_metrics
from depth_ros.training import augment, losses
from depth_ros.training.data import Examples

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class TrainConfig:
    arch: str = "student_cnn_s"
    width: int = 256
    height: int = 192
    epochs: int = 10
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    val_fraction: float = 0.1
    cutmix_p: float = 0.5
    trim: float = 0.1  # top fraction of per-pixel losses ignored on pseudo labels
    gradient_weight: float = 2.0
    metric_weight: float = 1.0  # SILog + log-L1 on canonical (metric) labels
    feature_weight: float = 1.0  # feature alignment to a frozen encoder (only with one: --align-encoder)
    feature_margin: float = 0.85  # pixels already this similar are left alone (DESIGN.md §4)
    perturb: bool = True
    max_depth: float = 20.0  # declared in the exported contract
    threads: int = 0
    command: str = ""
    extra: dict = field(default_factory=dict)


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    val_abs_rel: float
    val_delta1: float
    seconds: float


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), world
    return 0, 1


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # third-party code only; this module uses explicit Generators
    torch.use_deterministic_algorithms(True, warn_only=True)


def split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/validation split of n examples (at least one of each when n ≥ 2)."""
    order = np.random.default_rng([seed, 7]).permutation(n)
    n_val = min(n - 1, max(1, int(round(n * val_fraction)))) if n >= 2 and val_fraction > 0 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def normalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def to_tensors(data: Examples, index: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor,
                                                                                 torch.Tensor]:
    rgb = torch.from_numpy(data.rgb[index]).to(device).permute(0, 3, 1, 2).float() / 255.0
    label = torch.from_numpy(data.label[index]).to(device)
    valid = torch.isfinite(label) & (label > 0)
    return rgb, torch.nan_to_num(label, nan=1.0), valid


class FrozenEncoder(torch.nn.Module):
    """A frozen DINOv2 (from a Depth Anything V2 checkpoint): its last used block's patch features, (B, C, h, w).

    Takes the student's (ImageNet-normalised) input, resized to multiples of the 14-pixel patch.
    """

    def __init__(self, checkpoint: str | Path) -> None:
        super().__init__()
        from depth_ros.nets.checkpoints import load_depth_anything_v2

        model = load_depth_anything_v2(checkpoint)
        self.encoder = model.pretrained.eval().requires_grad_(False)
        self.layer = model.config.layers[-1]
        self.channels = model.config.vit.dim

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torch.nn import functional as F

        patch = 14
        h, w = (max(patch, round(side / patch) * patch) for side in x.shape[-2:])
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        tokens = self.encoder.intermediate(x, (self.layer,))[0]
        return tokens.transpose(1, 2).reshape(x.shape[0], self.channels, h // patch, w // patch)


class AlignedStudent(torch.nn.Module):
    """The student plus a 1x1 projection of its deepest features to the frozen encoder's width (training only)."""

    def __init__(self, student: torch.nn.Module, channels: int) -> None:
        super().__init__()
        self.student = student
        self.projection = torch.nn.Conv2d(student.feature_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, deepest = self.student.forward_features(x)
        return out, self.projection(deepest)


def region_loss(config: TrainConfig, kind: str, trim: float):
    """Per-image loss of one region: affine-invariant + gradient matching (+ metric terms on canonical labels)."""

    def per_image(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        total = losses.affine_and_gradient_per_image(pred, target, mask, trim, config.gradient_weight)
        if kind == "canonical" and config.metric_weight > 0:
            n = mask.flatten(1).sum(1).clamp(min=1)
            log_l1 = ((torch.log(pred.clamp(min=1e-6)) - torch.log(target.clamp(min=1e-6))).abs() * mask)
            total = total + config.metric_weight * (losses.silog_per_image(pred, target, mask)
                                                    + log_l1.flatten(1).sum(1) / n)
        return total

    return per_image


@torch.no_grad()
def validate(model: torch.nn.Module, data: Examples, index: np.ndarray, device: torch.device,
             batch_size: int = 16) -> tuple[float, float]:
    """Mean AbsRel and δ1 of the student against the labels (depth = 1/label up to f/W, which cancels).

    Canonical labels are scored as they are (metric); relative ones after a least-squares scale and shift in
    disparity space (the evaluation module's standard alignment).
    """
    if index.size == 0:
        return math.nan, math.nan
    model.eval()
    abs_rel, delta1 = [], []
    for start in range(0, index.size, batch_size):
        rgb, label, valid = to_tensors(data, index[start : start + batch_size], device)
        pred = model(normalise(rgb))[:, 0].float().cpu().numpy()
        for p, t, v in zip(pred, label.cpu().numpy(), valid.cpu().numpy(), strict=True):
            truth = np.where(v, 1.0 / np.maximum(t, 1e-9), np.nan)
            if data.kind == "canonical":
                with np.errstate(divide="ignore"):
                    depth = np.where(p > 0, 1.0 / p, np.nan)
            else:
                depth, _ = align(p, "disparity", truth, v, "lstsq_disparity")
            m = depth_metrics(depth, truth, min_depth=1e-6, boundary=False)
            abs_rel.append(m.abs_rel)
            delta1.append(m.delta1)
    model.train()
    return float(np.nanmean(abs_rel)), float(np.nanmean(delta1))


def _save(path: Path, model: torch.nn.Module, optimiser: torch.optim.Optimizer, scheduler, epoch: int,
          generator: torch.Generator, config: TrainConfig, history: list[EpochResult],
          learner: torch.nn.Module | None = None) -> None:
    state = {
        "model": model.state_dict(), "optimiser": optimiser.state_dict(), "scheduler": scheduler.state_dict(),
        "epoch": epoch, "torch_rng": torch.get_rng_state(), "augment_rng": generator.get_state(),
        "config": json.dumps(asdict(config)), "history": json.dumps([asdict(h) for h in history]),
    }
    if isinstance(learner, AlignedStudent):
        state["projection"] = learner.projection.state_dict()
    tmp = path.with_suffix(".partial")
    torch.save(state, tmp)
    tmp.replace(path)


# Training images measured to re-express the batch norms of a student loaded from ONNX (onnx_weights).
CALIBRATION_IMAGES = 512


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint (tensors, numbers and JSON strings only: loaded with weights_only=True, no pickled code)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def build_student(arch: str) -> torch.nn.Module:
    from depth_ros.nets import build

    return build(arch)


def train(config: TrainConfig, data: Examples, out: Path, resume: str | Path | None = None,
          log=print, init: str | Path | None = None, align_encoder: str | Path | None = None,
          stop_after: int | None = None) -> list[EpochResult]:
    """Train a student on ``data``; writes out/last.pt (every epoch) and out/best.pt (best validation AbsRel).

    ``resume``: continue from a last.pt exactly where it stopped (weights, optimiser, schedule and random
    states): a resumed run ends with the weights and history of an uninterrupted one. ``stop_after``: return
    after this many epochs of this call (the schedule still spans ``config.epochs``), to train in chunks.
    """
    rank, world = _distributed()
    seed_everything(config.seed)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    device = torch.device(f"cuda:{rank % max(torch.cuda.device_count(), 1)}" if torch.cuda.is_available() else "cpu")
    out.mkdir(parents=True, exist_ok=True)
    train_index, val_index = split(len(data), config.val_fraction, config.seed)
    if train_index.size == 0:
        raise ValueError("no training examples")
    model = build_student(config.arch)
    if init is not None and resume is None and Path(init).suffix == ".onnx":
        from depth_ros.training.onnx_weights import load_student_onnx, recalibrate_batch_norm

        load_student_onnx(model, init)
        calibration = train_index[:CALIBRATION_IMAGES]
        images = recalibrate_batch_norm(model, (normalise(to_tensors(data, calibration[i : i + config.batch_size],
                                                                     torch.device("cpu"))[0])
                                                for i in range(0, calibration.size, config.batch_size)))
        log(f"initialised from {init} (batch norm statistics measured on {images} training images)")
    elif init is not None and resume is None:
        model.load_state_dict(load_checkpoint(init)["model"])  # fully convolutional: any input size
        log(f"initialised from {init}")
    model = model.to(device)
    frozen: FrozenEncoder | None = None
    learner: torch.nn.Module = model  # what the optimiser trains: the student (+ its feature projection)
    if align_encoder is not None:
        if not hasattr(model, "forward_features"):
            raise ValueError(f"student {config.arch!r} exposes no features to align (forward_features)")
        frozen = FrozenEncoder(align_encoder).to(device)
        learner = AlignedStudent(model, frozen.channels).to(device)
        log(f"feature alignment to {align_encoder} (weight {config.feature_weight}, margin {config.feature_margin})")
    optimiser = torch.optim.AdamW(learner.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, math.ceil(train_index.size / (config.batch_size * world)))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, config.lr, total_steps=config.epochs * steps_per_epoch,
                                                    pct_start=0.15)
    generator = torch.Generator().manual_seed(config.seed + 1000 * rank)
    history: list[EpochResult] = []
    first_epoch = 0
    if resume is not None:
        state = load_checkpoint(resume)
        model.load_state_dict(state["model"])
        if frozen is not None and "projection" in state:
            learner.projection.load_state_dict(state["projection"])
        optimiser.load_state_dict(state["optimiser"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        generator.set_state(state["augment_rng"])
        history = [EpochResult(**h) for h in json.loads(state["history"])]
        first_epoch = int(state["epoch"]) + 1
        log(f"resumed from {resume} at epoch {first_epoch}")
    trained = learner
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(learner, device_ids=[device.index] if device.type == "cuda" else None)
    trim = config.trim if data.pseudo else 0.0
    loss_fn = region_loss(config, data.kind, trim)
    best = min((h.val_abs_rel for h in history if math.isfinite(h.val_abs_rel)), default=math.inf)
    model.train()
    last_epoch = config.epochs if stop_after is None else min(config.epochs, first_epoch + max(0, stop_after))
    for epoch in range(first_epoch, last_epoch):
        t0 = time.perf_counter()
        order = train_index[np.random.default_rng([config.seed, epoch]).permutation(train_index.size)]
        order = order[rank::world]  # this rank's shard (DistributedSampler's split, on an explicit permutation)
        total, count = 0.0, 0
        for start in range(0, order.size, config.batch_size):
            batch = np.sort(order[start : start + config.batch_size])
            rgb, label, valid = to_tensors(data, batch, device)
            b, _, h, w = rgb.shape
            region = torch.zeros(b, h, w, dtype=torch.bool, device=device)
            partner = torch.roll(torch.arange(b), 1)
            if config.perturb:
                if b > 1 and config.cutmix_p > 0:
                    region = augment.cutmix_boxes(b, h, w, generator, config.cutmix_p).to(device)
                    rgb = augment.apply_cutmix(rgb, region, partner.to(device))
                rgb = augment.gaussian_blur(augment.colour_jitter(rgb, generator), generator)
            x = normalise(rgb)
            if frozen is not None:
                pred, features = trained(x)
                pred = pred[:, 0]
            else:
                pred = trained(x)[:, 0]
            loss = losses.cutmix_loss(loss_fn, pred, label, label[partner], valid, valid[partner], region)
            if frozen is not None:  # the semantic prior of the frozen encoder, on what the student saw
                loss = loss + config.feature_weight * losses.feature_alignment_loss(features, frozen(x),
                                                                                     config.feature_margin)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if scheduler.last_epoch < scheduler.total_steps - 1:
                scheduler.step()
            total += float(loss.detach()) * b
            count += b
        abs_rel, delta1 = validate(model, data, val_index, device) if rank == 0 else (math.nan, math.nan)
        result = EpochResult(epoch, total / max(count, 1), abs_rel, delta1, time.perf_counter() - t0)
        history.append(result)
        if rank == 0:
            log(f"epoch {epoch + 1}/{config.epochs}: loss {result.train_loss:.4f}  val AbsRel {abs_rel:.4f}  "
                f"delta1 {delta1:.3f}  ({result.seconds:.1f} s)")
            _save(out / "last.pt", model, optimiser, scheduler, epoch, generator, config, history, learner)
            if math.isfinite(abs_rel) and abs_rel < best or not math.isfinite(best) and epoch == config.epochs - 1:
                best = abs_rel if math.isfinite(abs_rel) else best
                _save(out / "best.pt", model, optimiser, scheduler, epoch, generator, config, history, learner)
    return history


def export_onnx(model: torch.nn.Module, out: str | Path, config: TrainConfig, kind: str, name: str = "",
                source: str = "", mirror_average: bool = False) -> Path:
    """ONNX (opset 17, fixed input size, a dynamic batch) with its depth_ros contract embedded.

    The batch is dynamic (dim 0 "batch") so that one node serving several cameras runs their frames in one
    forward pass (DepthEstimator.estimate_batch); a single frame runs as batch 1. ``mirror_average`` exports
    the network averaged with its prediction on the mirrored image (nets.students.MirrorAveraged): twice the
    work, one graph, the same contract."""
    import onnx

    from depth_ros.backends.export import BATCH_DIM
    from depth_ros.backends.graph_models import set_contract
    from depth_ros.core.contract import ModelContract
    from depth_ros.nets.students import MirrorAveraged

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    if mirror_average:
        model = MirrorAveraged(model).eval()
    dummy = torch.zeros(2, 3, config.height, config.width)  # traced at 2: a 1 could be taken as broadcastable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (dummy,), str(out), opset_version=17, dynamo=False, input_names=["image"],
                          output_names=["depth"], dynamic_axes={"image": {0: BATCH_DIM}, "depth": {0: BATCH_DIM}})
    proto = onnx.load(str(out))
    contract = ModelContract.from_dict({
        "output_kind": "canonical_inverse_depth" if kind == "canonical" else "relative_disparity",
        "input": {"height": config.height, "width": config.width, "resize": "stretch", "channels": "rgb",
                  "scale": 1.0 / 255.0, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "min_depth": 0.1, "max_depth": config.max_depth,
        "name": name or f"{config.arch} student", "license": "Apache-2.0",
        "source": (source or f"trained with depth_ros: {config.command}")
        + ("; exported mirror-averaged (the mean of the predictions on the image and on its mirror image)"
           if mirror_average else ""),
    })
    set_contract(proto, contract)
    onnx.save(proto, str(out))
    return out
