"""Loading Depth Anything V2 weights: official ``.pth`` files and Hugging Face safetensors directories.

Official checkpoints are plain state dicts in the model's own key layout (DESIGN.md §3) and load
strictly. Hugging Face ``DepthAnythingForDepthEstimation`` directories (config.json +
*.safetensors) use other names and split the fused qkv projection into query/key/value; a fixed
key map translates them. Only ``torch.load(..., weights_only=True)`` is used: a checkpoint can
never run code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch

from depth_ros.nets.depth_anything_v2 import CONFIGS, DepthAnythingV2, build


class CheckpointError(ValueError):
    """The checkpoint does not fit the model; the message names the keys."""


def _key_pairs(depth: int) -> Iterator[tuple[str, str]]:
    """(official key, Hugging Face key) for every tensor except the fused qkv projections."""
    emb = "backbone.embeddings"
    yield "pretrained.cls_token", f"{emb}.cls_token"
    yield "pretrained.mask_token", f"{emb}.mask_token"
    yield "pretrained.pos_embed", f"{emb}.position_embeddings"
    for p in ("weight", "bias"):
        yield f"pretrained.patch_embed.proj.{p}", f"{emb}.patch_embeddings.projection.{p}"
        yield f"pretrained.norm.{p}", f"backbone.layernorm.{p}"
    for i in range(depth):
        src, dst = f"pretrained.blocks.{i}", f"backbone.encoder.layer.{i}"
        yield f"{src}.ls1.gamma", f"{dst}.layer_scale1.lambda1"
        yield f"{src}.ls2.gamma", f"{dst}.layer_scale2.lambda1"
        for p in ("weight", "bias"):
            for name in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                yield f"{src}.{name}.{p}", f"{dst}.{name}.{p}"
            yield f"{src}.attn.proj.{p}", f"{dst}.attention.output.dense.{p}"
    head = "depth_head"
    for i in range(4):
        for p in ("weight", "bias"):
            yield f"{head}.projects.{i}.{p}", f"neck.reassemble_stage.layers.{i}.projection.{p}"
            if i != 2:  # resize layer 2 is an identity
                yield f"{head}.resize_layers.{i}.{p}", f"neck.reassemble_stage.layers.{i}.resize.{p}"
        yield f"{head}.scratch.layer{i + 1}_rn.weight", f"neck.convs.{i}.weight"
    # HF orders the fusion stages coarse to fine: refinenet4 is fusion layer 0.
    for i in range(1, 5):
        src, dst = f"{head}.scratch.refinenet{i}", f"neck.fusion_stage.layers.{4 - i}"
        for p in ("weight", "bias"):
            yield f"{src}.out_conv.{p}", f"{dst}.projection.{p}"
            for unit in (1, 2):
                for conv in (1, 2):
                    yield f"{src}.resConfUnit{unit}.conv{conv}.{p}", f"{dst}.residual_layer{unit}.convolution{conv}.{p}"
    for p in ("weight", "bias"):
        yield f"{head}.scratch.output_conv1.{p}", f"head.conv1.{p}"
        yield f"{head}.scratch.output_conv2.0.{p}", f"head.conv2.{p}"
        yield f"{head}.scratch.output_conv2.2.{p}", f"head.conv3.{p}"


def official_to_hf(state: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    """Official layout -> Hugging Face layout (used by the tests' round trip and by users converting back)."""
    out = {dst: state[src] for src, dst in _key_pairs(depth)}
    for i in range(depth):
        qkv_w, qkv_b = state[f"pretrained.blocks.{i}.attn.qkv.weight"], state[f"pretrained.blocks.{i}.attn.qkv.bias"]
        for part, w, b in zip(("query", "key", "value"), qkv_w.chunk(3), qkv_b.chunk(3), strict=True):
            out[f"backbone.encoder.layer.{i}.attention.attention.{part}.weight"] = w.contiguous()
            out[f"backbone.encoder.layer.{i}.attention.attention.{part}.bias"] = b.contiguous()
    return out


def hf_to_official(state: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    """Hugging Face layout -> official layout; unknown HF keys raise (nothing is silently dropped)."""
    remaining = dict(state)
    out: dict[str, torch.Tensor] = {}
    missing: list[str] = []
    for src, dst in _key_pairs(depth):
        if dst in remaining:
            out[src] = remaining.pop(dst)
        else:
            missing.append(dst)
    for i in range(depth):
        base = f"backbone.encoder.layer.{i}.attention.attention"
        names = [f"{base}.{part}.{p}" for p in ("weight", "bias") for part in ("query", "key", "value")]
        if all(n in remaining for n in names):
            tensors = [remaining.pop(n) for n in names]
            out[f"pretrained.blocks.{i}.attn.qkv.weight"] = torch.cat(tensors[:3])
            out[f"pretrained.blocks.{i}.attn.qkv.bias"] = torch.cat(tensors[3:])
        else:
            missing.extend(n for n in names if n not in remaining)
    if missing or remaining:
        raise CheckpointError(_describe(missing, list(remaining), "Hugging Face checkpoint"))
    return out


def _describe(missing: list[str], unexpected: list[str], what: str) -> str:
    def some(keys: list[str]) -> str:
        return ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")

    parts = []
    if missing:
        parts.append(f"missing keys: {some(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {some(unexpected)}")
    return f"{what} does not match the model ({'; '.join(parts)}). Check the encoder (vits/vitb/vitl) and head"


def load_state(model: DepthAnythingV2, state: dict[str, torch.Tensor], what: str) -> DepthAnythingV2:
    """Strict load with a message naming missing/unexpected keys and shape mismatches."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise CheckpointError(_describe(missing, unexpected, what))
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items() if state[k].shape != v.shape]
    if shapes:
        raise CheckpointError(f"{what}: tensor shapes do not match the model: {'; '.join(shapes[:4])}. "
                              "Check the encoder (vits/vitb/vitl)")
    model.load_state_dict(state, strict=True)
    return model


def read_pth(path: str | Path) -> dict[str, torch.Tensor]:
    """An official checkpoint's state dict (weights_only: no pickled code runs)."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError / RuntimeError for unsafe or corrupt files
        raise CheckpointError(f"cannot read {path} as a weights-only checkpoint: {exc}") from exc
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # some training scripts wrap the state dict
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors")
    return state


def read_hf_dir(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """(state dict, config.json) of a Hugging Face safetensors model directory."""
    from safetensors.torch import load_file

    directory = Path(path)
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{directory} has no .safetensors files (expected a Hugging Face model directory)")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(str(file)))
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    return state, config


_WIDTH_TO_ENCODER = {cfg.vit.dim: name for name, cfg in CONFIGS.items()}


def infer_encoder(state: dict[str, torch.Tensor]) -> str:
    for key in ("pretrained.cls_token", "backbone.embeddings.cls_token"):
        if key in state:
            width = int(state[key].shape[-1])
            if width in _WIDTH_TO_ENCODER:
                return _WIDTH_TO_ENCODER[width]
            raise CheckpointError(f"embedding width {width} is not ViT-S/B/L (384/768/1024)")
    raise CheckpointError("cannot tell the encoder: the checkpoint has no cls_token")


def load_depth_anything_v2(path: str | Path, encoder: str | None = None, head: str | None = None,
                           max_depth: float | None = None, depth: int | None = None) -> DepthAnythingV2:
    """Build and load a DA-V2 model from an official .pth or a Hugging Face directory.

    ``encoder`` defaults to the one the weights' width implies; ``head`` to "relative" (for HF
    directories, config.json's depth_estimation_type); ``max_depth`` to 20 (HF: config's max_depth).
    """
    source = Path(path)
    if source.is_dir():
        hf_state, config = read_hf_dir(source)
        encoder = encoder or infer_encoder(hf_state)
        depth = CONFIGS[encoder].vit.depth
        state = hf_to_official(hf_state, depth)
        head = head or str(config.get("depth_estimation_type", "relative"))
        if max_depth is None and config.get("max_depth") is not None:
            max_depth = float(config["max_depth"])  # type: ignore[arg-type]
    else:
        state = read_pth(source)
        encoder = encoder or infer_encoder(state)
    model = build(encoder, head=head or "relative", max_depth=20.0 if max_depth is None else max_depth,  # type: ignore[arg-type]
                  depth=depth)
    return load_state(model, state, str(source)).eval()
