"""Layout validation: the seed's constraints, one clear line each."""

import pytest

from optica import run
from optica.autoconfig import Layout, LayoutError, layout_problems, model_shape
from optica.run.errors import ConfigError

LLAMA = model_shape("llama2_7b")


def problems(model=LLAMA, world=8, **fields):
    return " | ".join(layout_problems(Layout(**fields), model, world))


def test_a_valid_layout_validates_and_returns_itself():
    layout = Layout.for_world_size(8, tensor_model_parallel_size=2, global_batch_size=16,
                                   sequence_parallel=True)  # fmt: skip
    assert layout.data_parallel_size == 4
    assert layout.validate(LLAMA, 8) is layout
    assert layout.num_microbatches == 4  # 16 / (1 · 4)


def case(model, world, message, **fields):
    return pytest.param(model, world, fields, message, id=message[:40] or f"valid-{fields}")


CP_EP = "CP=2 and EP=2 cannot both be > 1"
CASES = [
    case("llama2_7b", 3, "num_attention_heads=32 is not divisible by TP=3",
         tensor_model_parallel_size=3),
    case("llama3_8b", 16, "num_query_groups (KV heads)=8 is not divisible by TP=16",
         tensor_model_parallel_size=16),
    case("llama2_7b", 3, "num_layers=32 is not divisible by PP=3", pipeline_model_parallel_size=3),
    case("llama2_7b", 2, "num_layers=32 is not divisible by PP×VP = 2×3",
         pipeline_model_parallel_size=2, virtual_pipeline_model_parallel_size=3,
         global_batch_size=2),
    case("llama2_7b", 1, "virtual pipeline (VP) needs PP > 1",
         virtual_pipeline_model_parallel_size=2),
    case("llama2_7b", 4, "micro-batches (6) divisible by PP=4", pipeline_model_parallel_size=4,
         virtual_pipeline_model_parallel_size=2, global_batch_size=6),
    case("llama2_7b", 8, "DP×TP×PP×CP = 4×1×1×1 = 4 but the world size is 8",
         data_parallel_size=4),
    case("llama2_7b", 4, "global_batch_size=12 is not divisible by micro_batch_size×DP = 2×4",
         data_parallel_size=4, micro_batch_size=2, global_batch_size=12),
    case("mixtral_8x7b", 4, CP_EP, context_parallel_size=2, expert_model_parallel_size=2,
         data_parallel_size=2, global_batch_size=2),
    case("mixtral_8x7b", 4, "EP=4 must divide num_experts=8 and DP=2",
         expert_model_parallel_size=4, data_parallel_size=2, pipeline_model_parallel_size=2,
         global_batch_size=2),
    case("llama2_7b", 2, "EP=2 needs a mixture-of-experts model", expert_model_parallel_size=2,
         data_parallel_size=2, global_batch_size=2),
    case("llama2_7b", 1, "sequence_parallel needs TP > 1", sequence_parallel=True),
    case("llama2_7b", 1, "recompute_num_layers=33 exceeds the 32 layers per model chunk",
         recompute_granularity="full", recompute_num_layers=33),
    case("llama2_7b", 1, "recompute_num_layers needs recompute_granularity='full'",
         recompute_num_layers=4),
    case("llama2_7b", 1, "recompute_granularity must be one of", recompute_granularity="all"),
    case("llama2_7b", 1, "micro_batch_size must be a positive integer, got 0", micro_batch_size=0),
    case("llama2_7b", 1, "tensor_model_parallel_size must be a positive integer",
         tensor_model_parallel_size=True),
    case("vit_b16", 2, "sequence length 197 is not divisible by 2 (CP=2)", context_parallel_size=2),
    case("llava15_7b", 32, "vision num_attention_heads=16 is not divisible by TP=32",
         tensor_model_parallel_size=32),
    case("llama2_7b", 8, "", context_parallel_size=8),
    case("llama2_7b", 16, "", context_parallel_size=16),
]  # fmt: skip


@pytest.mark.parametrize(("model", "world", "fields", "message"), CASES)
def test_each_constraint(model, world, fields, message):
    found = problems(model_shape(model), world, **fields)
    assert message in found
    if not message:
        assert found == ""


def test_causal_context_parallel_needs_2cp_chunks():
    # 4096 tokens over CP=8 → 16 chunks of 256: valid. 4040 splits over 8 ranks (505 each)
    # but not into the 16 chunks load balancing needs (252.5).
    short = LLAMA.with_seq_length(4040)
    assert "sequence length 4040 is not divisible by 16 (CP=8)" in problems(
        short, 8, context_parallel_size=8
    )


def test_model_parallel_bounds():
    fields = dict(tensor_model_parallel_size=4, data_parallel_size=2, global_batch_size=2)
    layout = Layout(**fields)
    assert layout.model_parallel_size == 4
    assert layout_problems(layout, LLAMA, 8, 8, None) == [
        "model-parallel size TP×PP×CP×EP = 4 is outside [8, 8]"
    ]
    assert layout_problems(layout, LLAMA, 8, 1, 2)[0].endswith("is outside [1, 2]")
    assert layout_problems(layout, LLAMA, 8, 2, 4) == []


def test_validate_raises_one_line_naming_every_problem():
    layout = Layout(tensor_model_parallel_size=3, pipeline_model_parallel_size=3)
    with pytest.raises(LayoutError) as err:
        layout.validate(LLAMA, 9)
    message = str(err.value)
    assert isinstance(err.value, ConfigError)
    assert "\n" not in message
    assert message.startswith("invalid layout for llama2_7b: ")
    assert "TP=3" in message and "PP=3" in message


def test_for_world_size_needs_a_divisible_world():
    with pytest.raises(LayoutError, match="world size 12 is not divisible by TP×PP×CP = 8"):
        Layout.for_world_size(12, tensor_model_parallel_size=8)


def test_layout_round_trips_through_a_yaml_config():
    layout = Layout(tensor_model_parallel_size=2, pipeline_model_parallel_size=4,
                    virtual_pipeline_model_parallel_size=2, recompute_granularity="full",
                    recompute_num_layers=2)  # fmt: skip
    text = run.to_yaml(run.Config(Layout, **layout.__dict__))
    assert "_target_: optica.autoconfig.layout.Layout" in text
    assert run.build(run.from_yaml(text)) == layout


def test_recomputed_layers_per_chunk():
    layout = Layout(pipeline_model_parallel_size=2, virtual_pipeline_model_parallel_size=2,
                    recompute_granularity="full", recompute_num_layers=3)  # fmt: skip
    assert layout.layers_per_chunk(LLAMA) == 8  # 32 / (2 · 2)
    assert layout.recomputed_layers(LLAMA) == 3
    uniform = Layout(recompute_granularity="full", recompute_method="uniform",
                     recompute_num_layers=4)  # fmt: skip
    assert uniform.recomputed_layers(LLAMA) == 32
