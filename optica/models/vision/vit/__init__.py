"""The ViT image classifier: model, seed 002's sizes, ``ViTForImageClassification`` adapter;
registers itself as ``"vit"`` on import."""

from optica.models.registry import Family, register_family
from optica.models.vision.vit.hf import ViTHFAdapter
from optica.models.vision.vit.model import ViTClassificationModel, ViTConfig
from optica.models.vision.vit.parallelize import PLAN
from optica.models.vision.vit.sizes import (
    SIZES,
    ViTB16Config,
    ViTConfigTiny,
    ViTG14Config,
    ViTg14Config,
    ViTH14Config,
    ViTH16Config,
    ViTL16Config,
)

FAMILY = register_family(
    Family(
        name="vit",
        config_class=ViTConfig,
        model_class=ViTClassificationModel,
        hf_adapter=ViTHFAdapter(),
        hf_model_types=("vit",),
        hf_architectures=("ViTForImageClassification",),
        sizes=SIZES,
        parallel_plan=PLAN,
    )
)

__all__ = [
    "FAMILY",
    "ViTB16Config",
    "ViTClassificationModel",
    "ViTConfig",
    "ViTConfigTiny",
    "ViTG14Config",
    "ViTH14Config",
    "ViTH16Config",
    "ViTHFAdapter",
    "ViTL16Config",
    "ViTg14Config",
]
