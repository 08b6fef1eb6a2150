"""SigLIP image encoders: sizes and Hugging Face adapter over the shared ``VisionTransformer``;
registers itself as ``"siglip_vit"`` on import.

The multihead-attention pooling head of ``SiglipVisionModel`` is deliberately not part of the
model: VLMs (LLaVA-style, PaliGemma, Idefics) feed the language model the patch tokens of a hidden
layer and never the pooled vector, and no optica task trains the contrastive image embedding it
exists for. Importing it would carry ~15M (so400m) dead parameters into training, where they get
no gradient (which DDP rejects). Checkpoints that have it still import (the head is skipped);
exports say ``vision_use_head: false`` so transformers builds exactly what was written.
"""

from optica.models.registry import Family, register_family
from optica.models.vision.encoder import VisionTransformer
from optica.models.vision.parallelize import PLAN
from optica.models.vision.siglip.hf import SigLIPHFAdapter
from optica.models.vision.siglip.sizes import (
    SIZES,
    SigLIPB_16_224_Config,
    SigLIPB_16_384_Config,
    SigLIPso400m_14_384_Config,
    SigLIPViTConfig,
    SigLIPViTConfigTiny,
)

FAMILY = register_family(
    Family(
        name="siglip_vit",
        config_class=SigLIPViTConfig,
        model_class=VisionTransformer,
        hf_adapter=SigLIPHFAdapter(),
        hf_model_types=("siglip_vision_model",),
        hf_architectures=("SiglipVisionModel", "SiglipModel"),
        sizes=SIZES,
        parallel_plan=PLAN,
    )
)

__all__ = [
    "FAMILY",
    "SigLIPB_16_224_Config",
    "SigLIPB_16_384_Config",
    "SigLIPHFAdapter",
    "SigLIPViTConfig",
    "SigLIPViTConfigTiny",
    "SigLIPso400m_14_384_Config",
]
