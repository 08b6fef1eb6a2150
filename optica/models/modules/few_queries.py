"""Attention for a few queries over many tokens without projecting every token's keys and values.

A classifier's last encoder layer is read only at its class token. The token still attends to
every key, but the keys and values need not be projected: for one head with query ``q``, key
weight ``Wk``, bias ``bk``, value weight ``Wv`` and bias ``bv``, over the normed tokens ``x``,

    scores = q · (x Wkᵀ + bk)ᵀ = (q Wk) · xᵀ + q · bk       (q · bk is the same for every key, so
                                                             the softmax drops it)
    output = softmax(scores) (x Wvᵀ + bv) = (softmax(scores) x) Wvᵀ + bv   (the weights sum to 1)

so the layer costs ``2·heads·(head_dim + tokens)·hidden`` multiply-adds per query instead of
``2·tokens·kv_heads·head_dim·hidden`` for the keys and values (~50x less for ViT-B/16's class
token). The same identity lets DeepSeek's MLA absorb its key projection into the query. The
result equals standard attention up to float rounding (the products are summed in another
order); scores and softmax are computed in fp32.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.tensor import DTensor


def absorbs(
    attention: nn.Module,
    x: torch.Tensor,
    queries: slice,
    *,
    mask: torch.Tensor | None = None,
    rope: object = None,
    kv_cache: object = None,
) -> bool:
    """Whether :func:`attend_few_queries` may stand in for ``attention``'s keys and values here,
    and is cheaper: non-causal attention without mask, rotary or cache, a plain ``nn.Linear``
    (not LoRA, not a tensor-parallel shard), the module's own attention core (not context
    parallelism's or a checkpointing wrapper), no dropout."""
    if attention.causal or mask is not None or rope is not None or kv_cache is not None:
        return False
    qkv = attention.linear_qkv
    if type(qkv) is not nn.Linear or isinstance(qkv.weight, DTensor):
        return False
    if "core_attention" in vars(attention) or (attention.training and attention.dropout > 0):
        return False
    tokens = x.shape[1]
    count = len(range(*queries.indices(tokens)))
    absorbed = count * attention.num_heads * (attention.head_dim + tokens)
    return absorbed < tokens * attention.num_kv_heads * attention.head_dim


def attend_few_queries(attention: nn.Module, x: torch.Tensor, queries: slice) -> torch.Tensor:
    """``attention``'s per-head outputs for the ``queries`` tokens of ``x`` [B, T, hidden] →
    [B, n, heads·head_dim], the input of its ``linear_proj`` (non-causal, unmasked, no rotary).
    """
    heads, groups, dim = attention.num_heads, attention.num_kv_heads, attention.head_dim
    per_group = heads // groups
    qkv = attention.linear_qkv
    query_weight, key_weight, value_weight = _per_group_parts(qkv.weight, groups, per_group, dim)
    query_bias, value_bias = None, None
    if qkv.bias is not None:
        query_bias, _, value_bias = _per_group_parts(qkv.bias, groups, per_group, dim)
        query_bias = query_bias.flatten()
    q = nn.functional.linear(x[:, queries], query_weight.flatten(0, 2), query_bias)
    q = q.unflatten(-1, (groups, per_group, dim))  # [B, n, G, P, d]
    tokens = x.float()
    key_weight, value_weight = key_weight.squeeze(1).float(), value_weight.squeeze(1).float()
    # each query moved into the token space: (q Wk) [B, n, G, P, hidden], scaled as SDPA does
    absorbed_query = torch.einsum("bngpe,geh->bngph", q.float(), key_weight) * dim**-0.5
    scores = torch.einsum("bngph,bth->bngpt", absorbed_query, tokens)
    mixed = torch.einsum("bngpt,bth->bngph", scores.softmax(dim=-1), tokens)
    out = torch.einsum("bngph,geh->bngpe", mixed, value_weight)
    if value_bias is not None:
        out = out + value_bias.float()  # [G, 1, d]: the same for each query head
    return out.to(q.dtype).flatten(2)


def _per_group_parts(
    fused: torch.Tensor, groups: int, per_group: int, dim: int
) -> tuple[torch.Tensor, ...]:
    """``linear_qkv``'s weight or bias as its query [G, P, d, ...], key and value [G, 1, d, ...]
    parts. NOTE: one split, not three slices: its backward writes one gradient, where each
    slice's backward would zero-fill a full-size one to be summed."""
    return fused.unflatten(0, (groups, per_group + 2, dim)).split([per_group, 1, 1], dim=1)
