"""Published sizes: shapes, exact parameter counts, base-config generation."""

import pytest

from optica.autoconfig import (
    count_parameters,
    families,
    generate_base_config,
    model_shape,
    preset_names,
)
from optica.autoconfig.params import model_params
from optica.autoconfig.shapes import LanguageShape, ModelShape, ProjectorShape, VisionShape
from optica.run.errors import ConfigError


def test_llama2_7b_has_6_74b_parameters():
    # Per layer: attention 4·4096² = 67,108,864; SwiGLU 3·4096·11008 = 135,266,304;
    # two RMSNorms 2·4096 = 8,192 → 202,383,360 × 32 = 6,476,267,520.
    # Embedding and untied output 2·32000·4096 = 262,144,000; final norm 4,096.
    assert count_parameters(model_shape("llama2_7b")) == 6_476_267_520 + 262_144_000 + 4_096
    assert count_parameters(model_shape("llama2_7b")) == 6_738_415_616


def test_tinyllama_has_1_1b_parameters():
    # A 1B-class model the runner can launch (Llama-style, untied): per layer q and o 2·2048²,
    # k and v 2·2048·256 (4 KV groups of 64), SwiGLU 3·2048·5632, two norms 2·2048 →
    # 44,050,432 × 22; embedding and output 2·32000·2048; final norm 2048.
    expected = 22 * (2 * 2048**2 + 2 * 2048 * 256 + 3 * 2048 * 5632 + 2 * 2048)
    expected += 2 * 32000 * 2048 + 2048
    assert count_parameters(model_shape("tinyllama_1.1b")) == expected == 1_100_048_384


def test_llava15_7b_is_about_7_06b():
    # CLIP ViT-L/14-336: patch conv 3·14²·1024 = 602,112 (no bias); class 1,024; positions
    # 577·1024 = 590,848; pre-norm 2,048; 24 layers × 12,596,224 = 302,309,376; post-norm 2,048
    # → 303,507,456. Projector 1024·4096 + 4096 + 4096² + 4096 = 20,979,712.
    clip = 602_112 + 1_024 + 590_848 + 2_048 + 24 * 12_596_224 + 2_048
    assert clip == 303_507_456
    total = count_parameters(model_shape("llava15_7b"))
    assert total == 6_738_415_616 + clip + 20_979_712
    assert total / 1e9 == pytest.approx(7.06, abs=0.005)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("llama3_8b", 8_030_261_248),  # meta-llama/Meta-Llama-3-8B
        ("mistral_7b", 7_241_732_096),  # mistralai/Mistral-7B-v0.1
        ("mixtral_8x7b", 46_702_792_704),  # mistralai/Mixtral-8x7B-v0.1
        ("gemma_2b", 2_506_172_416),  # google/gemma-2b (tied, head dim 256, MQA)
        ("gemma_7b", 8_537_680_896),  # google/gemma-7b (16 heads × 256 ≠ 3072)
        ("llama2_13b", 13_015_864_320),
        ("vit_b16", 86_567_656),  # timm vit_base_patch16_224, 1000-class head
    ],
)
def test_parameter_counts_match_the_released_checkpoints(name, expected):
    assert count_parameters(model_shape(name)) == expected


@pytest.mark.parametrize(
    ("name", "hidden", "ffn", "heads", "layers", "patch", "size_m"),
    [
        ("vit_b16", 768, 3072, 12, 12, 16, 86),
        ("vit_l16", 1024, 4096, 16, 24, 16, 303),
        ("vit_h16", 1280, 5120, 16, 32, 16, 632),
        ("vit_h14", 1280, 5120, 16, 32, 14, 632),
        ("vit_g14", 1408, 6144, 16, 40, 14, 1011),
        ("vit_G14", 1664, 8192, 16, 48, 14, 1843),
    ],
)
def test_vit_sizes_follow_the_seed_002_table(name, hidden, ffn, heads, layers, patch, size_m):
    model = model_shape(name)
    v = model.vision
    assert (v.hidden_size, v.ffn_hidden_size, v.num_attention_heads) == (hidden, ffn, heads)
    assert (v.num_layers, v.patch_size, model.num_classes) == (layers, patch, 1000)
    # The seed rounds, with or without the 1000-class head: within 1% of its "model size (M)".
    assert count_parameters(model) / 1e6 == pytest.approx(size_m, rel=0.01)


