"""Fused-qkv layout, attention against a naive reference, masks, norms and MLPs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from optica.models.modules.attention import SelfAttention, fuse_qkv, split_qkv
from optica.models.modules.masks import (
    PackedSeqParams,
    build_attention_mask,
    positions_from_document_ids,
)
from optica.models.modules.mlp import MLP, quick_gelu
from optica.models.modules.norms import RMSNorm


@pytest.mark.parametrize("heads,groups", [(4, 4), (4, 2), (8, 1), (6, 3)])
@pytest.mark.parametrize("trailing", [(5,), ()], ids=["weight", "bias"])
def test_fused_qkv_round_trip(heads, groups, trailing):
    d = 3
    q, k, v = (torch.randn(n * d, *trailing) for n in (heads, groups, groups))
    fused = fuse_qkv(q, k, v, groups)
    assert fused.shape == ((heads + 2 * groups) * d, *trailing)
    for original, back in zip((q, k, v), split_qkv(fused, heads, groups)):
        assert torch.equal(original, back)


def test_fused_qkv_layout_is_per_kv_group():
    # heads=4, groups=2, d=1: rows are q0 q1 k0 v0 | q2 q3 k1 v1.
    q, k, v = torch.tensor([0.0, 1, 2, 3]), torch.tensor([10.0, 11]), torch.tensor([20.0, 21])
    assert fuse_qkv(q, k, v, 2).tolist() == [0, 1, 10, 20, 2, 3, 11, 21]


def naive_attention(x, attn: SelfAttention, mask):
    """Reference: separate q/k/v from the fused weight, KV heads repeated, explicit softmax."""
    w_q, w_k, w_v = split_qkv(attn.linear_qkv.weight, attn.num_heads, attn.num_kv_heads)
    batch, seq, _ = x.shape
    q = (x @ w_q.T).view(batch, seq, attn.num_heads, -1).transpose(1, 2)
    k = (x @ w_k.T).view(batch, seq, attn.num_kv_heads, -1).transpose(1, 2)
    v = (x @ w_v.T).view(batch, seq, attn.num_kv_heads, -1).transpose(1, 2)
    repeat = attn.num_heads // attn.num_kv_heads
    k, v = k.repeat_interleave(repeat, 1), v.repeat_interleave(repeat, 1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~mask, float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, seq, -1)
    return attn.linear_proj(out)


@pytest.mark.parametrize("groups", [4, 2, 1])
@pytest.mark.parametrize("causal", [True, False])
def test_attention_matches_naive_reference(groups, causal):
    torch.manual_seed(0)
    attn = SelfAttention(16, 4, groups, 4, causal=causal)
    x = torch.randn(2, 6, 16)
    full = torch.ones(6, 6, dtype=torch.bool)
    mask = full.tril() if causal else full
    torch.testing.assert_close(attn(x), naive_attention(x, attn, mask))
    explicit = mask[None, None].clone()
    torch.testing.assert_close(attn(x, mask=explicit), naive_attention(x, attn, mask))


def test_plain_causal_needs_no_mask():
    cpu = torch.device("cpu")
    assert build_attention_mask(q_len=5, k_len=5, device=cpu) is None
    assert build_attention_mask(q_len=1, k_len=9, offset=8, device=cpu) is None
    assert build_attention_mask(q_len=5, k_len=5, causal=False, device=cpu) is None
    assert build_attention_mask(q_len=5, k_len=5, sliding_window=5, device=cpu) is None


def test_cached_chunk_and_sliding_window_masks():
    cpu = torch.device("cpu")
    chunk = build_attention_mask(q_len=2, k_len=5, offset=3, device=cpu)[0, 0]
    assert chunk.tolist() == [[True] * 4 + [False], [True] * 5]
    window = build_attention_mask(q_len=4, k_len=4, sliding_window=2, device=cpu)[0, 0]
    assert window.int().tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]


def test_document_and_padding_masks():
    cpu = torch.device("cpu")
    docs = PackedSeqParams(cu_seqlens=torch.tensor([0, 2, 5])).to_document_ids(1, 5, cpu)
    assert docs.tolist() == [[0, 0, 1, 1, 1]]
    assert positions_from_document_ids(docs).tolist() == [[0, 1, 0, 1, 2]]
    mask = build_attention_mask(q_len=5, k_len=5, document_ids=docs, device=cpu)[0, 0]
    assert mask[3].tolist() == [False, False, True, True, False]
    padding = torch.tensor([[0, 0, 1, 1]])
    padded = build_attention_mask(q_len=4, k_len=4, padding_mask=padding, device=cpu)[0, 0]
    assert padded[0].all()  # a query with nothing to see is opened, not left to NaN
    assert padded[3].tolist() == [False, False, True, True]


def test_packed_params_need_exactly_one_form():
    with pytest.raises(ValueError, match="exactly one"):
        PackedSeqParams()
    with pytest.raises(ValueError, match="cu_seqlens ends at 4"):
        PackedSeqParams(cu_seqlens=torch.tensor([0, 4])).to_document_ids(1, 5, torch.device("cpu"))


def test_rmsnorm_matches_transformers_in_bf16():
    ours, theirs = RMSNorm(32, eps=1e-5), LlamaRMSNorm(32, eps=1e-5)
    with torch.no_grad():
        ours.weight.normal_()
        theirs.weight.copy_(ours.weight)
    x = torch.randn(3, 32, dtype=torch.bfloat16)
    assert torch.equal(ours.to(torch.bfloat16)(x), theirs.to(torch.bfloat16)(x))


def test_swiglu_and_gelu_mlps():
    torch.manual_seed(0)
    mlp = MLP(8, 6, activation="silu", gated=True)
    x = torch.randn(2, 8)
    gate, up = mlp.linear_fc1.weight.split(6)
    expected = mlp.linear_fc2(torch.nn.functional.silu(x @ gate.T) * (x @ up.T))
    torch.testing.assert_close(mlp(x), expected)
    quick = MLP(8, 6, activation="quick_gelu", gated=False, bias=True)
    torch.testing.assert_close(quick(x), quick.linear_fc2(quick_gelu(quick.linear_fc1(x))))
    with pytest.raises(ValueError, match="unknown activation 'relu6'"):
        MLP(8, 6, activation="relu6", gated=False)


def test_cpu_attention_in_16_bits_runs_in_fp32_and_returns_16_bits():
    """bf16 inputs, or fp32 inputs under bf16 autocast, are attended by the fp32 kernel (faster
    on a CPU, and the more accurate softmax) and come back in bf16, gradients included."""
    from optica.models.modules.attention import attend

    gen = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(2, 4, 9, 8, generator=gen) for _ in range(3))
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    half = [t.bfloat16().requires_grad_() for t in (q, k, v)]
    out = attend(*half, mask=None, causal=True)
    upcast = F.scaled_dot_product_attention(*(t.float() for t in half), is_causal=True)
    assert out.dtype == torch.bfloat16 and torch.equal(out, upcast.bfloat16())
    out.sum().backward()
    assert all(t.grad.dtype == torch.bfloat16 for t in half)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = attend(q, k, v, mask=None, causal=True)
    assert auto.dtype == torch.bfloat16 and torch.equal(auto, expected.bfloat16())


@pytest.mark.parametrize("case", ["causal", "mask", "grouped"])
def test_cpu_fp32_attention_matches_sdpa_and_keeps_16_bit_inputs(case):
    """Same output and gradients as fp32 SDPA on the upcast inputs (bit for bit: the same
    kernel), while what autograd keeps for the backward pass is the 16-bit q, k, v."""
    from optica.models.modules.attention import attend

    gen = torch.Generator().manual_seed(8)
    kv_heads = 2 if case == "grouped" else 4
    shapes = [(2, 4, 9, 8), (2, kv_heads, 9, 8), (2, kv_heads, 9, 8)]
    half = [torch.randn(*s, generator=gen).bfloat16().requires_grad_() for s in shapes]
    mask = None
    if case == "mask":
        mask = torch.ones(2, 1, 9, 9, dtype=torch.bool).tril()
        mask[1, ..., 7:] = False  # padding at the end of the second row
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = attend(*half, mask=mask, causal=True)
    assert {t.dtype for t in saved if t.dim() == 4 and t.shape[-1] == 8} >= {torch.bfloat16}
    grad = torch.randn(out.shape, generator=gen).bfloat16()
    out.backward(grad)
    upcast = [t.detach().float().requires_grad_() for t in half]
    k, v = upcast[1:]
    if case == "grouped":
        k, v = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
    expected = F.scaled_dot_product_attention(
        upcast[0], k, v, attn_mask=mask, is_causal=mask is None
    )
    expected.backward(grad.float())
    assert torch.equal(out, expected.bfloat16())
    for mine, reference in zip(half, upcast):
        assert torch.equal(mine.grad, reference.grad.bfloat16())
