"""Reads and writes Hugging Face checkpoint directories: ``config.json`` plus safetensors weights,
single-file or sharded with ``model.safetensors.index.json`` (older ``pytorch_model*.bin`` files
are read too). Tensors are opened with ``safe_open`` one at a time, so reading adds no second copy.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from optica.models.errors import CheckpointError

SAFE_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"
DEFAULT_SHARD_BYTES = 5 * 2**30


def read_hf_config(path: str | Path) -> dict[str, Any]:
    """Returns ``path/config.json`` as a dict."""
    file = Path(path) / "config.json"
    if not file.is_file():
        raise CheckpointError(f"{file} not found; expected a Hugging Face model directory")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{file} is not valid JSON: {err}") from None


def read_hf_state_dict(path: str | Path, *, device: torch.device | str = "cpu") -> LazyStateDict:
    """The tensors of the checkpoint in ``path``, read onto ``device`` as they are accessed."""
    return LazyStateDict(weight_files(path), device)


class LazyStateDict(Mapping[str, torch.Tensor]):
    """A checkpoint's tensors, each read from disk when asked for and not kept, so a conversion
    holds only the tensors of the rule at hand besides its output (one copy of the model).

    Args:
        files: Safetensors (read lazily) or ``.bin`` files (memory-mapped).
        device: Where tensors are placed.
    """

    def __init__(self, files: list[Path], device: torch.device | str) -> None:
        self._device = str(device)
        self._file_of: dict[str, Path] = {}
        self._mapped: dict[str, torch.Tensor] = {}
        for file in files:
            self._index(file)

    def _index(self, file: Path) -> None:
        if not file.is_file():
            raise CheckpointError(f"weight file {file} is listed in the index but does not exist")
        if file.suffix == ".bin":
            self._mapped.update(_read_bin(file, self._device))
            keys = list(self._mapped)
        else:
            with _open(file, self._device) as handle:
                keys = list(handle.keys())
        self._file_of.update(dict.fromkeys(keys, file))

    def __getitem__(self, key: str) -> torch.Tensor:
        if key in self._mapped:
            return self._mapped[key]
        file = self._file_of[key]
        with _open(file, self._device) as handle:
            return _checked(file, lambda: handle.get_tensor(key))

    def shape(self, key: str) -> tuple[int, ...]:
        """The shape of ``key``, read from the file header (no tensor data is loaded)."""
        if key in self._mapped:
            return tuple(self._mapped[key].shape)
        with _open(self._file_of[key], self._device) as handle:
            return tuple(handle.get_slice(key).get_shape())

    def __iter__(self) -> Iterator[str]:
        return iter(self._file_of)

    def __len__(self) -> int:
        return len(self._file_of)


def weight_files(path: str | Path) -> list[Path]:
    """The checkpoint's weight files, from its index when sharded."""
    root = Path(path)
    for index in (SAFE_INDEX, BIN_INDEX):
        if (root / index).is_file():
            weight_map = json.loads((root / index).read_text()).get("weight_map", {})
            return [root / name for name in dict.fromkeys(weight_map.values())]
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (root / name).is_file():
            return [root / name]
    raise CheckpointError(f"no model.safetensors or pytorch_model.bin found in {root}")


def _open(file: Path, device: str) -> Any:
    return _checked(file, lambda: safe_open(file, framework="pt", device=device))


def _read_bin(file: Path, device: str) -> dict[str, torch.Tensor]:
    return _checked(
        file, lambda: torch.load(file, map_location=device, weights_only=True, mmap=True)
    )


def _checked(file: Path, read: Callable[[], Any]) -> Any:
    """Runs ``read``, turning a library's low-level failure into one line naming ``file``."""
    try:
        return read()
    except (SafetensorError, OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise CheckpointError(f"cannot read {file} (corrupt or truncated?): {err}") from None


def write_hf_checkpoint(
    path: str | Path,
    config: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    *,
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
) -> Path:
    """Writes ``config.json`` and safetensors weights (sharded above ``max_shard_bytes``) to
    ``path``, the layout ``from_pretrained`` reads. Returns ``path``."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    shards = plan_shards(state_dict, max_shard_bytes)
    names = shard_names(len(shards))
    for name, keys in zip(names, shards, strict=True):
        tensors = {key: own_storage(state_dict[key]) for key in keys}
        save_file(tensors, str(root / name), metadata={"format": "pt"})
    if len(shards) > 1:
        total = sum(t.numel() * t.element_size() for t in state_dict.values())
        weight_map = {key: name for name, keys in zip(names, shards) for key in keys}
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (root / SAFE_INDEX).write_text(json.dumps(index, indent=2, sort_keys=True))
    (root / "config.json").write_text(json.dumps(dict(config), indent=2, sort_keys=True) + "\n")
    return root


def plan_shards(state_dict: Mapping[str, torch.Tensor], max_bytes: int) -> list[list[str]]:
    """Keys grouped in order into shards of at most ``max_bytes`` (a bigger tensor is alone)."""
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


def shard_names(count: int) -> list[str]:
    """transformers' file names: ``model.safetensors`` or ``model-00001-of-0000N.safetensors``."""
    if count == 1:
        return ["model.safetensors"]
    return [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


def own_storage(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` detached and contiguous, copied only when it is a view into a bigger storage."""
    # NOTE: safetensors refuses tensors that share storage; the q/k/v and gate/up splits are views
    # into one fused tensor, so those (only those) are copied.
    tensor = tensor.detach()
    if tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size():
        return tensor.clone(memory_format=torch.contiguous_format)
    return tensor.contiguous()
