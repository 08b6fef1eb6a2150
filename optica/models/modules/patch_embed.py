"""Patch embedding for vision transformers (Dosovitskiy et al., 2021, "An Image is Worth 16x16
Words"): a strided convolution cuts the image into non-overlapping patches and projects each.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchEmbedding(nn.Module):
    """Image [B, C, H, W] → patch tokens [B, (H/p)·(W/p), hidden], row-major over the grid.

    Args:
        num_channels: Input channels (3 for RGB).
        hidden_size: Token width.
        patch_size: Side of a square patch (the convolution's kernel and stride).
        bias: Whether the projection has a bias (CLIP's has none, SigLIP's and ViT's do).
        allow_remainder: Ignore pixels past the last whole patch, as a VALID convolution does
            (SigLIP-so400m at 384 px: 27 patches of 14 px cover 378); otherwise such sizes are
            an error.
    """

    def __init__(
        self,
        num_channels: int,
        hidden_size: int,
        patch_size: int,
        *,
        bias: bool = True,
        allow_remainder: bool = False,
    ):
        super().__init__()
        self.patch_size = patch_size
        self.allow_remainder = allow_remainder
        self.proj = nn.Conv2d(num_channels, hidden_size, patch_size, stride=patch_size, bias=bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Embeds ``images``; height and width must be multiples of the patch size unless
        ``allow_remainder``."""
        height, width = images.shape[-2:]
        if not self.allow_remainder and (height % self.patch_size or width % self.patch_size):
            raise ValueError(
                f"image size {height}x{width} is not a multiple of patch size {self.patch_size}"
            )
        return self.proj(images).flatten(2).transpose(1, 2)

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Number of patch rows and columns for an image of ``height`` x ``width``."""
        return height // self.patch_size, width // self.patch_size
