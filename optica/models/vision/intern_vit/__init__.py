"""InternViT image encoders (InternViT-300M-448px): model, sizes, adapter for OpenGVLab's
checkpoints; registers itself as ``"intern_vit"`` on import."""

from optica.models.registry import Family, register_family
from optica.models.vision.intern_vit.hf import InternViTHFAdapter
from optica.models.vision.intern_vit.model import InternViTConfig, InternViTModel
from optica.models.vision.intern_vit.sizes import (
    SIZES,
    InternViT_300M_448px_Config,
    InternViTConfigTiny,
)
from optica.models.vision.parallelize import PLAN

FAMILY = register_family(
    Family(
        name="intern_vit",
        config_class=InternViTConfig,
        model_class=InternViTModel,
        hf_adapter=InternViTHFAdapter(),
        hf_model_types=("intern_vit_6b",),
        hf_architectures=("InternVisionModel",),
        sizes=SIZES,
        parallel_plan=PLAN,
    )
)

__all__ = [
    "FAMILY",
    "InternViTConfig",
    "InternViTConfigTiny",
    "InternViTHFAdapter",
    "InternViTModel",
    "InternViT_300M_448px_Config",
]
