"""CLIP ViT image encoders: sizes and Hugging Face adapter over the shared ``VisionTransformer``;
registers itself as ``"clip_vit"`` on import."""

from optica.models.registry import Family, register_family
from optica.models.vision.clip.hf import CLIPHFAdapter
from optica.models.vision.clip.sizes import (
    SIZES,
    CLIPViTB_16_Config,
    CLIPViTB_32_Config,
    CLIPViTConfig,
    CLIPViTConfigTiny,
    CLIPViTL_14_336_Config,
    CLIPViTL_14_Config,
)
from optica.models.vision.encoder import VisionTransformer
from optica.models.vision.parallelize import PLAN

FAMILY = register_family(
    Family(
        name="clip_vit",
        config_class=CLIPViTConfig,
        model_class=VisionTransformer,
        hf_adapter=CLIPHFAdapter(),
        hf_model_types=("clip_vision_model",),
        hf_architectures=("CLIPVisionModel", "CLIPModel"),
        sizes=SIZES,
        parallel_plan=PLAN,
    )
)

__all__ = [
    "FAMILY",
    "CLIPHFAdapter",
    "CLIPViTB_16_Config",
    "CLIPViTB_32_Config",
    "CLIPViTConfig",
    "CLIPViTConfigTiny",
    "CLIPViTL_14_336_Config",
    "CLIPViTL_14_Config",
]
