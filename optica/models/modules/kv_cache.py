"""Key/value cache for incremental decoding.

Attention layers append their new keys and values and get back everything cached so far; the
model reads ``offset`` (tokens already cached) before a step to place the new tokens' positions.
``KVCache`` grows by concatenation, which keeps it trivial (training-time tests, chunked prefill);
``StaticKVCache`` writes into preallocated buffers behind the same two methods (generation).
"""

from __future__ import annotations

import torch


class KVCache:
    """Per-layer keys and values, each [B, kv_heads, cached_len, head_dim]."""

    def __init__(self) -> None:
        self._keys: dict[int, torch.Tensor] = {}
        self._values: dict[int, torch.Tensor] = {}

    @property
    def offset(self) -> int:
        """Number of tokens cached so far (read it before a forward step)."""
        if not self._keys:
            return 0
        return next(iter(self._keys.values())).shape[2]

    def append(
        self, layer: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stores the new ``keys``/``values`` of ``layer`` and returns all of that layer's."""
        if layer in self._keys:
            keys = torch.cat((self._keys[layer], keys), dim=2)
            values = torch.cat((self._values[layer], values), dim=2)
        self._keys[layer], self._values[layer] = keys, values
        return keys, values

    def reset(self) -> None:
        """Forgets everything (start a new prompt)."""
        self._keys.clear()
        self._values.clear()


class StaticKVCache(KVCache):
    """A :class:`KVCache` that writes into buffers preallocated for ``capacity`` tokens, so a
    decoding step copies one token's keys and values instead of re-concatenating the whole cache
    (generation's cost per step stays flat as the sequence grows).

    Buffers are allocated on each layer's first ``append`` (shape, dtype and device from its
    keys) and kept across ``reset``, so a chat session reuses them turn after turn.

    Args:
        capacity: Most tokens the cache holds (prompt plus generated).
    """

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self._lengths: dict[int, int] = {}

    @property
    def offset(self) -> int:
        return next(iter(self._lengths.values()), 0)

    def append(
        self, layer: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        start = self._lengths.get(layer, 0)
        end = start + keys.shape[2]
        if end > self.capacity:
            raise ValueError(f"KV cache holds {self.capacity} tokens; {end} do not fit")
        if not self._fits(layer, keys):
            shape = (*keys.shape[:2], self.capacity, keys.shape[3])
            self._keys[layer] = keys.new_empty(shape)
            self._values[layer] = values.new_empty((*shape[:3], values.shape[3]))
        self._keys[layer][:, :, start:end] = keys
        self._values[layer][:, :, start:end] = values
        self._lengths[layer] = end
        return self._keys[layer][:, :, :end], self._values[layer][:, :, :end]

    def _fits(self, layer: int, keys: torch.Tensor) -> bool:
        buffer = self._keys.get(layer)
        return (
            buffer is not None
            and buffer.shape[:2] == keys.shape[:2]
            and buffer.shape[3] == keys.shape[3]
            and buffer.dtype == keys.dtype
            and buffer.device == keys.device
        )

    def reset(self) -> None:
        """Forgets the cached tokens; the buffers stay for the next prompt."""
        self._lengths.clear()
