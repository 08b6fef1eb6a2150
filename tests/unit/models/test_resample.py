"""Restoring a vision checkpoint into a model of another resolution: position tables are resampled
to the model's patch grid (class token kept), anything else that does not fit is one line."""

import logging
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from optica.checkpoint import load_weights_into, save
from optica.models import LlavaConfigTiny, LlavaModel, ViTClassificationModel, ViTConfigTiny
from optica.models.errors import CheckpointError
from optica.models.vision.resample import GridResampler, grid_resamplers

TABLE = "backbone.position_embeddings.weight"


def reference(table: torch.Tensor, old: tuple[int, int], new: tuple[int, int]) -> torch.Tensor:
    """The class row, then the grid resampled by ``F.interpolate`` (timm's settings)."""
    hidden = table.shape[-1]
    grid = table[1:].reshape(1, *old, hidden).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new, mode="bicubic", antialias=True, align_corners=False)
    return torch.cat((table[:1], grid.permute(0, 2, 3, 1).reshape(-1, hidden)))


def vit(size: int, **overrides) -> ViTClassificationModel:
    return ViTClassificationModel(ViTConfigTiny(img_h=size, img_w=size, **overrides))


def test_resampled_grid_equals_the_interpolate_reference():
    resampler = grid_resamplers(vit(48))[TABLE]
    assert (resampler.grid, resampler.num_prefix_tokens, resampler.hidden_size) == ((6, 6), 1, 64)
    table = torch.randn(1 + 16, 64)
    out = resampler(table)
    assert out.shape == (1 + 36, 64)
    assert torch.equal(out[0], table[0])  # the class token is no grid cell
    torch.testing.assert_close(out, reference(table, (4, 4), (6, 6)))


def test_a_constant_grid_stays_constant_when_resampled():
    """Hand-computed: interpolating a constant field gives the constant everywhere."""
    resampler = GridResampler(key="t", num_prefix_tokens=1, grid=(5, 7), hidden_size=3)
    table = torch.cat((torch.full((1, 3), -2.0), torch.full((9, 3), 0.25)))
    out = resampler(table)
    assert out.shape == (1 + 35, 3) and torch.equal(out[0], table[0])
    torch.testing.assert_close(out[1:], torch.full((35, 3), 0.25))


def test_same_grid_is_the_identity():
    resampler = grid_resamplers(vit(32))[TABLE]
    table = torch.randn(1 + 16, 64)
    assert resampler(table) is table


def test_a_non_square_checkpoint_grid_is_read_from_its_config():
    source = ViTConfigTiny(img_h=16, img_w=32)  # 2x4 patches: not a square
    resampler = grid_resamplers(vit(32), source)[TABLE]
    assert resampler.source_grid((1 + 8, 64)) == (2, 4)
    table = torch.randn(1 + 8, 64)
    torch.testing.assert_close(resampler(table), reference(table, (2, 4), (4, 4)))
    assert not grid_resamplers(vit(32))[TABLE].accepts((1 + 8, 64))  # no config: not a grid


def test_only_tables_of_the_same_width_are_accepted():
    resampler = grid_resamplers(vit(48))[TABLE]
    assert resampler.accepts((1 + 16, 64))
    assert not resampler.accepts((1 + 16, 32)) and not resampler.accepts((1, 64))


def test_every_vision_encoder_inside_a_model_gets_a_resampler():
    keys = set(grid_resamplers(LlavaModel(LlavaConfigTiny())))
    assert len(keys) == 1 and next(iter(keys)).endswith("position_embeddings.weight")
    assert set(keys) <= set(LlavaModel(LlavaConfigTiny()).state_dict())


def test_restore_into_a_larger_image_resamples_with_one_info_line(tmp_path, caplog):
    source = vit(32).init_weights(seed=3)
    save(source, tmp_path / "ckpt")
    target = vit(48)
    with caplog.at_level(logging.INFO, logger="optica.checkpoint"):
        load_weights_into(target, tmp_path / "ckpt")
    lines = [r.getMessage() for r in caplog.records if "resampled" in r.getMessage()]
    assert lines == [
        f"{TABLE}: resampled the position embeddings from a 4x4 to a 6x6 patch grid "
        "(bicubic, 1 class token(s) kept)"
    ]
    stored, restored = source.state_dict(), target.state_dict()
    torch.testing.assert_close(restored[TABLE], reference(stored[TABLE], (4, 4), (6, 6)))
    assert all(torch.equal(restored[k], stored[k]) for k in stored if k != TABLE)
    assert target(torch.randn(2, 3, 48, 48)).shape == (2, 10)


def test_other_mismatches_stay_one_line_naming_key_and_shapes(tmp_path):
    save(vit(32).init_weights(seed=3), tmp_path / "ckpt")
    with pytest.raises(CheckpointError) as caught:
        load_weights_into(vit(48, num_classes=3), tmp_path / "ckpt")
    message = str(caught.value)
    assert "\n" not in message and "position_embeddings" not in message
    assert "head.weight [10, 64] (expected [3, 64])" in message
    wide = replace(ViTConfigTiny(), hidden_size=32, ffn_hidden_size=64)
    save(ViTClassificationModel(wide).init_weights(seed=3), tmp_path / "narrow")
    with pytest.raises(CheckpointError, match=rf"{TABLE} \[17, 32\] \(expected \[37, 64\]\)"):
        load_weights_into(vit(48), tmp_path / "narrow")
