"""Multi-head self-attention on ``torch.nn.functional.scaled_dot_product_attention``, with grouped
query attention (Ainslie et al., 2023, "GQA"), rotary embeddings and a KV-cache hook.

The fused ``linear_qkv`` output is laid out per KV group: for each KV head ``g`` its
``heads // kv_heads`` query heads, then ``k_g``, then ``v_g`` (Megatron-Core's layout). A
column-parallel shard that takes whole groups therefore holds matching q, k and v heads, so tensor
parallelism can split ``linear_qkv`` by rows without any re-ordering.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from optica.models.modules.few_queries import absorbs, attend_few_queries
from optica.models.modules.kv_cache import KVCache
from optica.models.modules.masks import build_attention_mask
from optica.models.modules.rope import apply_rotary


def fuse_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_kv_heads: int) -> torch.Tensor:
    """Interleaves separate q [H·d, ...], k and v [G·d, ...] weights (or biases) per KV group.

    Returns:
        The fused tensor [(H + 2G)·d, ...].
    """
    rest = q.shape[1:]
    groups = [t.reshape(num_kv_heads, -1, *rest) for t in (q, k, v)]
    return torch.cat(groups, dim=1).reshape(-1, *rest)


def split_qkv(
    fused: torch.Tensor, num_heads: int, num_kv_heads: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of :func:`fuse_qkv`: returns q [H·d, ...], k [G·d, ...], v [G·d, ...]."""
    rest = fused.shape[1:]
    per_group = num_heads // num_kv_heads
    groups = fused.reshape(num_kv_heads, per_group + 2, -1, *rest)
    q, k, v = groups.split([per_group, 1, 1], dim=1)
    return tuple(t.reshape(-1, *rest) for t in (q, k, v))


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None,
    causal: bool,
    dropout: float = 0.0,
) -> torch.Tensor:
    """Scaled dot-product attention of q [B, H, T, d] over k, v [B, G, S, d] → [B, H, T, d].

    Uses SDPA's ``is_causal`` fast path when no explicit mask is needed. On a CPU, 16-bit inputs
    are attended in fp32 and the output cast back: torch's CPU flash kernel is slower in bf16
    than in fp32 (forward and backward, measured 1.0-3x at 65-1024 tokens), and fp32 is the more
    accurate softmax (Megatron's ``attention_softmax_in_fp32``). GPU kernels take bf16 as given.
    """
    low = _cpu_half_precision(q)
    if low is not None:
        with torch.autocast("cpu", enabled=False):
            return _attend_in_fp32(q, k, v, mask=mask, causal=causal, dropout=dropout).to(low)
    is_causal = causal and mask is None and q.shape[2] == k.shape[2]
    grouped = q.shape[1] != k.shape[1]
    if grouped and mask is not None:
        # NOTE: with an explicit mask the fused GPU kernels do not take enable_gqa; repeating the
        # few KV heads keeps them eligible (the math fallback would materialise the scores).
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
        grouped = False
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=is_causal, enable_gqa=grouped
    )


def _cpu_half_precision(q: torch.Tensor) -> torch.dtype | None:
    """The 16-bit dtype SDPA would run in on a CPU (autocast's, else the inputs'), or None."""
    if q.device.type != "cpu":
        return None
    if torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu")
    return q.dtype if q.dtype in (torch.bfloat16, torch.float16) else None


def _attend_in_fp32(q, k, v, *, mask, causal: bool, dropout: float) -> torch.Tensor:
    """``attend`` on fp32 copies of 16-bit q, k, v, keeping the 16-bit tensors (not the copies)
    for the backward pass: :class:`_CpuFlashInFp32` when the CPU flash kernel applies (no
    dropout), else plain fp32 SDPA."""
    if dropout:
        return attend(q.float(), k.float(), v.float(), mask=mask, causal=causal, dropout=dropout)
    is_causal = causal and mask is None and q.shape[2] == k.shape[2]
    if mask is not None and mask.dtype == torch.bool:  # as SDPA converts it: -inf where False
        mask = torch.zeros(mask.shape, device=mask.device).masked_fill_(~mask, float("-inf"))
    return _CpuFlashInFp32.apply(q, k, v, mask, is_causal)


class _CpuFlashInFp32(torch.autograd.Function):
    """torch's CPU flash-attention kernel run in fp32 on (possibly) 16-bit inputs, saving those
    inputs and upcasting them again in the backward pass: the speed and accuracy of the fp32
    kernel at the saved-activation cost of the 16-bit one (plus its fp32 output)."""

    @staticmethod
    def forward(ctx, q, k, v, mask, is_causal):
        groups = q.shape[1] // k.shape[1]  # the kernel wants a KV head per query head
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q.float(), *_fp32_heads(k, v, groups), 0.0, is_causal, attn_mask=mask
        )
        ctx.save_for_backward(q, k, v, out, lse, mask)
        ctx.is_causal, ctx.groups = is_causal, groups
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, lse, mask = ctx.saved_tensors
        kernel = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
        grad_q, grad_k, grad_v = kernel(
            grad_out.float(), q.float(), *_fp32_heads(k, v, ctx.groups), out, lse, 0.0,
            ctx.is_causal, attn_mask=mask,
        )  # fmt: skip
        # a KV head's gradient sums its query heads' (in fp32, then rounded once)
        grad_k, grad_v = (g.unflatten(1, (-1, ctx.groups)).sum(2) for g in (grad_k, grad_v))
        return grad_q.to(q.dtype), grad_k.to(k.dtype), grad_v.to(v.dtype), None, None


