"""Position-embedding resampling and patch embedding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from optica.models.modules.patch_embed import PatchEmbedding
from optica.models.modules.pos_embed import PositionEmbedding, resample_abs_pos_embed


def test_unchanged_grid_is_identity():
    table = torch.randn(1 + 16, 8)
    assert resample_abs_pos_embed(table, (4, 4)) is table


def test_class_token_kept_and_grid_resampled_bicubically():
    table = torch.randn(1, 1 + 9, 8)
    out = resample_abs_pos_embed(table, (6, 4), antialias=False)
    assert out.shape == (1, 1 + 24, 8)
    assert torch.equal(out[:, 0], table[:, 0])
    grid = table[:, 1:].reshape(1, 3, 3, 8).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(6, 4), mode="bicubic", align_corners=False)
    torch.testing.assert_close(out[0, 1:], expected.permute(0, 2, 3, 1).reshape(24, 8))


def test_constant_field_stays_constant_and_dtype_is_kept():
    table = torch.full((16, 4), 0.5, dtype=torch.bfloat16)
    out = resample_abs_pos_embed(table, (2, 2), num_prefix_tokens=0)
    assert out.dtype == torch.bfloat16 and out.shape == (4, 4)
    torch.testing.assert_close(out, torch.full((4, 4), 0.5, dtype=torch.bfloat16))


def test_non_square_grid_needs_old_size():
    table = torch.randn(1 + 6, 4)
    with pytest.raises(ValueError, match="not a square; pass old_size"):
        resample_abs_pos_embed(table, (3, 3))
    assert resample_abs_pos_embed(table, (3, 3), old_size=(2, 3)).shape == (1 + 9, 4)


def test_position_embedding_refuses_too_many_tokens():
    embedding = PositionEmbedding(5, 4)
    torch.nn.init.zeros_(embedding.weight)
    assert torch.equal(embedding(torch.ones(2, 3, 4)), torch.ones(2, 3, 4))
    with pytest.raises(ValueError, match="resample"):
        embedding(torch.ones(1, 6, 4))


def test_patch_embedding_is_row_major_over_the_grid():
    embed = PatchEmbedding(3, 8, patch_size=4)
    images = torch.randn(2, 3, 8, 12)
    tokens = embed(images)
    assert tokens.shape == (2, 6, 8) and embed.grid_size(8, 12) == (2, 3)
    second_patch = embed.proj(images[:, :, 0:4, 4:8]).flatten(1)
    torch.testing.assert_close(tokens[:, 1], second_patch)
    with pytest.raises(ValueError, match="not a multiple of patch size 4"):
        embed(torch.randn(1, 3, 6, 8))
