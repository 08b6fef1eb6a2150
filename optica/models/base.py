"""Lazy top-level models: built on the meta device, materialised by random init or by assigning
checkpoint tensors, so a 7B model never exists twice in memory.

Construction runs under ``torch.device("meta")``, which records shapes and dtypes but allocates
nothing. ``init_weights`` then allocates once and initialises in place; ``load_weights`` instead
adopts the checkpoint's tensors as the parameters (``assign=True``), no copy made.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from optica.models.errors import CheckpointError
from optica.models.modules.norms import RMSNorm

_NORMS = (RMSNorm, nn.LayerNorm)


class OpticaModel(nn.Module):
    """Base for families' top-level models; subclasses build their layers under
    ``with torch.device("meta"):``.

    Args:
        config: The family's config dataclass; kept as ``self.config`` so the registry, checkpoint
            and training code can find the family and rebuild the model.
    """

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    @property
    def is_materialized(self) -> bool:
        """Whether every parameter and buffer holds real storage."""
        return not any(t.is_meta for t in itertools.chain(self.parameters(), self.buffers()))

    def init_weights(
        self, seed: int = 0, *, device: torch.device | str = "cpu", dtype: torch.dtype | None = None
    ) -> OpticaModel:
        """Allocates every tensor on ``device`` (in ``dtype``), filled reproducibly from ``seed``.

        Returns:
            ``self``, for chaining.
        """
        if dtype is not None:
            self.to(dtype=dtype)  # still on meta: changes the recipe, allocates nothing
        self.to_empty(device=device)
        generator = torch.Generator(device=device).manual_seed(seed)
        with torch.no_grad():
            self._init_parameters(generator)
        return self

    def _init_parameters(self, generator: torch.Generator) -> None:
        """Initialises freshly allocated tensors; families override to set their own scales."""
        init_parameters(self, generator, std=0.02, output_std=0.02)

    def load_weights(
        self, state_dict: Mapping[str, torch.Tensor], *, strict: bool = True
    ) -> OpticaModel:
        """Adopts ``state_dict``'s tensors as this model's parameters (no copy; dtype and device
        are the tensors' own).

        Raises:
            CheckpointError: When a key is missing or unexpected, or a tensor stays on meta.
        """
        missing, unexpected = self.load_state_dict(dict(state_dict), strict=False, assign=True)
        if strict and (missing or unexpected):
            raise CheckpointError(
                f"state dict does not fit {type(self).__name__}: missing {missing}, "
                f"unexpected {unexpected}"
            )
        named = itertools.chain(self.named_parameters(), self.named_buffers())
        still_meta = [name for name, tensor in named if tensor.is_meta]
        if still_meta:
            raise CheckpointError(f"no weights loaded for {still_meta}; call init_weights first")
        return self


def init_parameters(
    module: nn.Module,
    generator: torch.Generator,
    *,
    std: float,
    output_std: float,
    output_layers: tuple[str, ...] = ("linear_proj", "linear_fc2"),
) -> None:
    """Megatron-style init: N(0, std) weights, zero biases, unit norms; ``output_std`` for the
    projections that write into the residual stream (``output_layers``), which Megatron scales by
    1/sqrt(2·layers) so the residual's variance does not grow with depth.
    """
    for name, sub in module.named_modules():
        if isinstance(sub, _NORMS):
            sub.reset_parameters()
            continue
        leaf_std = output_std if name.rsplit(".", 1)[-1] in output_layers else std
        for param_name, param in sub.named_parameters(recurse=False):
            if param_name == "bias":
                nn.init.zeros_(param)
            else:
                nn.init.normal_(param, mean=0.0, std=leaf_std, generator=generator)
