"""Key/value cache for incremental decoding.

Attention layers append their new keys and values and get back everything cached so far; the
model reads ``offset`` (tokens already cached) before a step to place the new tokens' positions.
Tensors grow by concatenation, which keeps the object trivial; a preallocated variant can replace
it behind the same two methods when generation speed matters.
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
