"""LLaVA: the vectorised splice against a loop, lazy presets with the real parameter counts,
packing, padding, KV-cache decoding, labels, the *_from_pretrained hook and clear errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import AutoConfig, LlavaForConditionalGeneration

from optica.models import (
    IMAGE_TOKEN_INDEX,
    InternViTConfigTiny,
    KVCache,
    Llava15Config7B,
    Llava15Config13B,
    LlavaConfigTiny,
    LlavaModel,
    PackedSeqParams,
    UnsupportedModelError,
    family_for_config,
)
from optica.models.vlm.llava import IGNORE_INDEX, SplicePlan
from optica.run.errors import ConfigError

IMG = IMAGE_TOKEN_INDEX
P = 64  # LlavaConfigTiny: 8 x 8 patches, class token dropped

# llava-hf/llava-1.5-{7,13}b-hf config.json (the fields that differ from transformers' defaults,
# as the files on the hub list them).
LLAVA15_TEXT = {
    7: {"max_position_embeddings": 4096, "rms_norm_eps": 1e-05},
    13: {"hidden_size": 5120, "intermediate_size": 13824, "num_attention_heads": 40,
         "num_hidden_layers": 40, "num_key_value_heads": 40, "max_position_embeddings": 4096,
         "rms_norm_eps": 1e-05},
}  # fmt: skip


def llava15_json(size: int) -> dict:
    return {
        "architectures": ["LlavaForConditionalGeneration"],
        "model_type": "llava",
        "image_token_index": 32000,
        "pad_token_id": 32001,
        "projector_hidden_act": "gelu",
        "text_config": {"model_type": "llama", "vocab_size": 32064, **LLAVA15_TEXT[size]},
        "vision_config": {"model_type": "clip_vision_model", "hidden_size": 1024,
                          "intermediate_size": 4096, "num_attention_heads": 16,
                          "num_hidden_layers": 24, "patch_size": 14, "image_size": 336,
                          "projection_dim": 768},
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "vocab_size": 32064,
    }  # fmt: skip


@pytest.mark.parametrize(
    "preset,size,parameters",
    [(Llava15Config7B, 7, 7_063_427_072), (Llava15Config13B, 13, 13_351_494_656)],
    ids=["7b", "13b"],
)
def test_presets_are_lazy_and_exactly_llava_hf(preset, size, parameters):
    model = LlavaModel(preset())
    assert not model.is_materialized and all(p.is_meta for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == parameters
    hf_config = AutoConfig.for_model(**llava15_json(size))
    with torch.device("meta"):
        hf_model = LlavaForConditionalGeneration(hf_config)
    assert sum(p.numel() for p in hf_model.parameters()) == parameters
    imported = family_for_config(preset()).hf_adapter.config_from_hf(llava15_json(size))
    assert dataclasses.asdict(imported) == dataclasses.asdict(preset())
    assert preset().num_image_tokens == 576


def tiny(seed: int = 0, **overrides) -> LlavaModel:
    return LlavaModel(LlavaConfigTiny(**overrides)).init_weights(seed).eval()


def test_tiny_preset_is_the_demo_size():
    model = LlavaModel(LlavaConfigTiny())
    assert not model.is_materialized
    assert 350_000 < sum(p.numel() for p in model.parameters()) < 450_000


def naive_expand(ids: torch.Tensor, values: torch.Tensor, images: torch.Tensor, pad: float):
    """A per-token loop: the obvious definition of the splice."""
    rows, image_index = [], 0
    for row_ids, row_values in zip(ids.tolist(), values):
        row = []
        for token, value in zip(row_ids, row_values):
            if token == IMG:
                row += list(images[image_index])
                image_index += 1
            else:
                row.append(value)
        rows.append(row)
    width = max(map(len, rows))
    padding = torch.full_like(values[0, 0], pad)
    return torch.stack([torch.stack(row + [padding] * (width - len(row))) for row in rows])


def test_splice_matches_a_per_token_loop():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 100, (4, 9), generator=generator)
    ids[0, [1, 5]] = IMG  # two images in one sample
    ids[2, 0] = IMG  # an image first; rows 1 and 3 are text only
    ids[3, 8] = IMG  # an image last
    values = torch.randn(4, 9, 3, generator=generator)
    pictures = torch.randn(4, P, 3, generator=generator)
    plan = SplicePlan.build(ids, P)
    assert plan.num_images == 4 and plan.width == 9 + 2 * (P - 1) and plan.ragged
    expected = naive_expand(ids, values, pictures, 0)
    torch.testing.assert_close(plan.expand(values, image=pictures), expected)
    labels = plan.expand(ids, image=IGNORE_INDEX, pad=IGNORE_INDEX)
    assert (labels == IGNORE_INDEX).sum() == 4 * P + (plan.width - plan.lengths).sum()
    assert plan.padding_mask().sum(1).tolist() == plan.lengths.tolist()


def test_logits_cover_the_expanded_sequence_and_labels_align():
    model = tiny()
    ids = torch.tensor([[1, IMG, 5, 6], [7, 8, 9, 10]])
    logits = model(input_ids=ids, images=torch.randn(1, 3, 32, 32))
    assert logits.shape == (2, 4 + P - 1, 250)
    labels = model.expand_labels(ids, ids.clone())
    assert labels.shape == logits.shape[:2]
    assert labels[0, 1 : 1 + P].eq(IGNORE_INDEX).all() and labels[0, P + 1 :].tolist() == [5, 6]
    assert labels[1, :4].tolist() == [7, 8, 9, 10] and labels[1, 4:].eq(IGNORE_INDEX).all()


@torch.no_grad()
def test_padding_does_not_change_real_positions():
    model = tiny()
    pixels = torch.randn(2, 3, 32, 32)
    ids = torch.tensor([[3, IMG, 4, 5, 6], [0, 0, 7, IMG, 8]])  # row 1 left-padded by two
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    batch = model(input_ids=ids, images=pixels, attention_mask=mask)
    alone = model(input_ids=ids[1:, 2:], images=pixels[1:])
    torch.testing.assert_close(batch[1, 2:], alone[0], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_packed_samples_match_each_sample_alone():
    model = tiny()
    first, second = torch.tensor([[3, IMG, 4, 5]]), torch.tensor([[6, 7, IMG, 8, 9]])
    pixels = torch.randn(2, 3, 32, 32)
    alone = torch.cat([model(input_ids=first, images=pixels[:1]),
                       model(input_ids=second, images=pixels[1:])], dim=1)  # fmt: skip
    packed = PackedSeqParams(cu_seqlens=torch.tensor([0, 4, 9]))  # over input_ids, not T'
    out = model(input_ids=torch.cat([first, second], 1), images=pixels, packed_seq_params=packed)
    torch.testing.assert_close(out, alone, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_kv_cache_generation_matches_full_forward():
    model = tiny()
    ids, pixels = torch.tensor([[3, IMG, 4, 5, 6, 7, 8]]), torch.randn(1, 3, 32, 32)
    full = model(input_ids=ids, images=pixels)
    cache = KVCache()
    steps = [model(input_ids=ids[:, :4], images=pixels, kv_cache=cache)]
    steps += [model(input_ids=ids[:, t : t + 1], kv_cache=cache) for t in range(4, 7)]
    assert cache.offset == 7 + P - 1
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="images can only be given with the prompt"):
        model(input_ids=torch.tensor([[IMG]]), images=pixels, kv_cache=cache)


def test_mismatches_are_clear_errors():
    model = tiny()
    ids = torch.tensor([[1, IMG, 2, IMG]])
    with pytest.raises(ValueError, match=r"input_ids hold 2 image placeholders \(-200\) but 1"):
        model(input_ids=ids, images=torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"position_ids \[1, 4\] must cover the expanded"):
        model(input_ids=ids[:, :2], images=torch.randn(1, 3, 32, 32),
              position_ids=torch.arange(4)[None])  # fmt: skip
    with pytest.raises(ConfigError, match="did you mean 'mlp2x_gelu'"):
        LlavaConfigTiny(projector_type="mlp2x_gelus")
    with pytest.raises(ConfigError, match="vision_feature_layer=-9 is out of range"):
        LlavaConfigTiny(vision_feature_layer=-9)


def test_pretrained_parts_load_first_and_are_not_reinitialised():
    config = LlavaConfigTiny(language_model_from_pretrained="/ckpt/lm")
    language = family_for_config(config.language_transformer_config)
    lm_state = language.build(config.language_transformer_config).init_weights(7).state_dict()
    model = LlavaModel(config)
    assert model.load_pretrained_parts({"/ckpt/lm": lm_state}.__getitem__) == ["language_model"]
    assert not model.is_materialized  # only the language model so far
    model.init_weights(0)
    assert model.is_materialized
    for key, tensor in lm_state.items():  # adopted, not copied, and not overwritten
        assert model.language_model.state_dict()[key].data_ptr() == tensor.data_ptr()
    whole = {f"vision_model.{k}": v for k, v in tiny(3).vision_model.state_dict().items()}
    model.load_submodule_weights("vision_model", whole)  # a whole-LLaVA state dict works too
    with pytest.raises(ValueError, match="did you mean 'vision_model'"):
        model.load_submodule_weights("vision", whole)


def test_unused_vision_parameters_are_exactly_those_without_gradient():
    model = tiny().train()
    ids = torch.tensor([[1, IMG, 2, 3]])
    model(input_ids=ids, images=torch.randn(1, 3, 32, 32)).sum().backward()
    no_grad = {name for name, p in model.named_parameters() if p.grad is None}
    assert no_grad == set(model.unused_parameter_names())
    assert "vision_model.decoder.layers.2.mlp.linear_fc1.weight" in no_grad  # 3 layers, -2


@torch.no_grad()
def test_other_towers_plug_in_but_export_says_what_transformers_lacks():
    model = tiny(vision_transformer_config=InternViTConfigTiny(), image_token_id=5)
    logits = model(input_ids=torch.tensor([[1, IMG, 2]]), images=torch.randn(1, 3, 32, 32))
    assert logits.shape == (1, 2 + P, 250)
    adapter = family_for_config(model.config).hf_adapter
    with pytest.raises(UnsupportedModelError, match="no 'intern_vit' vision tower"):
        adapter.config_to_hf(model.config)
    with pytest.raises(UnsupportedModelError, match="an image_token_id"):
        adapter.config_to_hf(LlavaConfigTiny(image_token_id=None))


def test_llava15_json_reads_with_missing_defaults():
    """llava-hf's files omit sub-config defaults (no hidden_size in text_config)."""
    config = family_for_config(Llava15Config7B()).hf_adapter.config_from_hf(llava15_json(7))
    assert config.language_transformer_config.hidden_size == 4096
    assert config.vision_transformer_config.activation == "quick_gelu"
