"""Fitting a checkpoint's learned position tables to a vision model's patch grid, so a model
pre-trained at one resolution fine-tunes at another (seed 002: ViT-B/16 pre-trained at 224 px,
14x14 patches, fine-tuned at 512 px, 32x32 patches; Dosovitskiy et al. 2021, §3.2 "Fine-tuning
and higher resolution"; timm's ``resample_abs_pos_embed``, transformers'
``interpolate_pos_encoding``).

Prefix rows (the class token) are kept as they are; the grid rows are resampled bicubically on
their 2-D layout (:func:`optica.models.modules.pos_embed.resample_abs_pos_embed`). The
checkpoint's grid comes from its own config when it has one of that size, else it is taken as
square. Any other difference (width, a table that is no grid) is not resampled: the loader
reports it as a mis-shaped tensor, naming the key and both shapes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from optica.models.modules.pos_embed import resample_abs_pos_embed
from optica.models.vision.encoder import VisionTransformer

log = logging.getLogger("optica.checkpoint")

TABLE = "position_embeddings.weight"


@dataclasses.dataclass(frozen=True)
class GridResampler:
    """Resamples one stored position table [prefix + rows·cols, hidden] to the model's grid.

    Args:
        key: The table's state-dict key.
        num_prefix_tokens: Rows before the grid (1 with a class token, else 0).
        grid: The model's patch grid (rows, columns).
        hidden_size: Table width; a stored table of another width is not resampled.
        source_grids: Grids the checkpoint's config describes, to recognise a non-square one.
    """

    key: str
    num_prefix_tokens: int
    grid: tuple[int, int]
    hidden_size: int
    source_grids: tuple[tuple[int, int], ...] = ()

    def source_grid(self, shape: tuple[int, ...]) -> tuple[int, int] | None:
        """The stored table's grid, or None when ``shape`` is not a table this model can take."""
        if len(shape) != 2 or shape[1] != self.hidden_size or shape[0] <= self.num_prefix_tokens:
            return None
        cells = shape[0] - self.num_prefix_tokens
        described = [grid for grid in self.source_grids if math.prod(grid) == cells]
        if described:
            return described[0]
        side = math.isqrt(cells)
        return (side, side) if side * side == cells else None

    def accepts(self, shape: tuple[int, ...]) -> bool:
        """Whether a stored table of ``shape`` can be resampled to this model's grid."""
        return self.source_grid(shape) is not None

    def __call__(self, table: torch.Tensor) -> torch.Tensor:
        """``table`` on this model's grid (unchanged when the grids already agree)."""
        old = self.source_grid(tuple(table.shape))
        if old is None:
            raise ValueError(f"{self.key} {list(table.shape)} is not a resampleable grid table")
        if old == self.grid:
            return table
        log.info(
            "%s: resampled the position embeddings from a %dx%d to a %dx%d patch grid "
            "(bicubic, %d class token(s) kept)",
            self.key, *old, *self.grid, self.num_prefix_tokens,
        )  # fmt: skip
        with torch.no_grad():
            return resample_abs_pos_embed(
                table, self.grid, old_size=old, num_prefix_tokens=self.num_prefix_tokens
            ).contiguous()


def grid_resamplers(model: nn.Module, source_config: Any = None) -> dict[str, GridResampler]:
    """A resampler for the position table of every vision encoder inside ``model``, by key.

    Args:
        model: Any model; its :class:`VisionTransformer` encoders are found wherever they sit
            (a ViT classifier's backbone, a LLaVA's vision tower).
        source_config: The checkpoint's model config, whose encoder grids identify non-square
            stored tables.
    """
    source_grids = tuple(_config_grids(source_config))
    resamplers = {}
    for name, module in model.named_modules():
        if not isinstance(module, VisionTransformer) or module.position_embeddings is None:
            continue
        key = f"{name}.{TABLE}" if name else TABLE
        config = module.config
        resamplers[key] = GridResampler(
            key=key,
            num_prefix_tokens=config.class_token_len,
            grid=config.grid_size,
            hidden_size=config.hidden_size,
            source_grids=source_grids,
        )
    return resamplers


def _config_grids(config: Any, depth: int = 0) -> Iterator[tuple[int, int]]:
    """Every ``grid_size`` in a (nested) config dataclass."""
    if config is None or depth > 4 or not dataclasses.is_dataclass(config):
        return
    grid = getattr(config, "grid_size", None)
    if isinstance(grid, tuple):
        yield grid
    for field in dataclasses.fields(config):
        yield from _config_grids(getattr(config, field.name), depth + 1)
