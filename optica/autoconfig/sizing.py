"""How big a model, and how long: the compute budget C = 8·N·T (seed 004, as NeMo).

Training a dense transformer of N parameters on T tokens costs about 6·N·T FLOPs (2·N·T forward,
4·N·T backward; Kaplan et al. 2020), plus 2·N·T for recomputing the forward pass under full
activation checkpointing: C = 8·N·T. A cluster of G GPUs each sustaining F FLOP/s (the measured
model TFLOPS per GPU, not the peak) delivers G·F·86,400 FLOPs a day, so

    N = G · F · 86,400 · days / (8 · T)        days = 8 · N · T / (G · F · 86,400)

Example (seed 004): 20 DGX nodes × 8 GPUs at NeMo's default 140 TFLOPS/GPU for 5 days on NeMo's
default 300B tokens gives N = 160 · 140e12 · 432,000 / (8 · 300e9) = 4.03B parameters, whose
nearest published GPT-3 size is the 5B model the seed recommends.
"""

from __future__ import annotations

from optica.run.errors import ConfigError

FLOPS_PER_PARAM_TOKEN = 8  # 2 forward + 4 backward + 2 recomputed forward
SECONDS_PER_DAY = 86_400


def recommend_model_size(
    *, gpu_count: int, tflops_per_gpu: float, max_training_days: float, num_tokens_in_b: float
) -> float:
    """The largest model (billions of parameters) trainable within the budget.

    Args:
        gpu_count: GPUs used (nodes × GPUs per node).
        tflops_per_gpu: Sustained model TFLOPS per GPU (NeMo's default assumption: 140).
        max_training_days: Wall-clock budget in days.
        num_tokens_in_b: Training tokens in billions (NeMo's default: 300).

    Returns:
        N in billions, from N = G·F·86,400·days / (8·T).
    """
    _check_positive(gpu_count=gpu_count, tflops_per_gpu=tflops_per_gpu)
    _check_positive(max_training_days=max_training_days, num_tokens_in_b=num_tokens_in_b)
    flops = gpu_count * tflops_per_gpu * 1e12 * SECONDS_PER_DAY * max_training_days
    return flops / (FLOPS_PER_PARAM_TOKEN * num_tokens_in_b * 1e9) / 1e9


def estimate_training_days(
    *, model_size_in_b: float, gpu_count: int, tflops_per_gpu: float, num_tokens_in_b: float
) -> float:
    """Days to train ``model_size_in_b`` billion parameters on ``num_tokens_in_b`` billion tokens.

    Returns:
        8·N·T / (G·F·86,400), the inverse of :func:`recommend_model_size`.
    """
    _check_positive(model_size_in_b=model_size_in_b, gpu_count=gpu_count)
    _check_positive(tflops_per_gpu=tflops_per_gpu, num_tokens_in_b=num_tokens_in_b)
    flops = FLOPS_PER_PARAM_TOKEN * model_size_in_b * 1e9 * num_tokens_in_b * 1e9
    return flops / (gpu_count * tflops_per_gpu * 1e12 * SECONDS_PER_DAY)


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"{name} must be a positive number, got {value!r}")
