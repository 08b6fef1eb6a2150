"""Vision encoders and the ViT classifier: lazy presets with the real parameter counts (seed 002's
table for ViT), feature layers that skip the layers after them, config checks, registry lookups,
config.json round trips, and training-time behaviour (dropout, stochastic depth)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    InternVLVisionConfig,
    InternVLVisionModel,
    SiglipVisionConfig,
    SiglipVisionModel,
    ViTForImageClassification,
)
from transformers import ViTConfig as HFViTConfig

from optica.models import (
    CLIPViTB_16_Config,
    CLIPViTB_32_Config,
    CLIPViTConfigTiny,
    CLIPViTL_14_336_Config,
    CLIPViTL_14_Config,
    InternViT_300M_448px_Config,
    InternViTConfigTiny,
    SigLIPB_16_224_Config,
    SigLIPB_16_384_Config,
    SigLIPso400m_14_384_Config,
    SigLIPViTConfigTiny,
    UnsupportedModelError,
    ViTB16Config,
    ViTClassificationModel,
    ViTConfigTiny,
    ViTG14Config,
    ViTg14Config,
    ViTH14Config,
    ViTH16Config,
    ViTL16Config,
    family_for_config,
    family_for_hf_config,
)
from optica.run.errors import ConfigError


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def hf_count(model_class, config) -> int:
    with torch.device("meta"):
        return count(model_class(config))


def hf_tower(config) -> tuple[type, object]:
    """transformers' class and config for a CLIP or SigLIP preset."""
    dims = {
        "hidden_size": config.hidden_size,
        "intermediate_size": config.ffn_hidden_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_attention_heads,
        "patch_size": config.patch_dim,
        "image_size": config.img_h,
    }
    if config.add_class_token:
        return CLIPVisionModel, CLIPVisionConfig(**dims)
    return SiglipVisionModel, SiglipVisionConfig(**dims, vision_use_head=False)


TOWERS = {  # the count in each docstring, checked against transformers below
    CLIPViTB_32_Config: 87_456_000,
    CLIPViTB_16_Config: 85_799_424,
    CLIPViTL_14_Config: 303_179_776,
    CLIPViTL_14_336_Config: 303_507_456,
    SigLIPB_16_224_Config: 85_797_120,
    SigLIPB_16_384_Config: 86_088_960,
    SigLIPso400m_14_384_Config: 412_987_248,
}


@pytest.mark.parametrize("preset", list(TOWERS), ids=lambda c: c.__name__)
def test_tower_presets_are_lazy_and_the_real_size(preset):
    config = preset()
    model = family_for_config(config).build(config)
    assert not model.is_materialized and all(p.is_meta for p in model.parameters())
    assert count(model) == TOWERS[preset] == hf_count(*hf_tower(config))


def test_intern_vit_300m_is_the_published_size():
    config = InternViT_300M_448px_Config()
    hf = InternVLVisionConfig(attention_bias=True, use_mean_pooling=True)  # 300M's shape
    assert count(family_for_config(config).build(config)) == 304_012_288
    assert hf_count(InternVLVisionModel, hf) == 304_012_288  # model card: 304M


# Seed 002's table: hidden, FFN, heads, layers, patch, size (M).
VIT_TABLE = {
    ViTB16Config: (768, 3072, 12, 12, 16, 86),
    ViTL16Config: (1024, 4096, 16, 24, 16, 303),
    ViTH16Config: (1280, 5120, 16, 32, 16, 632),
    ViTH14Config: (1280, 5120, 16, 32, 14, 632),
    ViTg14Config: (1408, 6144, 16, 40, 14, 1011),
    ViTG14Config: (1664, 8192, 16, 48, 14, 1843),
}


@pytest.mark.parametrize("preset", list(VIT_TABLE), ids=lambda c: c.__name__)
def test_vit_sizes_are_seed_002s_table(preset):
    hidden, ffn, heads, layers, patch, millions = VIT_TABLE[preset]
    config = preset()
    assert (config.hidden_size, config.ffn_hidden_size, config.num_attention_heads,
            config.num_layers, config.patch_dim) == (hidden, ffn, heads, layers, patch)  # fmt: skip
    assert (config.img_h, config.img_w, config.num_channels, config.num_classes) == (
        224,
        224,
        3,
        1000,
    )
    assert (config.hidden_dropout, config.attention_dropout) == (0.1, 0.0)
    model = ViTClassificationModel(config)
    assert not model.is_materialized
    encoder = count(model.backbone) / 1e6
    assert abs(encoder - millions) < 1.5  # H/16, H/14 round to 632 with their 1000-class head
    hf = HFViTConfig(hidden_size=hidden, intermediate_size=ffn, num_attention_heads=heads,
                     num_hidden_layers=layers, patch_size=patch, num_labels=1000)  # fmt: skip
    assert count(model) == hf_count(ViTForImageClassification, hf)


def tiny(config):
    return family_for_config(config).build(config).init_weights(0).eval()


