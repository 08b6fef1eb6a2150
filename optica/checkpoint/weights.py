"""Weights of an optica checkpoint: safetensors under optica's parameter names, sharded with a
``model.safetensors.index.json`` above a size limit (the layout Hugging Face uses, so the same
readers serve both).

Writing hands safetensors pointers to the tensors (no serialised copy); reading checks every name
and shape against the model from the file headers before any tensor data is read, then reads each
tensor once, straight onto the target device.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from optica.checkpoint.errors import CheckpointError
from optica.models.hf.io import (
    SAFE_INDEX,
    own_storage,
    plan_shards,
    read_hf_state_dict,
    shard_names,
)
from optica.models.hf.problems import Problems

MAX_SHARD_BYTES = 5 * 2**30


def write_weights(
    root: Path, state_dict: Mapping[str, torch.Tensor], *, max_shard_bytes: int | None = None
) -> list[str]:
    """Writes ``state_dict`` into ``root`` as one file or shards of at most ``max_shard_bytes``
    (default :data:`MAX_SHARD_BYTES`). Returns the file names written."""
    _refuse_aliases(state_dict)
    shards = plan_shards(state_dict, max_shard_bytes or MAX_SHARD_BYTES)
    names = shard_names(len(shards))
    for name, keys in zip(names, shards, strict=True):
        tensors = {key: own_storage(state_dict[key]) for key in keys}
        try:
            save_file(tensors, str(root / name), metadata={"format": "pt"})
        except SafetensorError as err:
            raise CheckpointError(f"cannot write {root / name}: {err}") from None
    if len(shards) > 1:
        total = sum(t.numel() * t.element_size() for t in state_dict.values())
        weight_map = {key: name for name, keys in zip(names, shards) for key in keys}
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (root / SAFE_INDEX).write_text(json.dumps(index, indent=2) + "\n")
        names.append(SAFE_INDEX)
    return names


def read_weights(
    root: Path,
    expected: Mapping[str, torch.Size],
    *,
    device: torch.device | str = "cpu",
    resamplers: Mapping[str, Resampler] | None = None,
) -> dict[str, torch.Tensor]:
    """Reads the tensors of ``root`` onto ``device`` after checking them against ``expected``
    (the model's parameter names and shapes).

    Args:
        resamplers: Per key, what adapts a stored tensor of another shape to the model (a vision
            encoder's position table on another patch grid); only shapes it accepts pass.

    Raises:
        CheckpointError: A weight file is missing, corrupt or truncated (names it), or the
            tensors do not fit the model (names every missing, unexpected, mis-shaped one).
    """
    stored = read_hf_state_dict(root, device=device)
    resamplers = resamplers or {}
    problems = Problems()
    problems.missing.extend(key for key in expected if key not in stored)
    problems.unexpected.extend(key for key in stored if key not in expected)
    for key, shape in expected.items():
        got = stored.shape(key) if key in stored else tuple(shape)
        if got != tuple(shape) and not (key in resamplers and resamplers[key].accepts(got)):
            problems.misshaped.append(f"{key} {list(got)} (expected {list(shape)})")
    problems.raise_if_any(f"the weights in {root} do not fit the model")
    tensors = {key: stored[key] for key in expected}
    for key, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(expected[key]):  # accepted above, so a resampler's
            tensors[key] = resamplers[key](tensor)
    return tensors


class Resampler(Protocol):
    """Adapts a stored tensor of another shape to the model's (see ``read_weights``)."""

    def accepts(self, shape: tuple[int, ...]) -> bool: ...

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor: ...


def dtype_name(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The floating-point dtype(s) of ``state_dict``, e.g. ``"float32"`` or
    ``"bfloat16,float32"``."""
    dtypes = {
        str(t.dtype).removeprefix("torch.") for t in state_dict.values() if t.is_floating_point()
    }
    return ",".join(sorted(dtypes)) or "none"


def _refuse_aliases(state_dict: Mapping[str, torch.Tensor]) -> None:
    """Tied parameters stored twice would load back untied: refuse them loudly."""
    seen: dict[tuple[int, tuple[int, ...]], str] = {}
    for key, tensor in state_dict.items():
        if tensor.numel() == 0:
            continue
        where = (tensor.data_ptr(), tuple(tensor.shape))
        if where in seen:
            raise CheckpointError(
                f"{seen[where]} and {key} are the same tensor (tied weights); optica checkpoints "
                "store each parameter once: tie them in the model's forward instead"
            )
        seen[where] = key
