"""LLaVA / NeVA: model, presets, ``LlavaForConditionalGeneration`` adapter; registers itself as
``"llava"`` on import."""

from optica.models.registry import Family, register_family
from optica.models.vlm.llava.hf import LlavaHFAdapter
from optica.models.vlm.llava.model import LlavaConfig, LlavaModel, VisionProjection
from optica.models.vlm.llava.parallelize import PLAN
from optica.models.vlm.llava.sizes import (
    SIZES,
    Llava15Config7B,
    Llava15Config13B,
    LlavaConfigTiny,
)
from optica.models.vlm.llava.splice import (
    IGNORE_INDEX,
    IMAGE_TOKEN_INDEX,
    SplicePlan,
    expand_labels,
)

FAMILY = register_family(
    Family(
        name="llava",
        config_class=LlavaConfig,
        model_class=LlavaModel,
        hf_adapter=LlavaHFAdapter(),
        hf_model_types=("llava",),
        hf_architectures=("LlavaForConditionalGeneration",),
        sizes=SIZES,
        parallel_plan=PLAN,
    )
)

__all__ = [
    "FAMILY",
    "IGNORE_INDEX",
    "IMAGE_TOKEN_INDEX",
    "Llava15Config7B",
    "Llava15Config13B",
    "LlavaConfig",
    "LlavaConfigTiny",
    "LlavaHFAdapter",
    "LlavaModel",
    "SplicePlan",
    "VisionProjection",
    "expand_labels",
]
