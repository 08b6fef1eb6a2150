"""C = 8·N·T: model size recommendation and training-time estimation (seed 004)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optica.autoconfig import (
    count_parameters,
    estimate_training_days,
    generate_base_config,
    recommend_model_size,
)
from optica.run.errors import ConfigError


def test_recommendation_for_the_seed_example_is_4_03b():
    # 20 DGX nodes × 8 GPUs, NeMo's defaults 140 TFLOPS/GPU and 300B tokens, 5 days:
    # N = 160 · 140e12 · (5 · 86,400) / (8 · 300e9) = 9.6768e21 / 2.4e12 = 4.032e9.
    size = recommend_model_size(
        gpu_count=160, tflops_per_gpu=140, max_training_days=5, num_tokens_in_b=300
    )
    assert size == pytest.approx(4.032, rel=1e-12)


def test_seed_example_recommends_the_5b_gpt():
    # The seed: "20 DGX nodes, at most 5 days → a 5B GPT". 4.03B lies nearest (log scale) to
    # NeMo's GPT-3 5B (5.05B: |ln(5.05/4.03)| = 0.22 < |ln(4.03/2.65)| = 0.42 for 2.7B).
    size = recommend_model_size(
        gpu_count=160, tflops_per_gpu=140, max_training_days=5, num_tokens_in_b=300
    )
    model = generate_base_config("gpt3", model_size_in_b=size)
    assert model.name == "gpt3_5b"
    assert count_parameters(model) == 5_047_365_632


def test_nemo_docstring_example_seven_days_is_also_the_5b():
    # NeMo's calculate_model_size docstring: "5B params to train for 7 days with 160 GPUs".
    # 160 · 140e12 · 7 · 86,400 / (8 · 300e9) / 1e9 = 5.6448.
    size = recommend_model_size(
        gpu_count=160, tflops_per_gpu=140, max_training_days=7, num_tokens_in_b=300
    )
    assert size == pytest.approx(5.6448, rel=1e-12)
    assert generate_base_config("gpt3", model_size_in_b=size).name == "gpt3_5b"


def test_training_days_for_5b_on_160_gpus():
    # 8 · 5e9 · 300e9 / (160 · 140e12 · 86,400) = 1.2e22 / 1.93536e21 = 6.20039...
    days = estimate_training_days(
        model_size_in_b=5, gpu_count=160, tflops_per_gpu=140, num_tokens_in_b=300
    )
    assert days == pytest.approx(1.2e22 / 1.93536e21, rel=1e-12)


@settings(max_examples=50, deadline=None)
@given(
    gpus=st.integers(1, 100_000),
    tflops=st.floats(1, 5000),
    days=st.floats(0.01, 1000),
    tokens=st.floats(0.1, 100_000),
)
def test_estimate_inverts_recommend(gpus, tflops, days, tokens):
    size = recommend_model_size(
        gpu_count=gpus, tflops_per_gpu=tflops, max_training_days=days, num_tokens_in_b=tokens
    )
    back = estimate_training_days(
        model_size_in_b=size, gpu_count=gpus, tflops_per_gpu=tflops, num_tokens_in_b=tokens
    )
    assert back == pytest.approx(days, rel=1e-9)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "8", True])
def test_non_positive_inputs_are_one_line_errors(bad):
    with pytest.raises(ConfigError, match="gpu_count must be a positive number") as err:
        recommend_model_size(
            gpu_count=bad, tflops_per_gpu=140, max_training_days=5, num_tokens_in_b=300
        )
    assert "\n" not in str(err.value)