@pytest.mark.parametrize(
    "config", [CLIPViTConfigTiny(), SigLIPViTConfigTiny(), InternViTConfigTiny()],
    ids=["clip", "siglip", "intern_vit"],
)  # fmt: skip
def test_feature_layer_runs_only_the_layers_it_needs(config):
    model = tiny(config)
    ran = []
    for index, layer in enumerate(model.decoder.layers):
        layer.register_forward_hook(lambda *_, i=index: ran.append(i))
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model(pixels, feature_layer=-2)
        assert ran == [0, 1]  # 3 layers: hidden state -2 is layer 1's output
        states = model.hidden_states(pixels)
    torch.testing.assert_close(features, states[-2])
    assert features.shape == (2, config.seq_length, 64)


def test_feature_layer_out_of_range_is_a_config_error():
    model = tiny(CLIPViTConfigTiny())
    with pytest.raises(ConfigError, match=r"vision_feature_layer=-5 is out of range .* -4\.\.3"):
        model(torch.randn(1, 3, 32, 32), feature_layer=-5)


def test_bad_configs_are_one_line_errors():
    with pytest.raises(ConfigError, match="did you mean 'quick_gelu'"):
        CLIPViTConfigTiny(activation="quick_gelu_")
    with pytest.raises(ConfigError, match="image 2x32 is smaller than patch_dim=4"):
        CLIPViTConfigTiny(img_h=2)
    with pytest.raises(ConfigError, match="num_classes=0 must be >= 1"):
        ViTConfigTiny(num_classes=0)


def test_wrong_image_size_names_the_fix():
    with pytest.raises(ValueError, match=r"expects images \[B, 3, 32, 32\].*resample the position"):
        tiny(SigLIPViTConfigTiny())(torch.randn(1, 3, 48, 48))


def test_hf_checkpoints_find_their_family():
    for architecture, name in [("CLIPVisionModel", "clip_vit"), ("CLIPModel", "clip_vit"),
                               ("SiglipVisionModel", "siglip_vit"), ("SiglipModel", "siglip_vit"),
                               ("InternVisionModel", "intern_vit"),
                               ("ViTForImageClassification", "vit"),
                               ("LlavaForConditionalGeneration", "llava")]:  # fmt: skip
        assert family_for_hf_config({"architectures": [architecture]}).name == name
    assert family_for_hf_config({"model_type": "clip_vision_model"}).name == "clip_vit"
    assert family_for_config(ViTH14Config()).name == "vit"


@pytest.mark.parametrize(
    "preset",
    [CLIPViTL_14_336_Config, SigLIPso400m_14_384_Config, InternViT_300M_448px_Config,
     ViTB16Config, ViTConfigTiny],
    ids=lambda c: c.__name__,
)  # fmt: skip
def test_presets_round_trip_through_config_json(preset):
    config = preset()
    adapter = family_for_config(config).hf_adapter
    written = adapter.config_to_hf(config)
    assert dataclasses.asdict(adapter.config_from_hf(written)) == dataclasses.asdict(config)


def test_unexpressible_exports_are_refused():
    adapter = family_for_config(CLIPViTConfigTiny()).hf_adapter
    with pytest.raises(UnsupportedModelError, match="CLIPVisionModel cannot express add_class"):
        adapter.config_to_hf(CLIPViTConfigTiny(add_class_token=False))
    with pytest.raises(UnsupportedModelError, match="non-square image 32x64"):
        adapter.config_to_hf(CLIPViTConfigTiny(img_w=64))


def test_vit_classifier_trains_with_dropout():
    model = tiny(ViTConfigTiny())
    pixels = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert model(pixels).shape == (4, 10)
        torch.testing.assert_close(model(pixels), model(pixels))
    model.train()
    loss = torch.nn.functional.cross_entropy(model(pixels), torch.arange(4))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert not torch.equal(model(pixels), model(pixels))  # hidden_dropout=0.1 is live


def test_intern_vit_layer_scale_and_stochastic_depth():
    model = tiny(InternViTConfigTiny(drop_path_rate=0.5))
    layer = model.decoder.layers[0]
    assert torch.equal(layer.ls1, torch.full((64,), 0.1))  # initializer_factor
    rates = [layer.drop_path_rate for layer in model.decoder.layers]
    assert rates == [0.0, 0.25, 0.5]  # linear in depth, as InternViT's dpr
    pixels = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(pixels), model(pixels))
        model.train()
        assert not torch.equal(model(pixels), model(pixels))


def test_fields_missing_from_config_json_take_the_architectures_defaults():
    """Files often list only non-default fields; the defaults differ by architecture."""
    dims = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "patch_size": 8, "image_size": 32}  # fmt: skip
    clip = family_for_hf_config({"model_type": "clip_vision_model"}).hf_adapter
    config = clip.config_from_hf({"model_type": "clip_vision_model", **dims})
    assert (config.activation, config.layernorm_epsilon) == ("quick_gelu", 1e-5)
    vit = family_for_hf_config({"model_type": "vit"}).hf_adapter
    config = vit.config_from_hf({"model_type": "vit", **dims, "num_labels": 3})
    assert (config.layernorm_epsilon, config.num_classes, config.activation) == (1e-12, 3, "gelu")
