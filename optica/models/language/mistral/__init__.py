"""Mistral family: the Llama decoder with Mistral's sizes and sliding window, imported from and
exported to ``MistralForCausalLM``; registers itself as ``"mistral"`` on import.

A family of its own (rather than sizes of ``llama``) because Hugging Face treats it as a distinct
architecture: export must write ``model_type: mistral`` and its ``sliding_window``, which the
Llama architecture cannot express. The model and the key map are Llama's, reused unchanged.
"""

from optica.models.language.llama import LlamaModel
from optica.models.language.llama.parallelize import PLAN
from optica.models.language.mistral.hf import MistralHFAdapter
from optica.models.language.mistral.sizes import (
    SIZES,
    MistralConfig,
    MistralConfig7B,
    MistralConfigTiny,
)
from optica.models.registry import Family, register_family

FAMILY = register_family(
    Family(
        name="mistral",
        config_class=MistralConfig,
        model_class=LlamaModel,
        hf_adapter=MistralHFAdapter(),
        hf_model_types=("mistral",),
        hf_architectures=("MistralForCausalLM",),
        sizes=SIZES,
        parallel_plan=PLAN,  # the Llama model class, so the Llama plan
    )
)

__all__ = ["FAMILY", "MistralConfig", "MistralConfig7B", "MistralConfigTiny", "MistralHFAdapter"]