def _fp32_heads(k: torch.Tensor, v: torch.Tensor, groups: int) -> list[torch.Tensor]:
    return [t.float().repeat_interleave(groups, dim=1) for t in (k, v)]


class SelfAttention(nn.Module):
    """Self-attention with a fused, per-KV-group ``linear_qkv`` and an output ``linear_proj``.

    Args:
        hidden_size: Model width.
        num_heads: Query heads.
        num_kv_heads: Key/value heads (``num_heads`` for MHA, 1 for MQA).
        head_dim: Per-head width.
        qkv_bias: Whether ``linear_qkv`` has a bias.
        proj_bias: Whether ``linear_proj`` has a bias.
        causal: Decoder (True) or encoder (False) attention.
        dropout: Attention-probability dropout, applied in training only.
        layer_idx: This layer's slot in a :class:`KVCache`.

    Under tensor parallelism ``linear_qkv`` returns this rank's whole KV groups only, so the head
    counts used in ``forward`` are read from the projection's width, never from the attributes.
    """

    # The attention core, ``attend``'s signature; parallel plans replace it per instance (context
    # parallelism gathers keys and values over its ranks, selective activation checkpointing
    # recomputes it), see ``optica.models.modules.parallel``.
    core_attention = staticmethod(attend)

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        *,
        qkv_bias: bool = False,
        proj_bias: bool = False,
        causal: bool = True,
        dropout: float = 0.0,
        layer_idx: int = 0,
    ) -> None:
        super().__init__()
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads={num_heads} is not a multiple of {num_kv_heads=}")
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.causal, self.dropout, self.layer_idx = causal, dropout, layer_idx
        qkv_out = (num_heads + 2 * num_kv_heads) * head_dim
        self.linear_qkv = nn.Linear(hidden_size, qkv_out, bias=qkv_bias)
        self.linear_proj = nn.Linear(num_heads * head_dim, hidden_size, bias=proj_bias)

    def forward(
        self,
        x: torch.Tensor,
        *,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        queries: slice | None = None,
    ) -> torch.Tensor:
        """Attends ``x`` [B, T, hidden] to itself (and to cached tokens) → [B, T, hidden].

        Args:
            x: Input activations.
            rope: ``(cos, sin)`` [B, T, head_dim] for these tokens, or None (no rotary).
            mask: Boolean mask [B or 1, 1, T, S] from ``build_attention_mask``, or None.
            kv_cache: Receives this layer's new keys/values and supplies the earlier ones.
            queries: Only these tokens query (keys and values still come from every token); the
                output is [B, len(queries), hidden]. Encoders take any range (a classifier's
                class token: ``slice(0, 1)``), decoders a suffix ``slice(start, None)``: a
                training loss that reads no output before ``start`` (LLaVA's image and prompt).
                An encoder's few queries skip the key and value projections where that is
                cheaper (``optica.models.modules.few_queries``).
        """
        batch, seq_len, _ = x.shape
        if queries is not None and absorbs(
            self, x, queries, mask=mask, rope=rope, kv_cache=kv_cache
        ):
            return self.linear_proj(attend_few_queries(self, x, queries))
        q, k, v = self._project(x)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if queries is not None:
            mask = self._query_rows(mask, queries, seq_len, x.device, kv_cache)
            q = q[:, queries]
            seq_len = q.shape[1]
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if kv_cache is not None:
            k, v = kv_cache.append(self.layer_idx, k, v)
        dropout = self.dropout if self.training else 0.0
        out = self.core_attention(q, k, v, mask=mask, causal=self.causal, dropout=dropout)
        return self.linear_proj(out.transpose(1, 2).reshape(batch, seq_len, -1))

    def _query_rows(
        self,
        mask: torch.Tensor | None,
        queries: slice,
        seq_len: int,
        device: torch.device,
        kv_cache: KVCache | None,
    ) -> torch.Tensor | None:
        """The mask's rows for ``queries``; for causal attention the causal mask of a query suffix
        (SDPA's ``is_causal`` aligns a shorter query block to the first keys, not the last)."""
        if kv_cache is not None or queries.step not in (None, 1):
            raise ValueError("queries= takes a contiguous range and no KV cache")
        start = queries.indices(seq_len)[0]
        if self.causal and queries.stop not in (None, seq_len):
            raise ValueError("causal attention takes a suffix of queries: slice(start, None)")
        if mask is not None:
            return mask[:, :, queries] if mask.shape[2] == seq_len else mask
        if not self.causal:
            return None
        return build_attention_mask(
            q_len=seq_len - start, k_len=seq_len, offset=start, device=device
        )

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns q [B, T, H, d], k and v [B, T, G, d] from the fused projection (H and G are
        this rank's heads under tensor parallelism)."""
        batch, seq_len, _ = x.shape
        per_group = self.num_heads // self.num_kv_heads
        qkv = self.linear_qkv(x).view(batch, seq_len, -1, per_group + 2, self.head_dim)
        # NOTE: one split, not three slices: its backward is one concatenation, where each
        # slice's backward would write a zero-filled full-size gradient to be summed.
        q, k, v = qkv.split([per_group, 1, 1], dim=3)
        return q.reshape(batch, seq_len, -1, self.head_dim), k.squeeze(3), v.squeeze(3)
