"""The Llama decoder: lazy construction, init, packing, KV cache, inputs_embeds."""

from __future__ import annotations

import pytest
import torch

from optica.models import (
    CheckpointError,
    KVCache,
    Llama2Config7B,
    Llama2Config13B,
    Llama3Config8B,
    Llama31Config8B,
    LlamaConfigTiny,
    LlamaModel,
    MistralConfig7B,
    MistralConfigTiny,
    PackedSeqParams,
    VicunaConfig7B,
    VicunaConfig13B,
)
from optica.run.errors import ConfigError

PARAMETERS = {  # from each model card / the HF model's num_parameters()
    Llama2Config7B: 6_738_415_616,
    Llama2Config13B: 13_015_864_320,
    VicunaConfig7B: 6_738_415_616,
    VicunaConfig13B: 13_015_864_320,
    Llama3Config8B: 8_030_261_248,
    Llama31Config8B: 8_030_261_248,
    MistralConfig7B: 7_241_732_096,
}


@pytest.mark.parametrize("preset", list(PARAMETERS), ids=lambda c: c.__name__)
def test_presets_allocate_nothing_and_have_the_real_size(preset):
    model = LlamaModel(preset())
    assert all(p.is_meta for p in model.parameters())
    assert not model.is_materialized
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[preset]


def tiny(seed: int = 0, config=None) -> LlamaModel:
    return LlamaModel(config or LlamaConfigTiny()).init_weights(seed).eval()


def test_megatron_names():
    names = set(dict(tiny().named_parameters()))
    for name in (
        "embedding.word_embeddings.weight",
        "decoder.layers.1.self_attention.linear_qkv.weight",
        "decoder.layers.1.self_attention.linear_proj.weight",
        "decoder.layers.1.mlp.linear_fc1.weight",
        "decoder.layers.1.mlp.linear_fc2.weight",
        "decoder.layers.1.input_layernorm.weight",
        "decoder.layers.1.pre_mlp_layernorm.weight",
        "decoder.final_layernorm.weight",
        "output_layer.weight",
    ):
        assert name in names


def test_init_is_reproducible_and_scaled():
    a, b, c = tiny(0), tiny(0), tiny(1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.output_layer.weight, c.output_layer.weight)
    layer = a.decoder.layers[0]
    assert torch.equal(layer.input_layernorm.weight, torch.ones(64))
    qkv_std = layer.self_attention.linear_qkv.weight.std().item()
    out_std = layer.mlp.linear_fc2.weight.std().item()
    assert qkv_std == pytest.approx(0.02, rel=0.1)
    assert out_std == pytest.approx(0.02 / 2, rel=0.1)  # residual writers: std / sqrt(2 layers)
    bf16 = LlamaModel(LlamaConfigTiny()).init_weights(0, dtype=torch.bfloat16)
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}


def test_load_weights_assigns_without_copy_and_checks_keys():
    source = tiny(3)
    state = source.state_dict()
    model = LlamaModel(LlamaConfigTiny()).load_weights(state)
    assert model.is_materialized
    assert model.output_layer.weight.data_ptr() == state["output_layer.weight"].data_ptr()
    del state["output_layer.weight"]
    with pytest.raises(CheckpointError, match="missing \\['output_layer.weight'\\]"):
        LlamaModel(LlamaConfigTiny()).load_weights(state)


def test_vocab_is_padded_but_logits_are_not():
    model = tiny()
    assert model.embedding.word_embeddings.weight.shape[0] == 256
    assert model(input_ids=torch.zeros(1, 3, dtype=torch.long)).shape == (1, 3, 250)


@torch.no_grad()
def test_packed_samples_match_each_sample_alone():
    model = tiny()
    first, second = torch.randint(0, 250, (1, 5)), torch.randint(0, 250, (1, 7))
    packed = torch.cat([first, second], dim=1)
    alone = torch.cat([model(input_ids=first), model(input_ids=second)], dim=1)
    params = PackedSeqParams(cu_seqlens=torch.tensor([0, 5, 12], dtype=torch.int32))
    torch.testing.assert_close(model(input_ids=packed, packed_seq_params=params), alone)
    docs = torch.tensor([[0] * 5 + [1] * 7, [0] * 12])
    batch = torch.cat([packed, packed])
    out = model(input_ids=batch, packed_seq_params=PackedSeqParams(document_ids=docs))
    torch.testing.assert_close(out[0], alone[0])
    torch.testing.assert_close(out[1], model(input_ids=packed)[0])
    assert not torch.allclose(out[1, 5:], alone[0, 5:], atol=1e-3)  # the mask did something


@pytest.mark.parametrize(
    "config", [LlamaConfigTiny(), MistralConfigTiny()], ids=["llama", "mistral"]
)
@torch.no_grad()
def test_kv_cache_decoding_matches_full_forward(config):
    model = tiny(config=config)
    ids = torch.randint(0, 250, (2, 14))
    full = model(input_ids=ids)
    cache = KVCache()
    steps = [model(input_ids=ids[:, :6], kv_cache=cache)]
    steps.append(model(input_ids=ids[:, 6:9], kv_cache=cache))  # a chunk after the prompt
    steps += [model(input_ids=ids[:, t : t + 1], kv_cache=cache) for t in range(9, 14)]
    assert cache.offset == 14
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_inputs_embeds_equal_input_ids():
    model = tiny()
    ids = torch.randint(0, 250, (2, 6))
    embeds = model.embedding(ids)
    torch.testing.assert_close(model(inputs_embeds=embeds), model(input_ids=ids))
    with pytest.raises(ValueError, match="exactly one of input_ids or inputs_embeds"):
        model(input_ids=ids, inputs_embeds=embeds)
    with pytest.raises(ValueError, match="cannot be combined with a KV cache"):
        model(input_ids=ids, packed_seq_params=PackedSeqParams(cu_seqlens=torch.tensor([0, 6])),
              kv_cache=KVCache())  # fmt: skip


def test_tied_model_has_no_output_layer_and_trains():
    model = LlamaModel(LlamaConfigTiny(share_embeddings_and_output_weights=True)).init_weights(0)
    assert model.output_layer is None
    loss = model(input_ids=torch.randint(0, 250, (2, 5))).logsumexp(-1).mean()
    loss.backward()
    assert model.embedding.word_embeddings.weight.grad is not None


def test_bad_head_counts_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="num_attention_heads=4 is not a multiple of"):
        LlamaConfigTiny(num_query_groups=3)
    with pytest.raises(ConfigError, match="hidden_size=66 is not divisible"):
        LlamaConfigTiny(hidden_size=66)
