"""Distributed checkpoints with ``torch.distributed.checkpoint`` (DCP): one directory per
checkpoint, every rank writing its own shards, readable under any other layout.

* Layout-free: tensors are stored under their parameter names with their global shapes; DCP
  reshards on load (TP=2 → TP=1, FSDP over 2 ranks → 1 process, pipeline stages → one model).
  Optimizer states are keyed by parameter name and their groups by group name, so a pipeline
  stage's different set of groups cannot clash with another's.
* Atomic: a checkpoint is written to ``.<name>.partial`` next to its final path, then renamed
  into place by rank 0 after a barrier; a crash mid-save leaves the previous checkpoint intact.
* Asynchronous on request: DCP stages the tensors and writes them in a background thread over a
  separate gloo group; the rename happens when the next save, load or teardown finds it done.
* DCP assumes each rank holds one contiguous block of a tensor. A tensor-parallel ``[gate; up]``
  weight holds two (``_StridedShard``), so :class:`BlockShards` describes it block by block.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
from torch.distributed.checkpoint.metadata import (
    ChunkStorageMetadata,
    MetadataIndex,
    TensorProperties,
)
from torch.distributed.checkpoint.planner import TensorWriteData, WriteItem, WriteItemType
from torch.distributed.checkpoint.state_dict_loader import _load_state_dict
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor
from torch.distributed.tensor.placement_types import _StridedShard

from optica.run.errors import ConfigError

META_FILE = "meta.pt"  # Lightning's name for the non-tensor part (loops, schedulers, counters)


class BlockShards:
    """A DTensor whose local shard is several separate blocks of the global tensor, described to
    DCP one block at a time (DCP's own DTensor support assumes a single block per rank).

    Args:
        tensor: The DTensor; its local storage is shared, so loading fills it in place.
    """

    def __init__(self, tensor: DTensor) -> None:
        self.local = tensor.to_local()
        self.global_size = tensor.size()
        self.properties = TensorProperties.create_from_tensor(self.local)
        self.blocks = _local_blocks(tensor)

    def size(self) -> torch.Size:
        return self.global_size

    def __create_write_items__(self, fqn: str, obj: Any) -> list[WriteItem]:
        return [
            WriteItem(
                index=MetadataIndex(fqn, offsets),
                type=WriteItemType.SHARD,
                tensor_data=TensorWriteData(
                    chunk=ChunkStorageMetadata(offsets=offsets, sizes=sizes),
                    properties=self.properties,
                    size=self.global_size,
                ),
            )
            for offsets, _, sizes in self.blocks
        ]

    def __create_chunk_list__(self) -> list[ChunkStorageMetadata]:
        return [ChunkStorageMetadata(offsets=o, sizes=s) for o, _, s in self.blocks]

    def block(self, offsets: torch.Size) -> torch.Tensor:
        """The local view holding the global block that starts at ``offsets``."""
        for global_offsets, local_offsets, sizes in self.blocks:
            if global_offsets == offsets:
                view = self.local
                for dim, (start, length) in enumerate(zip(local_offsets, sizes)):
                    view = view.narrow(dim, start, length)
                return view
        raise ValueError(f"no local block at offsets {tuple(offsets)}")


def _local_blocks(tensor: DTensor) -> list[tuple[torch.Size, torch.Size, torch.Size]]:
    """(global offsets, local offsets, sizes) of each contiguous block this rank holds.

    Each dimension's local global indices come from sharding an index vector with the
    placements that act on that dimension (a local computation, no communication).
    """
    runs = []
    for dim, length in enumerate(tensor.shape):
        placements = [
            p if isinstance(p, (Shard, _StridedShard)) and p.dim == dim else Replicate()
            for p in tensor.placements
        ]
        index = torch.arange(length).view([length if d == dim else 1 for d in range(tensor.ndim)])
        mesh = tensor.device_mesh
        local = distribute_tensor(index.to(mesh.device_type), mesh, placements, src_data_rank=None)
        runs.append(_runs(local.to_local().flatten().tolist()))
    blocks = []
    for combo in itertools.product(*runs):
        global_offsets = torch.Size(start for start, _, _ in combo)
        local_offsets = torch.Size(local for _, local, _ in combo)
        blocks.append((global_offsets, local_offsets, torch.Size(n for _, _, n in combo)))
    return blocks


def _runs(indices: list[int]) -> list[tuple[int, int, int]]:
    """Maximal runs of consecutive values: (first value, position, length)."""
    found: list[list[int]] = []
    for position, value in enumerate(indices):
        if found and value == found[-1][0] + found[-1][2]:
            found[-1][2] += 1
        else:
            found.append([value, position, 1])
    return [tuple(run) for run in found]


def for_checkpoint(tree: Any, *, copy: bool = False) -> Any:
    """``tree`` with every multi-block DTensor replaced by its :class:`BlockShards` view (over a
    private copy with ``copy``: DCP's asynchronous staging copies tensors, not these views)."""
    if isinstance(tree, Mapping):
        return {key: for_checkpoint(value, copy=copy) for key, value in tree.items()}
    if isinstance(tree, DTensor) and any(isinstance(p, _StridedShard) for p in tree.placements):
        shards = BlockShards(tree)
        if copy:
            shards.local = shards.local.detach().clone()
        return shards if len(shards.blocks) > 1 else tree
    return tree


class _SavePlanner(dcp.DefaultSavePlanner):
    def lookup_object(self, index: MetadataIndex) -> Any:
        value = self.state_dict[index.fqn]
        if isinstance(value, BlockShards):
            return value.block(index.offset).contiguous()
        return super().lookup_object(index)


class _LoadPlanner(dcp.DefaultLoadPlanner):
    def lookup_tensor(self, index: MetadataIndex) -> torch.Tensor:
        value = self.state_dict[index.fqn]
        if isinstance(value, BlockShards):
            return value.block(index.offset)
        return super().lookup_tensor(index)


def optimizer_groups_by_name(state: dict[str, Any]) -> dict[str, Any]:
    """An optimizer state dict (``get_optimizer_state_dict``'s) with its groups keyed by name
    and without parameter lists: pipeline stages own different groups in different orders."""
    groups = {
        str(group.get("name", index)): {k: v for k, v in group.items() if k != "params"}
        for index, group in enumerate(state["param_groups"])
    }
    return {"state": state["state"], "param_groups": groups}


def optimizer_state_from_groups(loaded: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_groups_by_name`, with the parameter lists of ``current``."""
    groups = []
    for index, group in enumerate(current["param_groups"]):
        saved = loaded["param_groups"].get(str(group.get("name", index)), {})
        groups.append({**group, **saved, "params": group["params"]})
    return {"state": loaded["state"], "param_groups": groups}


class DistributedCheckpointer:
    """Saves and loads checkpoint directories (see the module docstring).

    Args:
        async_save: Write in the background; :meth:`finish` completes the pending save.
    """

    def __init__(self, async_save: bool = False) -> None:
        self.async_save = async_save
        self._pending: tuple[Future, Path, Path] | None = None
        self._group: dist.ProcessGroup | None = None

    def save(
        self,
        tensors: dict[str, Any],
        metadata: dict[str, Any],
        path: Path,
        files: dict[str, str] | None = None,
    ) -> None:
        """Writes ``tensors`` (DCP), ``metadata`` (rank 0, ``meta.pt``) and the text ``files``
        (name → content, rank 0) as directory ``path``; every rank calls this with the same
        ``path``."""
        self.finish()
        partial = _partial(path)
        if _rank() == 0:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
        _barrier()
        state = for_checkpoint(tensors, copy=self.async_save)
        if self.async_save:
            future = dcp.async_save(
                state, checkpoint_id=partial, planner=_SavePlanner(), process_group=self._gloo()
            )
        else:
            dcp.save(state, checkpoint_id=partial, planner=_SavePlanner())
        if _rank() == 0:
            torch.save(metadata, partial / META_FILE)
            for name, text in (files or {}).items():
                (partial / name).write_text(text)
        self._pending = (future if self.async_save else _done(), partial, path)
        if not self.async_save:
            self.finish()

    def finish(self) -> None:
        """Completes a pending save: waits for it, then renames it into place (collective)."""
        if self._pending is None:
            return
        future, partial, path = self._pending
        self._pending = None
        future.result()
        _barrier()
        if _rank() == 0:
            _replace(partial, path)
        _barrier()

    def pending_path(self) -> Path | None:
        return None if self._pending is None else self._pending[2]

    def load(self, tensors: dict[str, Any], path: Path) -> dict[str, Any]:
        """Fills ``tensors`` in place from directory ``path``; returns its metadata."""
        self.finish()
        if not (path / META_FILE).is_file():
            raise ConfigError(f"{path} is not a distributed checkpoint (no {META_FILE} in it)")
        dcp.load(for_checkpoint(tensors), checkpoint_id=path, planner=_LoadPlanner())
        return torch.load(path / META_FILE, weights_only=False)

    def _gloo(self) -> dist.ProcessGroup:
        # NOTE: the background writer's collectives must not share a group with training's.
        if self._group is None:
            self._group = dist.new_group(backend="gloo")
        return self._group


def consolidated_model_state(path: Path, prefix: str = "model.") -> dict[str, torch.Tensor]:
    """The model weights of checkpoint directory ``path`` as one plain state dict, whatever
    layout wrote it (one process, no process group): what an export to Hugging Face reads.

    Args:
        path: A checkpoint directory written by :class:`DistributedCheckpointer`.
        prefix: Stripped from the names (the ``TrainingModule``'s ``model.``).
    """
    state: dict[str, Any] = {}
    # NOTE: what torch's own ``dcp_to_torch_save`` does: the planner rebuilds the dict in place.
    reader = dcp.FileSystemReader(path)
    planner = _EmptyStateDictLoadPlanner(keys={"state_dict"})
    _load_state_dict(state, storage_reader=reader, planner=planner, no_dist=True)
    weights = state["state_dict"]
    return {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


def _replace(partial: Path, path: Path) -> None:
    """Renames ``partial`` to ``path``; an existing ``path`` is moved aside first and removed
    after (a directory cannot be renamed over a non-empty one)."""
    old = path.with_name(f".{path.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if path.is_dir():
        path.rename(old)
    elif path.exists():
        path.unlink()
    partial.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def _done() -> Future:
    future: Future = Future()
    future.set_result(None)
    return future


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
