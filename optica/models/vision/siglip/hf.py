"""Hugging Face ``SiglipVisionModel`` (and the image tower of a full ``SiglipModel``) ↔ optica's
``VisionTransformer`` with a SigLIP config.

Spellings as for CLIP: canonical keys keep the ``vision_model.`` wrapper; files without it import
too. The attention-pooling ``head`` is skipped on import and export writes ``vision_use_head:
false`` (the package docstring says why).
"""

from __future__ import annotations

from typing import Any

from optica.models.hf import KeyMap, Rule
from optica.models.vision.hf_common import (
    EncoderHFAdapter,
    clip_layer_rules,
    module_rules,
    prefixed_aliases,
)
from optica.models.vision.siglip.sizes import SigLIPViTConfig

PREFIX = "vision_model."
PREFIX_ALIASES = prefixed_aliases(PREFIX, ("embeddings.", "encoder.", "post_layernorm.", "head."))
IGNORED = (PREFIX + "head.*", "text_model.*", "logit_scale", "logit_bias", "*.position_ids")


class SigLIPHFAdapter(EncoderHFAdapter):
    """Adapter for ``SiglipVisionModel`` / ``SiglipModel`` checkpoints."""

    model_type = "siglip_vision_model"
    architecture = "SiglipVisionModel"
    config_class = SigLIPViTConfig
    nested_in = ("siglip",)
    hf_prefix = PREFIX

    def _extra_fields(self, config: SigLIPViTConfig) -> dict[str, Any]:
        return {"vision_use_head": False}

    def keymap(self, config: SigLIPViTConfig) -> KeyMap:
        """Rules for every tensor of a SigLIP tower of ``config``."""
        rules = [
            *module_rules("patch_embed.proj", PREFIX + "embeddings.patch_embedding"),
            Rule("position_embeddings.weight", (PREFIX + "embeddings.position_embedding.weight",)),
            *clip_layer_rules(PREFIX, config.num_attention_heads),
            *module_rules("decoder.final_layernorm", PREFIX + "post_layernorm"),
        ]
        return KeyMap.from_templates(
            rules, num_layers=config.num_layers, prefix_aliases=PREFIX_ALIASES, ignore=IGNORED
        )