def test_llava_image_becomes_576_tokens():
    # 336 px / patch 14 = 24 → 24² = 576 patches; the class token is dropped.
    assert model_shape("llava15_7b").image_tokens == 576
    assert model_shape("llava15_7b").vision.seq_length == 577


def test_every_required_family_is_registered():
    assert {"gpt3", "llama2", "llama3", "mistral", "mixtral", "gemma", "nemotron"} <= set(
        families()
    )
    assert {"llava15", "vit"} <= set(families())
    assert {"llava15_7b", "llava15_13b"} <= set(preset_names("llava15"))


def test_base_config_is_the_nearest_published_size_on_a_log_scale():
    assert generate_base_config("llama2", model_size_in_b=7).name == "llama2_7b"
    # 20B: |ln(20/13.0)| = 0.43 < |ln(69.0/20)| = 1.24; 40B: |ln(40/13.0)| = 1.12 > 0.54.
    assert generate_base_config("llama2", model_size_in_b=20).name == "llama2_13b"
    assert generate_base_config("llama2", model_size_in_b=40).name == "llama2_70b"
    with pytest.raises(ConfigError, match="model_size_in_b must be positive"):
        generate_base_config("llama2", model_size_in_b=0)


def test_mixtral_is_a_top2_moe_of_8_experts():
    lm = generate_base_config("mixtral", model_size_in_b=47).language
    assert (lm.num_experts, lm.moe_router_topk, lm.kv_heads) == (8, 2, 8)


def test_unknown_names_are_one_line_errors_with_a_hint():
    with pytest.raises(ConfigError, match="unknown model 'llama2_7B'; did you mean 'llama2_7b'"):
        model_shape("llama2_7B")
    with pytest.raises(ConfigError, match="unknown model family 'lama2'; did you mean 'llama2'"):
        generate_base_config("lama2", model_size_in_b=7)


def test_shapes_reject_inconsistent_numbers():
    with pytest.raises(ConfigError, match="not a multiple of num_query_groups=3"):
        LanguageShape(hidden_size=64, ffn_hidden_size=128, num_layers=2, num_attention_heads=8,
                      num_query_groups=3)  # fmt: skip
    with pytest.raises(ConfigError, match="image_size=225 is not a multiple of patch_size=14"):
        VisionShape(hidden_size=64, ffn_hidden_size=128, num_layers=2, num_attention_heads=4,
                    image_size=225, patch_size=14)  # fmt: skip
    with pytest.raises(ConfigError, match="a VLM needs a projector"):
        ModelShape(
            "x", language=model_shape("llama2_7b").language, vision=model_shape("vit_b16").vision
        )
    with pytest.raises(ConfigError, match="projector kind"):
        ProjectorShape(input_size=4, output_size=4, kind="mlp3x")


def test_vit_sequence_length_comes_from_the_image():
    with pytest.raises(ConfigError, match="set by image_size and patch_size"):
        model_shape("vit_b16").with_seq_length(4096)
    assert model_shape("llama2_7b").with_seq_length(8192).seq_length == 8192


def test_parameter_split_keeps_norms_whole_on_tp_ranks():
    split = model_params(model_shape("llama2_7b"))
    # 65 RMSNorms of 4096 (2 per layer + final) are replicated; the rest is sharded.
    assert split.replicated == 65 * 4096
    assert split.sharded == 6_738_415_616 - 65 * 4096
    assert split.expert == 0
