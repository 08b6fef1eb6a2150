"""Tensor transforms between Hugging Face and optica layouts, each with its exact inverse.

``to_optica`` combines the HF tensors a rule names into one optica tensor; ``to_hf`` splits it back.
Running ``to_hf`` on a meta tensor of the model's expected shape yields the HF shapes a checkpoint
must have, which is how mis-shaped tensors are caught before any arithmetic touches them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from optica.models.modules.attention import fuse_qkv, split_qkv


class Transform(Protocol):
    """Maps a rule's HF tensors to one optica tensor and back."""

    def to_optica(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor: ...

    def to_hf(self, tensor: torch.Tensor) -> list[torch.Tensor]: ...


@dataclass(frozen=True)
class Identity:
    """One HF tensor is the optica tensor."""

    def to_optica(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        return tensors[0]

    def to_hf(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        return [tensor]


@dataclass(frozen=True)
class FuseQKV:
    """Separate q, k, v projections ↔ the per-KV-group fused ``linear_qkv`` (weight or bias)."""

    num_heads: int
    num_kv_heads: int

    def to_optica(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        q, k, v = tensors
        return fuse_qkv(q, k, v, self.num_kv_heads)

    def to_hf(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        return list(split_qkv(tensor, self.num_heads, self.num_kv_heads))


@dataclass(frozen=True)
class Concat:
    """Several HF tensors stacked along dim 0 (gate and up → ``linear_fc1``)."""

    sizes: tuple[int, ...]

    def to_optica(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat(list(tensors), dim=0)

    def to_hf(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        return list(tensor.split(list(self.sizes), dim=0))


@dataclass(frozen=True)
class PadVocab:
    """HF's ``vocab_size`` rows ↔ optica's rows padded to a multiple (zeros, stripped on export),
    so the vocabulary dimension shards evenly under tensor parallelism."""

    vocab_size: int
    padded_size: int

    def to_optica(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        extra = self.padded_size - tensors[0].shape[0]
        if extra <= 0:
            return tensors[0]
        pad = (0, 0) * (tensors[0].dim() - 1) + (0, extra)
        return F.pad(tensors[0], pad)

    def to_hf(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        return [tensor[: self.vocab_size]]


IDENTITY = Identity()
