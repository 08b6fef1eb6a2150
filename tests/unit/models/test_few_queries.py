"""A few encoder queries attend to every token without projecting the tokens' keys and values
(``optica.models.modules.few_queries``): the same outputs and gradients as the standard path,
far fewer FLOPs, and the standard path wherever the identity does not hold or does not pay."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from optica.models.modules.attention import SelfAttention
from optica.models.modules.few_queries import absorbs
from optica.train.peft import LoRALinear


def _attention(heads: int = 4, groups: int = 4, bias: bool = True) -> SelfAttention:
    torch.manual_seed(0)
    return SelfAttention(64, heads, groups, 16, qkv_bias=bias, proj_bias=True, causal=False)


def _standard(attention: SelfAttention) -> SelfAttention:
    """The same module forced onto the standard path (an instance-level attention core, as the
    parallel plans install, turns the shortcut off)."""
    attention.core_attention = type(attention).core_attention
    return attention


def _outputs_and_grads(attention: SelfAttention, x: torch.Tensor, queries: slice):
    x = x.clone().requires_grad_()
    out = attention(x, queries=queries)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    params = [x, *attention.parameters()]
    return out, torch.autograd.grad((out * weights).sum(), params)


@pytest.mark.parametrize(
    "heads, groups, bias, queries",
    [(4, 4, True, slice(0, 1)), (4, 2, True, slice(0, 2)), (4, 1, False, slice(3, 4))],
)
def test_few_queries_match_the_standard_path(heads, groups, bias, queries):
    x = torch.randn(2, 40, 64, generator=torch.Generator().manual_seed(0))
    attention = _attention(heads, groups, bias)
    assert absorbs(attention, x, queries)
    out, grads = _outputs_and_grads(attention, x, queries)
    expected, expected_grads = _outputs_and_grads(_standard(attention), x, queries)
    assert out.shape == expected.shape == (2, queries.stop - queries.start, 64)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, atol=1e-6, rtol=1e-5)


def test_one_query_skips_the_key_and_value_projections():
    x = torch.randn(2, 197, 64)
    attention = _attention()

    def flops(module: SelfAttention) -> int:
        with FlopCounterMode(display=False) as counter:
            module(x, queries=slice(0, 1))
        return counter.get_total_flops()

    shortcut = flops(attention)
    keys_and_values = 2 * 2 * 197 * 64 * 64  # the [197, 64] x [64, 64] products per image, x2
    assert flops(_standard(attention)) - shortcut > 0.9 * 2 * keys_and_values


def test_the_standard_path_where_the_shortcut_does_not_hold_or_pay():
    x = torch.randn(2, 40, 64)
    attention = _attention()
    assert not absorbs(attention, x, slice(0, 40))  # every token queries: projecting is cheaper
    attention.linear_qkv = LoRALinear(
        attention.linear_qkv, dim=2, alpha=4, dropout=0.0, dropout_position="pre"
    )
    assert not absorbs(attention, x, slice(0, 1))  # the adapter changes the effective weight
    dropped = _attention()
    dropped.dropout = 0.1
    assert not absorbs(dropped.train(), x, slice(0, 1))  # dropout on probabilities: bias term
    assert absorbs(dropped.eval(), x, slice(0, 1))
    assert not absorbs(_standard(_attention()), x, slice(0, 1))
    mask = torch.ones(1, 1, 40, 40, dtype=torch.bool)
    assert not absorbs(_attention(), x, slice(0, 1), mask=mask)  # rows of keys may differ
    causal = _attention()
    causal.causal = True
    assert not absorbs(causal, x, slice(39, 40))
