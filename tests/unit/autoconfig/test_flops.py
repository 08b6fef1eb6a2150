"""FLOPs per step: hand-computed layers, Megatron's closed form, 8·N·T, frozen parts."""

import dataclasses

import pytest

from optica.autoconfig import Layout, Lora, Training, model_shape
from optica.autoconfig.flops import (
    layer_forward_flops,
    model_flops_per_step,
    step_work_flops,
    vision_forward_flops,
)
from optica.autoconfig.shapes import LanguageShape


def tiny(**fields):
    base = dict(hidden_size=8, ffn_hidden_size=32, num_layers=2, num_attention_heads=2,
                gated_mlp=False, vocab_size=100, seq_length=16)  # fmt: skip
    return LanguageShape(**{**base, **fields})


def test_layer_flops_by_hand():
    # h=8, a=g=2, d=4, f=32, GELU; per token: QKV 2·8·(2+4)·4 = 384, projection 2·8·8 = 128,
    # MLP 2·8·32·2 = 1024, attention over 16 keys 2·2·16·2·4 = 512 → 2048 per token.
    t = tiny()
    assert layer_forward_flops(t, tokens=1, span=16, causal=False) == 384 + 128 + 1024 + 512
    # Causal attention is counted at half: 512 → 256.
    assert layer_forward_flops(t, tokens=1, span=16, causal=True) == 384 + 128 + 1024 + 256
    assert layer_forward_flops(t, tokens=10, span=16, causal=False) == 10 * 2048


def test_gqa_swiglu_and_moe_by_hand():
    # a=2, g=1: QKV 2·8·(2+2)·4 = 256; SwiGLU 2·8·32·3 = 1536; top-2 of 4 experts doubles the
    # MLP (3072) and adds a router 2·8·4 = 64. Projection 128, attention (span 0) 0.
    t = tiny(num_query_groups=1, gated_mlp=True)
    assert layer_forward_flops(t, tokens=1, span=0, causal=False) == 256 + 128 + 1536
    moe = dataclasses.replace(t, num_experts=4, moe_router_topk=2)
    assert layer_forward_flops(moe, tokens=1, span=0, causal=False) == 256 + 128 + 3072 + 64


def test_matches_megatrons_closed_form_without_the_causal_discount():
    # Narayanan et al. 2021: 72·B·s·L·h²·(1 + s/(6h) + V/(12·h·L)) for MHA, MLP of 4h, GELU.
    lm = model_shape("gpt3_1.3b").language
    b, s, L, h, V = 8, lm.seq_length, lm.num_layers, lm.hidden_size, lm.vocab_size
    ours = 3 * b * (L * layer_forward_flops(lm, tokens=s, span=s, causal=False) + 2 * h * V * s)
    megatron = 72 * b * s * L * h**2 * (1 + s / (6 * h) + V / (12 * h * L))
    assert ours == pytest.approx(megatron, rel=1e-12)


def test_model_flops_of_llama2_7b_per_token():
    # 3 × forward per token: 2·(linear weights per layer)·L + causal attention 2·2·s·h·0.5·L
    # + logits 2·h·V. Linear weights per layer: 4h² + 3hf = 202,375,168.
    lm = model_shape("llama2_7b").language
    s, h, L, V = lm.seq_length, lm.hidden_size, lm.num_layers, lm.vocab_size
    per_token = 2 * 202_375_168 * L + 2 * 2 * s * h * 0.5 * L + 2 * h * V
    assert model_flops_per_step(model_shape("llama2_7b"), 4) == pytest.approx(3 * 4 * s * per_token)


def test_full_recompute_brings_the_step_to_about_8nt():
    # C = 8·N·T: 6NT for forward + backward, 2NT for recomputing the forward. For GPT-3 175B the
    # attention (s/(6h) = 2.8%) and logits (0.35%) terms add a few percent on top.
    model = model_shape("gpt3_175b")
    layout = Layout(global_batch_size=1, recompute_granularity="full",
                    recompute_num_layers=model.backbone.num_layers)  # fmt: skip
    tokens = model.seq_length
    ratio = step_work_flops(model, layout) / (tokens * 174_604_259_328)
    assert 8.0 < ratio < 8.3


def test_llava_frozen_vision_runs_forward_only():
    # Trained vision costs 2 more forwards per image than frozen (backward = 2 × forward).
    model = model_shape("llava15_7b")
    frozen = model_flops_per_step(model, 1, Training())
    trained = model_flops_per_step(model, 1, Training(freeze_vision=False))
    assert trained - frozen == pytest.approx(2 * vision_forward_flops(model.vision))


def test_lora_language_model_only_needs_input_gradients():
    # Full: 3 forwards of the layers; LoRA: forward + input gradients = 2 forwards.
    model = model_shape("llama2_7b")
    lm = model.language
    layers = lm.num_layers * layer_forward_flops(lm, tokens=lm.seq_length, span=lm.seq_length,
                                                 causal=True)  # fmt: skip
    full = model_flops_per_step(model, 1, Training())
    lora = model_flops_per_step(model, 1, Training(lora=Lora()))
    assert full - lora == pytest.approx(layers + 2 * lm.hidden_size * lm.vocab_size * lm.seq_length)
