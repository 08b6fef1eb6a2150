"""Llama family (Llama 2, Vicuna, Llama 3/3.1): model, sizes, Hugging Face adapter; registers
itself as ``"llama"`` on import."""

from optica.models.language.llama.hf import LlamaHFAdapter
from optica.models.language.llama.model import LlamaConfig, LlamaModel
from optica.models.language.llama.parallelize import PLAN
from optica.models.language.llama.sizes import (
    SIZES,
    Llama2Config7B,
    Llama2Config13B,
    Llama3Config8B,
    Llama31Config8B,
    LlamaConfigTiny,
    VicunaConfig7B,
    VicunaConfig13B,
)
from optica.models.registry import Family, register_family

FAMILY = register_family(
    Family(
        name="llama",
        config_class=LlamaConfig,
        model_class=LlamaModel,
        hf_adapter=LlamaHFAdapter(),
        hf_model_types=("llama",),
        hf_architectures=("LlamaForCausalLM",),
        sizes=SIZES,
        parallel_plan=PLAN,
    )
)

__all__ = [
    "FAMILY",
    "Llama2Config7B",
    "Llama2Config13B",
    "Llama3Config8B",
    "Llama31Config8B",
    "LlamaConfig",
    "LlamaConfigTiny",
    "LlamaHFAdapter",
    "LlamaModel",
    "VicunaConfig7B",
    "VicunaConfig13B",
]
