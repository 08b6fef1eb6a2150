"""Attention masks: causal, sliding-window, block-diagonal for packed sequences, and padding.

Every mask is boolean, ``True`` where a query may attend a key, shaped [B or 1, 1, q_len, k_len]
for ``scaled_dot_product_attention``. When plain causal attention over a fresh sequence is all
that is needed, the builder returns ``None`` so SDPA can take its fused ``is_causal`` path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PackedSeqParams:
    """Where the samples packed into each row begin and end.

    Give exactly one of:
        cu_seqlens: Cumulative sample lengths [n + 1] over a single packed row (flash-attention's
            varlen convention, ``cu_seqlens[-1]`` = row length); applies to every row of the batch.
        document_ids: Sample index of each token [B, T]; tokens attend only within their sample.
    """

    cu_seqlens: torch.Tensor | None = None
    document_ids: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if (self.cu_seqlens is None) == (self.document_ids is None):
            raise ValueError("PackedSeqParams needs exactly one of cu_seqlens or document_ids")

    def to_document_ids(self, batch: int, seq_len: int, device: torch.device) -> torch.Tensor:
        """Returns the sample index of each token [batch, seq_len]."""
        if self.document_ids is not None:
            return self.document_ids.to(device)
        cu = self.cu_seqlens.to(device=device, dtype=torch.long)
        if int(cu[-1]) != seq_len:
            raise ValueError(f"cu_seqlens ends at {int(cu[-1])} but the rows have {seq_len} tokens")
        positions = torch.arange(seq_len, device=device)
        ids = torch.bucketize(positions, cu[1:], right=True)
        return ids.expand(batch, seq_len)


def positions_from_document_ids(document_ids: torch.Tensor) -> torch.Tensor:
    """Position ids [B, T] that restart at zero where each packed sample begins."""
    seq_len = document_ids.shape[-1]
    index = torch.arange(seq_len, device=document_ids.device).expand_as(document_ids)
    starts = torch.ones_like(document_ids, dtype=torch.bool)
    starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    first = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=-1).values
    return index - first


def build_attention_mask(
    *,
    q_len: int,
    k_len: int,
    device: torch.device,
    offset: int = 0,
    causal: bool = True,
    padding_mask: torch.Tensor | None = None,
    document_ids: torch.Tensor | None = None,
    sliding_window: int | None = None,
) -> torch.Tensor | None:
    """Combines the requested constraints into one boolean mask, or ``None`` if SDPA's own
    ``is_causal`` (or no mask) suffices.

    Args:
        q_len: Number of queries (new tokens).
        k_len: Number of keys (cached + new tokens).
        device: Where to build the mask.
        offset: Position of the first query among the keys (tokens already in a KV cache).
        causal: Whether a query may only see keys at or before its own position.
        padding_mask: [B, k_len], nonzero/True at real tokens.
        document_ids: [B, k_len] packed-sample index; attention stays within a sample.
        sliding_window: A query sees only the latest ``sliding_window`` keys, itself included.
    """
    window = sliding_window if sliding_window is not None and k_len > sliding_window else None
    plain = padding_mask is None and document_ids is None and window is None
    if plain and (not causal or (offset == 0 and q_len == k_len) or q_len == 1):
        return None
    q_pos = torch.arange(q_len, device=device)[:, None] + offset
    k_pos = torch.arange(k_len, device=device)[None, :]
    mask = torch.ones(q_len, k_len, dtype=torch.bool, device=device)
    if causal:
        mask &= k_pos <= q_pos
    if window is not None:
        mask &= k_pos > q_pos - window
    mask = mask[None, None]
    if document_ids is not None:
        q_docs = document_ids[:, offset : offset + q_len]
        mask = mask & (q_docs[:, None, :, None] == document_ids[:, None, None, :])
    if padding_mask is not None:
        mask = mask & padding_mask.to(device=device, dtype=torch.bool)[:, None, None, :]
    return _open_empty_rows(mask)


def _open_empty_rows(mask: torch.Tensor) -> torch.Tensor:
    # NOTE: a query with no visible key (a left-padding position) would make SDPA return NaN,
    # which then leaks into gradients; letting it see every key keeps it finite, and its output
    # is discarded anyway (its label is ignored).
    return mask | ~mask.any(dim=-1, keepdim=True)
