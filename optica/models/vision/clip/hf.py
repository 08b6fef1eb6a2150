"""Hugging Face ``CLIPVisionModel`` (and the image tower of a full ``CLIPModel``) ↔ optica's
``VisionTransformer`` with a CLIP config.

Canonical keys carry the ``vision_model.`` wrapper that transformers 4.x writes and CLIPModel
checkpoints (openai/clip-vit-*) hold; transformers 5.x writes them without it, and both import.
Export writes the wrapped spelling, which transformers 4.x and 5.x both load.
"""

from __future__ import annotations

from optica.models.hf import KeyMap, Rule
from optica.models.vision.clip.sizes import CLIPViTConfig
from optica.models.vision.hf_common import (
    EncoderHFAdapter,
    Reshape,
    clip_layer_rules,
    module_rules,
    prefixed_aliases,
)

PREFIX = "vision_model."
PREFIX_ALIASES = prefixed_aliases(
    PREFIX, ("embeddings.", "pre_layrnorm.", "encoder.", "post_layernorm.")
)
# The text tower and projections of a full CLIPModel, and a buffer older files saved.
IGNORED = (
    "text_model.*",
    "visual_projection.*",
    "text_projection.*",
    "logit_scale",
    "*.position_ids",
)


class CLIPHFAdapter(EncoderHFAdapter):
    """Adapter for ``CLIPVisionModel`` / ``CLIPModel`` checkpoints."""

    model_type = "clip_vision_model"
    architecture = "CLIPVisionModel"
    config_class = CLIPViTConfig
    nested_in = ("clip",)
    hf_prefix = PREFIX

    def keymap(self, config: CLIPViTConfig) -> KeyMap:
        """Rules for every tensor of a CLIP tower of ``config``."""
        hidden = config.hidden_size
        rules = [
            Rule("class_token", (PREFIX + "embeddings.class_embedding",),
                 Reshape((1, 1, hidden), (hidden,))),
            Rule("patch_embed.proj.weight", (PREFIX + "embeddings.patch_embedding.weight",)),
            Rule("position_embeddings.weight", (PREFIX + "embeddings.position_embedding.weight",)),
            *module_rules("ln_pre", PREFIX + "pre_layrnorm"),
            *clip_layer_rules(PREFIX, config.num_attention_heads),
            *module_rules("ln_post", PREFIX + "post_layernorm"),
        ]  # fmt: skip
        return KeyMap.from_templates(
            rules, num_layers=config.num_layers, prefix_aliases=PREFIX_ALIASES, ignore=IGNORED
        )
