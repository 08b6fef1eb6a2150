"""optica.models — native PyTorch model families, their registry and Hugging Face interop.

Importing this package registers the built-in families (see :mod:`optica.models.registry`).
"""

from optica.models.base import OpticaModel
from optica.models.errors import CheckpointError, UnsupportedModelError
from optica.models.hf import load_hf, save_hf
from optica.models.language.llama import (
    Llama2Config7B,
    Llama2Config13B,
    Llama3Config8B,
    Llama31Config8B,
    LlamaConfig,
    LlamaConfigTiny,
    LlamaModel,
    VicunaConfig7B,
    VicunaConfig13B,
)
from optica.models.language.mistral import MistralConfig, MistralConfig7B, MistralConfigTiny
from optica.models.modules import KVCache, PackedSeqParams, RopeScaling
from optica.models.registry import (
    Family,
    families,
    family_for_config,
    family_for_hf_config,
    family_for_model,
    get_family,
    register_family,
)

__all__ = [
    "CheckpointError",
    "Family",
    "KVCache",
    "Llama2Config7B",
    "Llama2Config13B",
    "Llama3Config8B",
    "Llama31Config8B",
    "LlamaConfig",
    "LlamaConfigTiny",
    "LlamaModel",
    "MistralConfig",
    "MistralConfig7B",
    "MistralConfigTiny",
    "OpticaModel",
    "PackedSeqParams",
    "RopeScaling",
    "UnsupportedModelError",
    "VicunaConfig7B",
    "VicunaConfig13B",
    "families",
    "family_for_config",
    "family_for_hf_config",
    "family_for_model",
    "get_family",
    "load_hf",
    "register_family",
    "save_hf",
]
