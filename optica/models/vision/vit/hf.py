"""Hugging Face ``ViTForImageClassification`` ↔ optica's ``ViTClassificationModel``.

The backbone's rules are written as for a bare encoder and nested under ``backbone.`` with
``KeyMap.rebased``, then merged with the head's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optica.models.hf import KeyMap, Rule
from optica.models.vision.hf_common import (
    EncoderHFAdapter,
    Reshape,
    encoder_layer_rules,
    module_rules,
)
from optica.models.vision.vit.model import ViTConfig

VIT = "vit."
HF_LAYER = VIT + "encoder.layer.{layer}."
IGNORED = (VIT + "pooler.*",)  # ViTModel's tanh pooler, unused by the classifier


class ViTHFAdapter(EncoderHFAdapter):
    """Adapter for ``ViTForImageClassification`` checkpoints (google/vit-*)."""

    model_type = "vit"
    architecture = "ViTForImageClassification"
    config_class = ViTConfig
    fixed_fields = ("add_class_token", "pre_layernorm", "post_layernorm", "patch_bias")

    def _config_fields(self, hf: Mapping[str, Any]) -> dict[str, Any]:
        fields = super()._config_fields(hf)
        labels = hf.get("id2label")
        return {
            **fields,
            "num_classes": len(labels) if labels else hf.get("num_labels", 2),
            "qkv_bias": hf.get("qkv_bias", True),
            "hidden_dropout": hf.get("hidden_dropout_prob", 0.0),
            "attention_dropout": hf.get("attention_probs_dropout_prob", 0.0),
        }

    def config_to_hf(self, config: ViTConfig, base: Mapping[str, Any] | None = None) -> dict:
        """Config.json for ``config``; ``base``'s label names are kept when their count fits."""
        hf = super().config_to_hf(config, base)
        del hf["attention_dropout"]  # ViT's name for it is attention_probs_dropout_prob
        labels = hf.get("id2label") or {}
        if len(labels) != config.num_classes:
            labels = {str(i): f"LABEL_{i}" for i in range(config.num_classes)}
        hf["id2label"], hf["label2id"] = labels, {name: int(i) for i, name in labels.items()}
        return hf

    def _extra_fields(self, config: ViTConfig) -> dict[str, Any]:
        return {
            "qkv_bias": config.qkv_bias,
            "hidden_dropout_prob": config.hidden_dropout,
            "attention_probs_dropout_prob": config.attention_dropout,
        }

    def keymap(self, config: ViTConfig) -> KeyMap:
        """Rules for every tensor of a classifier of ``config``."""
        positions, hidden = config.seq_length, config.hidden_size
        backbone = [
            Rule("class_token", (VIT + "embeddings.cls_token",)),
            *module_rules("patch_embed.proj", VIT + "embeddings.patch_embeddings.projection"),
            Rule("position_embeddings.weight", (VIT + "embeddings.position_embeddings",),
                 Reshape((positions, hidden), (1, positions, hidden))),
            *_layer_rules(config),
            *module_rules("decoder.final_layernorm", VIT + "layernorm"),
        ]  # fmt: skip
        nested = KeyMap.from_templates(backbone, num_layers=config.num_layers, ignore=IGNORED)
        head = KeyMap(tuple(module_rules("head", "classifier")))
        return nested.rebased(optica_prefix="backbone.").merged(head)


def _layer_rules(config: ViTConfig) -> list[Rule]:
    names = {
        "self_attention.linear_proj": HF_LAYER + "attention.output.dense",
        "mlp.linear_fc1": HF_LAYER + "intermediate.dense",
        "mlp.linear_fc2": HF_LAYER + "output.dense",
        "input_layernorm": HF_LAYER + "layernorm_before",
        "pre_mlp_layernorm": HF_LAYER + "layernorm_after",
    }
    qkv = tuple(HF_LAYER + f"attention.attention.{n}" for n in ("query", "key", "value"))
    return encoder_layer_rules(
        names, qkv, num_heads=config.num_attention_heads, qkv_bias=config.qkv_bias
    )
