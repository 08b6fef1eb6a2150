"""FP8 training through torchao's float8 linears (Micikevicius et al., 2022, "FP8 Formats for Deep
Learning"), on GPUs whose tensor cores have FP8 (compute capability >= 8.9: Ada, Hopper and
newer); anywhere else it is refused with one line.

Recipes are torchao's: ``tensorwise`` and ``rowwise`` dynamic scaling; ``hybrid`` (the seed's name,
Transformer Engine's E4M3 forward / E5M2 gradients) is tensorwise scaling with E5M2 gradients.
Delayed scaling with an amax history, which the seed configures, is not offered by torchao.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

FP8_RECIPES = ("tensorwise", "rowwise", "hybrid")


def fp8_problems(recipe: str | None, tensor_parallel_size: int) -> list[str]:
    """Why ``recipe`` cannot run here (empty when it can, or when FP8 is off)."""
    if recipe is None:
        return []
    if recipe not in FP8_RECIPES:
        return [f"fp8={recipe!r} is not one of {FP8_RECIPES}"]
    if not torch.cuda.is_available():
        return ["fp8 needs an NVIDIA GPU with compute capability >= 8.9 and none is visible here"]
    capability = torch.cuda.get_device_capability()
    if capability < (8, 9):
        return [
            f"fp8 needs compute capability >= 8.9, this GPU has {capability[0]}.{capability[1]}"
        ]
    if importlib.util.find_spec("torchao") is None:
        return ["fp8 needs torchao (pip install 'optica[fp8]')"]
    if tensor_parallel_size > 1:
        return ["fp8 with TP > 1 is not supported yet"]
    return []


def apply_fp8(model: nn.Module, recipe: str) -> None:
    """Swaps eligible ``nn.Linear`` layers for torchao's ``Float8Linear`` (in place); the output
    layer and layers whose sizes are not multiples of 16 stay in high precision."""
    from torchao.float8 import CastConfig, Float8LinearConfig, convert_to_float8_training

    base = "tensorwise" if recipe == "hybrid" else recipe
    config = Float8LinearConfig.from_recipe_name(base)
    if recipe == "hybrid":
        gradients = CastConfig(target_dtype=torch.float8_e5m2)
        config = Float8LinearConfig(cast_config_grad_output=gradients)
    convert_to_float8_training(model, config=config, module_filter_fn=_eligible)


def _eligible(module: nn.Module, name: str) -> bool:
    if name.endswith("output_layer") or not isinstance(module, nn.Linear):
        return False
    return module.in_features % 16 == 0 and module.out_features % 16 == 0
