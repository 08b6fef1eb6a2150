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
from optica.models.vision import VisionTransformer, VisionTransformerConfig
from optica.models.vision.clip import (
    CLIPViTB_16_Config,
    CLIPViTB_32_Config,
    CLIPViTConfig,
    CLIPViTConfigTiny,
    CLIPViTL_14_336_Config,
    CLIPViTL_14_Config,
)
from optica.models.vision.intern_vit import (
    InternViT_300M_448px_Config,
    InternViTConfig,
    InternViTConfigTiny,
    InternViTModel,
)
from optica.models.vision.siglip import (
    SigLIPB_16_224_Config,
    SigLIPB_16_384_Config,
    SigLIPso400m_14_384_Config,
    SigLIPViTConfig,
    SigLIPViTConfigTiny,
)
from optica.models.vision.vit import (
    ViTB16Config,
    ViTClassificationModel,
    ViTConfig,
    ViTConfigTiny,
    ViTG14Config,
    ViTg14Config,
    ViTH14Config,
    ViTH16Config,
    ViTL16Config,
)
from optica.models.vlm.llava import (
    IMAGE_TOKEN_INDEX,
    Llava15Config7B,
    Llava15Config13B,
    LlavaConfig,
    LlavaConfigTiny,
    LlavaModel,
)

__all__ = [
    "IMAGE_TOKEN_INDEX",
    "CLIPViTB_16_Config",
    "CLIPViTB_32_Config",
    "CLIPViTConfig",
    "CLIPViTConfigTiny",
    "CLIPViTL_14_336_Config",
    "CLIPViTL_14_Config",
    "CheckpointError",
    "Family",
    "InternViTConfig",
    "InternViTConfigTiny",
    "InternViTModel",
    "InternViT_300M_448px_Config",
    "KVCache",
    "Llama2Config7B",
    "Llama2Config13B",
    "Llama3Config8B",
    "Llama31Config8B",
    "LlamaConfig",
    "LlamaConfigTiny",
    "LlamaModel",
    "Llava15Config7B",
    "Llava15Config13B",
    "LlavaConfig",
    "LlavaConfigTiny",
    "LlavaModel",
    "MistralConfig",
    "MistralConfig7B",
    "MistralConfigTiny",
    "OpticaModel",
    "PackedSeqParams",
    "RopeScaling",
    "SigLIPB_16_224_Config",
    "SigLIPB_16_384_Config",
    "SigLIPViTConfig",
    "SigLIPViTConfigTiny",
    "SigLIPso400m_14_384_Config",
    "UnsupportedModelError",
    "ViTB16Config",
    "ViTClassificationModel",
    "ViTConfig",
    "ViTConfigTiny",
    "ViTG14Config",
    "ViTH14Config",
    "ViTH16Config",
    "ViTL16Config",
    "ViTg14Config",
    "VicunaConfig7B",
    "VicunaConfig13B",
    "VisionTransformer",
    "VisionTransformerConfig",
    "families",
    "family_for_config",
    "family_for_hf_config",
    "family_for_model",
    "get_family",
    "load_hf",
    "register_family",
    "save_hf",
]
