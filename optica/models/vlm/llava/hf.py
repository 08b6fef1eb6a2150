"""Hugging Face ``LlavaForConditionalGeneration`` ↔ optica's ``LlavaModel``.

The key map is the towers' own maps nested with ``KeyMap.rebased`` (the language model's from its
family, the vision tower's from CLIP's or SigLIP's) plus two projector rules: nothing about a
tower's layout is restated here. Canonical keys are llava-hf's original spelling
(``vision_tower.vision_model.``, ``language_model.model.``, ``language_model.lm_head.``,
``multi_modal_projector.``), which transformers 4.x and 5.x both load; the spellings transformers
5.x writes (``vision_tower.`` without the wrapper) and holds in memory (``model.vision_tower.``,
``model.language_model.``, ``lm_head.``) import too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from optica.models.errors import UnsupportedModelError
from optica.models.hf import HFAdapter, KeyMap
from optica.models.registry import family_for_config, family_for_hf_config
from optica.models.vision.hf_common import complete_hf_config, module_rules
from optica.models.vlm.llava.model import LlavaConfig

HF_VISION = "vision_tower.vision_model."
HF_LANGUAGE = {"model.": "language_model.model.", "lm_head.": "language_model.lm_head."}
PREFIX_ALIASES = {
    HF_VISION: ("model.vision_tower.vision_model.", "model.vision_tower.", "vision_tower."),
    "language_model.model.": ("model.language_model.",),
    "language_model.lm_head.": ("lm_head.",),
    "multi_modal_projector.": ("model.multi_modal_projector.",),
}


class LlavaHFAdapter(HFAdapter):
    """Adapter for ``LlavaForConditionalGeneration`` checkpoints (llava-hf/llava-1.5-*)."""

    model_type = "llava"
    architecture = "LlavaForConditionalGeneration"

    def config_from_hf(self, hf_config: Mapping[str, Any]) -> LlavaConfig:
        """Reads both towers through their families (by their ``model_type``); llava-hf files list
        only the sub-config fields that differ from the defaults (llava-1.5-7b-hf's text_config
        has no hidden_size), so the defaults are filled in first."""
        hf = complete_hf_config(hf_config)
        _check_importable(hf)
        text, vision = hf["text_config"], hf["vision_config"]
        language = family_for_hf_config(text).hf_adapter.config_from_hf(text)
        vision_config = family_for_hf_config(vision).hf_adapter.config_from_hf(vision)
        drop = hf.get("vision_feature_select_strategy", "default") == "default"
        if drop and not vision_config.add_class_token:
            raise UnsupportedModelError(
                "vision_feature_select_strategy='default' drops the first token of a vision "
                "tower without a class token (a patch); use 'full'"
            )
        return LlavaConfig(
            language_transformer_config=_unpadded(language),
            vision_transformer_config=vision_config,
            projector_bias=hf.get("multimodal_projector_bias", True),
            vision_feature_layer=hf.get("vision_feature_layer", -2),
            drop_vision_class_token=drop,
            image_token_id=hf.get("image_token_index", hf.get("image_token_id")),
        )

    def config_to_hf(self, config: LlavaConfig, base: Mapping[str, Any] | None = None) -> dict:
        """Config.json for ``config``; both towers' sections come from their adapters."""
        base = dict(base or {})
        image_token_id = config.image_token_id
        if image_token_id is None:
            image_token_id = base.get("image_token_index")
        if config.projector_type != "mlp2x_gelu" or image_token_id is None:
            raise UnsupportedModelError(
                f"{self.architecture} needs projector_type='mlp2x_gelu' and an image_token_id "
                f"(got {config.projector_type!r}, {image_token_id}); set them in LlavaConfig"
            )
        language = config.language_transformer_config
        vision = config.vision_transformer_config
        vision_adapter = _vision_adapter(vision)
        return {
            **base,
            "architectures": [self.architecture],
            "model_type": self.model_type,
            "text_config": _adapter(language).config_to_hf(language, base.get("text_config")),
            "vision_config": vision_adapter.config_to_hf(vision, base.get("vision_config")),
            "image_token_index": image_token_id,
            "image_seq_length": config.num_image_tokens,
            "projector_hidden_act": "gelu",
            "multimodal_projector_bias": config.projector_bias,
            "vision_feature_layer": config.vision_feature_layer,
            "vision_feature_select_strategy": "default" if config.drops_class_token else "full",
            "tie_word_embeddings": language.share_embeddings_and_output_weights,
        }

    def keymap(self, config: LlavaConfig) -> KeyMap:
        """The towers' key maps nested under LLaVA's prefixes, plus the projector."""
        language = config.language_transformer_config
        vision = config.vision_transformer_config
        vision_adapter = _vision_adapter(vision)
        vision_map = vision_adapter.keymap(vision).rebased(
            optica_prefix="vision_model.",
            hf_prefixes={vision_adapter.hf_prefix: HF_VISION},
            prefix_aliases={},
        )
        language_map = (
            _adapter(language)
            .keymap(language)
            .rebased(optica_prefix="language_model.", hf_prefixes=HF_LANGUAGE, prefix_aliases={})
        )
        params = ("weight", "bias") if config.projector_bias else ("weight",)
        projector = [
            *module_rules("vision_projection.linear_fc1", "multi_modal_projector.linear_1", params),
            *module_rules("vision_projection.linear_fc2", "multi_modal_projector.linear_2", params),
        ]
        merged = vision_map.merged(language_map, KeyMap(tuple(projector)))
        return KeyMap(merged.rules, PREFIX_ALIASES, merged.ignore)


def _adapter(config: Any) -> HFAdapter:
    """The HF adapter of a tower's family."""
    family = family_for_config(config)
    if family.hf_adapter is None:
        raise UnsupportedModelError(f"model family {family.name!r} has no Hugging Face adapter")
    return family.hf_adapter


def _vision_adapter(config: Any) -> HFAdapter:
    """The vision tower's adapter, if transformers' LLaVA can hold that tower (it names the
    weights under a ``vision_model.`` wrapper: CLIP, SigLIP; not InternViT)."""
    adapter = _adapter(config)
    if getattr(adapter, "hf_prefix", None) is None:
        raise UnsupportedModelError(
            f"transformers' LLaVA has no {family_for_config(config).name!r} vision tower; "
            "supported: CLIP, SigLIP"
        )
    return adapter


def _check_importable(hf: Mapping[str, Any]) -> None:
    layer, act = hf.get("vision_feature_layer", -2), hf.get("projector_hidden_act", "gelu")
    if not isinstance(layer, int) or act != "gelu":
        raise UnsupportedModelError(
            f"only one vision_feature_layer and projector_hidden_act='gelu' are supported "
            f"(got {layer!r}, {act!r})"
        )


def _unpadded(language: Any) -> Any:
    """The language config with the vocabulary padded only as far as it divides (at most to 128),
    so an imported LLaVA has exactly the checkpoint's parameters (llava-hf's 32064 = 64·501)."""
    multiple = 128
    while language.vocab_size % multiple:
        multiple //= 2
    return dataclasses.replace(language, make_vocab_size_divisible_by=multiple)
