"""Learned absolute position embeddings, and their resampling to a new patch grid so a checkpoint
trained at one resolution can run at another (as timm's ``resample_abs_pos_embed`` and the ViT
paper's fine-tuning at higher resolution do).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class PositionEmbedding(nn.Module):
    """Adds a learned embedding per position to tokens [B, N, hidden].

    Args:
        num_positions: Positions embedded (prefix tokens such as CLS included).
        hidden_size: Token width.
    """

    def __init__(self, num_positions: int, hidden_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_positions, hidden_size))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Returns ``tokens`` plus the embeddings of positions ``0..N-1``."""
        num_tokens = tokens.shape[1]
        if num_tokens > self.weight.shape[0]:
            raise ValueError(
                f"{num_tokens} tokens but only {self.weight.shape[0]} learned positions; "
                "resample the position embeddings for this image size"
            )
        return tokens + self.weight[:num_tokens].to(tokens.dtype)


def resample_abs_pos_embed(
    pos_embed: torch.Tensor,
    new_size: tuple[int, int],
    *,
    old_size: tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
    mode: str = "bicubic",
    antialias: bool = True,
) -> torch.Tensor:
    """Resamples grid position embeddings to a new grid, keeping prefix (class) tokens as is.

    Args:
        pos_embed: [N, hidden] or [1, N, hidden]: ``num_prefix_tokens`` rows, then a row-major grid.
        new_size: Target grid (rows, columns).
        old_size: Source grid; inferred as square when omitted.
        num_prefix_tokens: Leading rows that are not on the grid (1 for CLS, 0 for SigLIP).
        mode: Interpolation mode for ``F.interpolate``.
        antialias: Low-pass filter when shrinking (no effect when growing).

    Returns:
        The resampled embeddings (same layout and dtype); the input itself if the grid is unchanged.
    """
    squeeze = pos_embed.dim() == 2
    table = pos_embed.unsqueeze(0) if squeeze else pos_embed
    prefix, grid = table[:, :num_prefix_tokens], table[:, num_prefix_tokens:]
    old_size = old_size or _square_grid(grid.shape[1])
    if tuple(old_size) == tuple(new_size):
        return pos_embed
    hidden = grid.shape[-1]
    grid = grid.reshape(1, *old_size, hidden).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=new_size, mode=mode, antialias=antialias, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, hidden).to(pos_embed.dtype)
    out = torch.cat((prefix, grid), dim=1)
    return out.squeeze(0) if squeeze else out


def _square_grid(num_positions: int) -> tuple[int, int]:
    side = math.isqrt(num_positions)
    if side * side != num_positions:
        raise ValueError(f"{num_positions} grid positions are not a square; pass old_size")
    return side, side
