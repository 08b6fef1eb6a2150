"""OpenGVLab's ``InternVisionModel`` checkpoints (remote code, no transformers class) ↔ optica's
``InternViTModel``.

Keys are those of the published ``modeling_intern_vit.py`` (``embeddings.class_embedding``,
``encoder.layers.N.attn.qkv`` with q, k, v stacked whole, ``ls1``/``ls2``); InternVL chat
checkpoints hold the same tensors under ``vision_model.``, beside a projector and a language model
that importing the tower alone skips. Export writes OpenGVLab's layout and config.json; it loads
with their remote code (``trust_remote_code=True`` and their ``modeling_intern_vit.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optica.models.errors import UnsupportedModelError
from optica.models.hf import KeyMap, Rule
from optica.models.vision.hf_common import (
    LAYER,
    EncoderHFAdapter,
    Reshape,
    StackedQKV,
    module_rules,
)
from optica.models.vision.intern_vit.model import InternViTConfig

PREFIX_ALIASES = {
    "embeddings.": ("vision_model.embeddings.",),
    "encoder.": ("vision_model.encoder.",),
}
IGNORED = ("mlp1.*", "language_model.*")
HF_LAYER = "encoder.layers.{layer}."


class InternViTHFAdapter(EncoderHFAdapter):
    """Adapter for ``InternVisionModel`` checkpoints (model_type ``intern_vit_6b``, the name
    OpenGVLab uses for every InternViT size)."""

    model_type = "intern_vit_6b"
    architecture = "InternVisionModel"
    config_class = InternViTConfig
    fixed_fields = ("add_class_token", "pre_layernorm", "post_layernorm", "patch_bias")

    def _complete(self, hf_config: Mapping[str, Any]) -> dict[str, Any]:
        return dict(hf_config)  # remote code: transformers does not know the defaults

    def _config_fields(self, hf: Mapping[str, Any]) -> dict[str, Any]:
        # NOTE: missing keys take the defaults of OpenGVLab's InternVisionConfig (the 6B's).
        if hf.get("qk_normalization", True) or hf.get("norm_type", "rms_norm") != "layer_norm":
            raise UnsupportedModelError(
                "only InternViT towers with LayerNorm and without qk_normalization are supported "
                "(InternViT-300M); this config.json describes an InternViT-6B-style tower"
            )
        return {
            **super()._config_fields(hf),
            "qkv_bias": hf.get("qkv_bias", False),
            "layer_scale_init": hf.get("initializer_factor", 0.1),
            "drop_path_rate": hf.get("drop_path_rate", 0.0),
        }

    def _extra_fields(self, config: InternViTConfig) -> dict[str, Any]:
        return {
            "qkv_bias": config.qkv_bias,
            "qk_normalization": False,
            "norm_type": "layer_norm",
            "initializer_factor": config.layer_scale_init,
            "drop_path_rate": config.drop_path_rate,
            "dropout": 0.0,
            "use_flash_attn": False,
        }

    def keymap(self, config: InternViTConfig) -> KeyMap:
        """Rules for every tensor of an InternViT of ``config``."""
        hidden, positions = config.hidden_size, config.seq_length
        rules = [
            Rule("class_token", ("embeddings.class_embedding",)),
            *module_rules("patch_embed.proj", "embeddings.patch_embedding"),
            Rule("position_embeddings.weight", ("embeddings.position_embedding",),
                 Reshape((positions, hidden), (1, positions, hidden))),
            *_layer_rules(config),
        ]  # fmt: skip
        return KeyMap.from_templates(
            rules, num_layers=config.num_layers, prefix_aliases=PREFIX_ALIASES, ignore=IGNORED
        )


def _layer_rules(config: InternViTConfig) -> list[Rule]:
    names = {
        "self_attention.linear_proj": "attn.proj",
        "mlp.linear_fc1": "mlp.fc1",
        "mlp.linear_fc2": "mlp.fc2",
        "input_layernorm": "norm1",
        "pre_mlp_layernorm": "norm2",
    }
    rules = [rule for ours, theirs in names.items()
             for rule in module_rules(LAYER + ours, HF_LAYER + theirs)]  # fmt: skip
    stacked = StackedQKV(config.num_attention_heads)
    for param in ("weight", "bias") if config.qkv_bias else ("weight",):
        hf_key = f"{HF_LAYER}attn.qkv.{param}"
        rules.append(Rule(f"{LAYER}self_attention.linear_qkv.{param}", (hf_key,), stacked))
    return rules + [Rule(LAYER + name, (HF_LAYER + name,)) for name in ("ls1", "ls2")]
