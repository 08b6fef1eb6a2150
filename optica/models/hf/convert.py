"""Whole-model conversion between Hugging Face directories and optica models.

The family comes from the registry (by config.json's architecture, or given), so this module names
none. The model is built on the meta device and the converted tensors are assigned to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from optica.models.errors import UnsupportedModelError
from optica.models.hf.io import (
    DEFAULT_SHARD_BYTES,
    read_hf_config,
    read_hf_state_dict,
    write_hf_checkpoint,
)
from optica.models.registry import Family, family_for_hf_config, family_for_model, get_family


def load_hf(
    path: str | Path,
    *,
    family: str | Family | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """Builds the optica model for the Hugging Face checkpoint in ``path`` with its weights.

    Args:
        path: A directory with config.json and weights.
        family: Force a family (name or object) instead of detecting it from config.json.
        device: Where the tensors are loaded.
        dtype: Cast floating-point weights to this dtype (default: keep the checkpoint's).
    """
    hf_config = read_hf_config(path)
    family = _resolve(family, hf_config)
    config = _adapter(family).config_from_hf(hf_config)
    model = family.build(config)
    expected = {key: tensor.shape for key, tensor in model.state_dict().items()}
    hf_state = read_hf_state_dict(path, device=device)
    state = _adapter(family).state_dict_from_hf(
        hf_state, config, expected, dtype=dtype, where=str(path)
    )
    return model.load_weights(state).eval()


def save_hf(
    model: nn.Module,
    path: str | Path,
    *,
    dtype: torch.dtype | None = None,
    base_config: Mapping[str, Any] | None = None,
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
) -> Path:
    """Writes ``model`` as a Hugging Face checkpoint that ``from_pretrained`` loads.

    Args:
        model: A materialised model of a registered family.
        path: Output directory (created; existing files of the same name are replaced).
        dtype: Cast floating-point weights to this dtype (default: keep the model's).
        base_config: A config.json to carry extra fields from (token ids, ...).
        max_shard_bytes: Split the weights into files of at most this size.
    """
    family = family_for_model(model)
    adapter = _adapter(family)
    state = adapter.state_dict_to_hf(model.state_dict(), model.config, dtype=dtype)
    hf_config = adapter.config_to_hf(model.config, base_config)
    first = next(iter(state.values()))
    hf_config["dtype"] = str(dtype or first.dtype).removeprefix("torch.")
    return write_hf_checkpoint(path, hf_config, state, max_shard_bytes=max_shard_bytes)


def _resolve(family: str | Family | None, hf_config: Mapping[str, Any]) -> Family:
    if family is None:
        return family_for_hf_config(hf_config)
    return get_family(family) if isinstance(family, str) else family


def _adapter(family: Family):
    if family.hf_adapter is None:
        raise UnsupportedModelError(f"model family {family.name!r} has no Hugging Face adapter")
    return family.hf_adapter
