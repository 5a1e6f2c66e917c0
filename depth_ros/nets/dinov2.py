"""DINOv2 ViT encoder as used by Depth Anything V2 (DESIGN.md §3).

Parameter names follow the official checkpoints (``cls_token``, ``pos_embed``, ``mask_token``,
``patch_embed.proj``, ``blocks.{i}.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}``,
``norm``) so that ``load_state_dict(strict=True)`` takes them unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

PATCH = 14
PRETRAIN_SIZE = 518  # 37 x 37 patches: pos_embed holds 37*37 + 1 (cls) entries
# The official code adds 0.1 to the target grid size before deriving the interpolation scale
# (a work-around for floating-point rounding in the original DINO); parity needs the same.
INTERPOLATE_OFFSET = 0.1


@dataclass(frozen=True)
class VitConfig:
    dim: int
    depth: int
    heads: int
    mlp_ratio: float = 4.0


class PatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=PATCH, stride=PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (N, tokens, dim)


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(n, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(n, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: VitConfig) -> None:
        super().__init__()
        # eps 1e-6 as in DINOv2; opset >= 17 exports this as one LayerNormalization (FP32 in TensorRT).
        self.norm1 = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.attn = Attention(cfg.dim, cfg.heads)
        self.ls1 = LayerScale(cfg.dim)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.mlp = Mlp(cfg.dim, int(cfg.dim * cfg.mlp_ratio))
        self.ls2 = LayerScale(cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoV2(nn.Module):
    def __init__(self, cfg: VitConfig) -> None:
        super().__init__()
        self.cfg = cfg
        grid = PRETRAIN_SIZE // PATCH
        self.patch_embed = PatchEmbed(cfg.dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, cfg.dim))
        self.mask_token = nn.Parameter(torch.zeros(1, cfg.dim))  # unused at inference, kept for strict loading
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)

    def position_embedding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """pos_embed resampled (bicubic) from the 37x37 pretraining grid to grid_h x grid_w patches."""
        # Plain ints: under ONNX tracing the grid becomes a constant, so an exported graph is valid for
        # its export size only (the official offset-scaled bicubic resampling has no shape-generic trace).
        grid_h, grid_w = int(grid_h), int(grid_w)
        base = self.pos_embed.shape[1] - 1
        if grid_h * grid_w == base and grid_h == grid_w:
            return self.pos_embed
        side = int(math.sqrt(base))
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        grid = patch_pos.float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
        scale = ((grid_h + INTERPOLATE_OFFSET) / side, (grid_w + INTERPOLATE_OFFSET) / side)
        grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", align_corners=False)
        patch_pos = grid.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1).to(self.pos_embed.dtype)
        return torch.cat((cls_pos, patch_pos), dim=1)

    def intermediate(self, x: torch.Tensor, layers: tuple[int, ...]) -> list[torch.Tensor]:
        """Normalised patch tokens (CLS dropped) after each block in ``layers``: (N, tokens, dim) each."""
        grid_h, grid_w = x.shape[-2] // PATCH, x.shape[-1] // PATCH
        tokens = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(tokens.shape[0], -1, -1), tokens), dim=1)
        tokens = tokens + self.position_embedding(grid_h, grid_w)
        outputs = []
        for index, block in enumerate(self.blocks):
            tokens = block(tokens)
            if index in layers:
                outputs.append(self.norm(tokens)[:, 1:])
            if index >= layers[-1]:
                break  # later blocks do not feed the head
        return outputs
