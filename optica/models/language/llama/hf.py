"""Hugging Face ``LlamaForCausalLM`` ↔ optica ``LlamaModel``: config translation and key map.

The key map is the whole weight conversion; everything generic (checks, fusion, files) lives in
:mod:`optica.models.hf`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optica.models.errors import UnsupportedModelError
from optica.models.hf import Concat, FuseQKV, HFAdapter, KeyMap, PadVocab, Rule
from optica.models.hf.rope import rope_from_hf, rope_to_hf
from optica.models.language.llama.model import LlamaConfig

LAYER = "decoder.layers.{layer}."
HF_LAYER = "model.layers.{layer}."

# The spellings of the same tensors in LLaVA checkpoints: llava-hf's original files and
# transformers 5.x's LlavaForConditionalGeneration. Accepting them lets the language model be
# imported on its own from a LLaVA checkpoint.
PREFIX_ALIASES = {
    "model.": ("language_model.model.", "model.language_model."),
    "lm_head.": ("language_model.lm_head.",),
}

# Buffers some older checkpoints saved; recomputed from the config, never loaded.
IGNORED = ("*.rotary_emb.inv_freq",)


class LlamaHFAdapter(HFAdapter):
    """Adapter for ``LlamaForCausalLM`` checkpoints (Llama 2/3/3.1, Vicuna)."""

    model_type = "llama"
    architecture = "LlamaForCausalLM"
    config_class: type[LlamaConfig] = LlamaConfig

    def config_from_hf(self, hf_config: Mapping[str, Any]) -> LlamaConfig:
        """Reads the dimensions of ``hf_config`` (either rope spelling)."""
        activation = hf_config.get("hidden_act", "silu")
        if activation != "silu":
            raise UnsupportedModelError(f"hidden_act={activation!r} is not supported (only silu)")
        theta, scaling = rope_from_hf(hf_config)
        fields = self._config_fields(hf_config)
        return self.config_class(**fields, rotary_base=theta, rope_scaling=scaling)

    def _config_fields(self, hf: Mapping[str, Any]) -> dict[str, Any]:
        heads, hidden = hf["num_attention_heads"], hf["hidden_size"]
        groups, head_dim = hf.get("num_key_value_heads"), hf.get("head_dim")
        return {
            "vocab_size": hf["vocab_size"],
            "hidden_size": hidden,
            "ffn_hidden_size": hf["intermediate_size"],
            "num_layers": hf["num_hidden_layers"],
            "num_attention_heads": heads,
            # None where the value is the default, so an import equals the matching preset.
            "num_query_groups": None if groups in (None, heads) else groups,
            "kv_channels": None if head_dim in (None, hidden // heads) else head_dim,
            "seq_length": hf.get("max_position_embeddings", 2048),
            "layernorm_epsilon": hf.get("rms_norm_eps", 1e-6),
            "share_embeddings_and_output_weights": hf.get("tie_word_embeddings", False),
            "attention_bias": hf.get("attention_bias", False),
            "mlp_bias": hf.get("mlp_bias", False),
            "sliding_window": hf.get("sliding_window"),
        }

    def config_to_hf(
        self, config: LlamaConfig, base: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Config.json for ``config``, overlaying ``base``."""
        self._check_exportable(config)
        return {
            **dict(base or {}),
            "architectures": [self.architecture],
            "model_type": self.model_type,
            "vocab_size": config.vocab_size,
            "hidden_size": config.hidden_size,
            "intermediate_size": config.ffn_hidden_size,
            "num_hidden_layers": config.num_layers,
            "num_attention_heads": config.num_attention_heads,
            "num_key_value_heads": config.num_kv_heads,
            "head_dim": config.head_dim,
            "max_position_embeddings": config.seq_length,
            "rms_norm_eps": config.layernorm_epsilon,
            "hidden_act": "silu",
            "tie_word_embeddings": config.share_embeddings_and_output_weights,
            **rope_to_hf(config.rotary_base, config.rope_scaling),
            **self._extra_fields(config),
        }

    def _check_exportable(self, config: LlamaConfig) -> None:
        """Refuses configs the HF architecture cannot express (it would silently differ)."""
        if config.sliding_window is not None:
            raise UnsupportedModelError(
                f"{self.architecture} has no sliding window; export this model as Mistral"
            )

    def _extra_fields(self, config: LlamaConfig) -> dict[str, Any]:
        """Fields only this architecture writes (hook for subclasses)."""
        return {"attention_bias": config.attention_bias, "mlp_bias": config.mlp_bias}

    def keymap(self, config: LlamaConfig) -> KeyMap:
        """Rules for every tensor of a model of ``config``."""
        rules = [
            Rule(
                "embedding.word_embeddings.weight",
                ("model.embed_tokens.weight",),
                PadVocab(config.vocab_size, config.padded_vocab_size),
            ),
            Rule(LAYER + "input_layernorm.weight", (HF_LAYER + "input_layernorm.weight",)),
            Rule(
                LAYER + "pre_mlp_layernorm.weight", (HF_LAYER + "post_attention_layernorm.weight",)
            ),
            Rule("decoder.final_layernorm.weight", ("model.norm.weight",)),
            *_linear_rules(config),
        ]
        if not config.share_embeddings_and_output_weights:
            pad = PadVocab(config.vocab_size, config.padded_vocab_size)
            rules.append(Rule("output_layer.weight", ("lm_head.weight",), pad))
        tied = config.share_embeddings_and_output_weights
        ignore = IGNORED + (("lm_head.weight",) if tied else ())
        return KeyMap.from_templates(
            rules, num_layers=config.num_layers, prefix_aliases=PREFIX_ALIASES, ignore=ignore
        )


def _linear_rules(config: LlamaConfig) -> list[Rule]:
    """Weight (and, where the config has them, bias) rules of the four per-layer linears."""
    attn = HF_LAYER + "self_attn."
    mlp = HF_LAYER + "mlp."
    linears = [
        ("self_attention.linear_qkv", [attn + n for n in ("q_proj", "k_proj", "v_proj")],
         FuseQKV(config.num_attention_heads, config.num_kv_heads), config.attention_bias),
        ("self_attention.linear_proj", [attn + "o_proj"], None, config.attention_bias),
        ("mlp.linear_fc1", [mlp + "gate_proj", mlp + "up_proj"],
         Concat((config.ffn_hidden_size, config.ffn_hidden_size)), config.mlp_bias),
        ("mlp.linear_fc2", [mlp + "down_proj"], None, config.mlp_bias),
    ]  # fmt: skip
    rules = []
    for name, hf_names, transform, bias in linears:
        for param in ("weight", "bias") if bias else ("weight",):
            hf_keys = tuple(f"{hf_name}.{param}" for hf_name in hf_names)
            extra = {} if transform is None else {"transform": transform}
            rules.append(Rule(f"{LAYER}{name}.{param}", hf_keys, **extra))
    return rules
