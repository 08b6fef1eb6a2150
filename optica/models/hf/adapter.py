"""The contract between a model family and Hugging Face checkpoints.

A family subclasses :class:`HFAdapter` beside its model (``<family>/hf.py``): two config
translations and a key map. Everything else — checking, fusing, splitting, reading and writing
files — is generic and lives here and in :mod:`optica.models.hf.keymap`.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from optica.models.hf.keymap import KeyMap


class HFAdapter(abc.ABC):
    """Converts one family's configs and weights to and from Hugging Face.

    Attributes:
        model_type: The ``model_type`` written to config.json on export.
        architecture: The ``architectures`` entry written on export.
    """

    model_type: ClassVar[str]
    architecture: ClassVar[str]

    @abc.abstractmethod
    def config_from_hf(self, hf_config: Mapping[str, Any]) -> Any:
        """Builds the family's config from a config.json dict (dimensions come from the file)."""

    @abc.abstractmethod
    def config_to_hf(self, config: Any, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Returns config.json for ``config``: ``base`` (e.g. the config.json imported with the
        weights, so token ids and other extras survive a round trip) overlaid with the
        architecture fields."""

    @abc.abstractmethod
    def keymap(self, config: Any) -> KeyMap:
        """The key map for a model of ``config``."""

    def state_dict_from_hf(
        self,
        hf_state: Mapping[str, torch.Tensor],
        config: Any,
        expected: Mapping[str, torch.Size],
        *,
        dtype: torch.dtype | None = None,
        where: str = "checkpoint",
    ) -> dict[str, torch.Tensor]:
        """Converts HF tensors to the optica state dict of a model of ``config``."""
        return self.keymap(config).to_optica(hf_state, expected, dtype=dtype, where=where)

    def state_dict_to_hf(
        self, state: Mapping[str, torch.Tensor], config: Any, *, dtype: torch.dtype | None = None
    ) -> dict[str, torch.Tensor]:
        """Converts an optica state dict to HF tensors with canonical names."""
        return self.keymap(config).to_hf(state, dtype=dtype)
