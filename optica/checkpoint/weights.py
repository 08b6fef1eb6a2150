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

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from optica.checkpoint.errors import CheckpointError
from optica.models.hf.io import SAFE_INDEX, read_hf_state_dict
from optica.models.hf.problems import Problems

MAX_SHARD_BYTES = 5 * 2**30


def write_weights(
    root: Path, state_dict: Mapping[str, torch.Tensor], *, max_shard_bytes: int | None = None
) -> list[str]:
    """Writes ``state_dict`` into ``root`` as one file or shards of at most ``max_shard_bytes``
    (default :data:`MAX_SHARD_BYTES`). Returns the file names written."""
    _refuse_aliases(state_dict)
    shards = _plan_shards(state_dict, max_shard_bytes or MAX_SHARD_BYTES)
    names = _shard_names(len(shards))
    for name, keys in zip(names, shards, strict=True):
        tensors = {key: _owned(state_dict[key]) for key in keys}
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
    root: Path, expected: Mapping[str, torch.Size], *, device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """Reads the tensors of ``root`` onto ``device`` after checking them against ``expected``
    (the model's parameter names and shapes).

    Raises:
        CheckpointError: A weight file is missing, corrupt or truncated (names it), or the
            tensors do not fit the model (names every missing, unexpected, mis-shaped one).
    """
    stored = read_hf_state_dict(root, device=device)
    problems = Problems()
    problems.missing.extend(key for key in expected if key not in stored)
    problems.unexpected.extend(key for key in stored if key not in expected)
    for key, shape in expected.items():
        if key in stored and (got := stored.shape(key)) != tuple(shape):
            problems.misshaped.append(f"{key} {list(got)} (expected {list(shape)})")
    problems.raise_if_any(f"the weights in {root} do not fit the model")
    return {key: stored[key] for key in expected}


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


def _plan_shards(state_dict: Mapping[str, torch.Tensor], max_bytes: int) -> list[list[str]]:
    shards: list[list[str]] = [[]]
    size = 0
    for key, tensor in state_dict.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(key)
        size += nbytes
    return shards


def _shard_names(count: int) -> list[str]:
    if count == 1:
        return ["model.safetensors"]
    return [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


def _owned(tensor: torch.Tensor) -> torch.Tensor:
    # NOTE: safetensors refuses tensors that share storage, so a view into a bigger tensor is
    # copied (one at a time, per shard); a parameter owning its storage is written as it is.
    tensor = tensor.detach()
    if tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size():
        return tensor.clone(memory_format=torch.contiguous_format)
    return tensor.contiguous()
