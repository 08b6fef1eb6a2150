"""What the vision families' Hugging Face adapters share: activation names, a reshape transform,
per-layer rules from a module-name table, and the config translation of ViT-style encoders.

Each family's ``hf.py`` then only states its own names and switches (the key map stays
declarative, beside the family).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch

from optica.models.errors import UnsupportedModelError
from optica.models.hf import FuseQKV, HFAdapter, Rule
from optica.models.modules.attention import fuse_qkv, split_qkv
from optica.models.vision.encoder import VisionTransformerConfig

LAYER = "decoder.layers.{layer}."

# transformers' ``hidden_act`` names → optica's ACTIVATIONS keys, and back. ``gelu_new`` is the
# same tanh approximation as ``gelu_pytorch_tanh``.
ACTIVATIONS_FROM_HF = {
    "gelu": "gelu",
    "quick_gelu": "quick_gelu",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_new": "gelu_tanh",
    "silu": "silu",
}
ACTIVATIONS_TO_HF = {"gelu": "gelu", "quick_gelu": "quick_gelu", "gelu_tanh": "gelu_pytorch_tanh"}

# Switches that HF architectures fix (config.json cannot change them): a config that changes one
# cannot be exported as that architecture.
STRUCTURAL = ("add_class_token", "pre_layernorm", "post_layernorm", "patch_bias", "qkv_bias")


def activation_from_hf(name: str) -> str:
    """optica's name for a transformers ``hidden_act``."""
    if name not in ACTIVATIONS_FROM_HF:
        raise UnsupportedModelError(
            f"hidden_act={name!r} is not supported (supported: {', '.join(ACTIVATIONS_FROM_HF)})"
        )
    return ACTIVATIONS_FROM_HF[name]


def activation_to_hf(name: str) -> str:
    """transformers' ``hidden_act`` for an optica activation."""
    if name not in ACTIVATIONS_TO_HF:
        raise UnsupportedModelError(f"activation {name!r} has no transformers vision equivalent")
    return ACTIVATIONS_TO_HF[name]


@dataclass(frozen=True)
class Reshape:
    """One HF tensor that differs from optica's only in shape (a [1, 1, C] class token ↔ [C],
    a [1, N, C] position table ↔ [N, C])."""

    optica_shape: tuple[int, ...]
    hf_shape: tuple[int, ...]

    def to_optica(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        return tensors[0].reshape(self.optica_shape)

    def to_hf(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        return [tensor.reshape(self.hf_shape)]


def module_rules(optica: str, hf: str, params: Sequence[str] = ("weight", "bias")) -> list[Rule]:
    """One identity rule per parameter of a module (a linear or a norm)."""
    return [Rule(f"{optica}.{param}", (f"{hf}.{param}",)) for param in params]


def encoder_layer_rules(
    names: Mapping[str, str], qkv: tuple[str, str, str], *, num_heads: int, qkv_bias: bool
) -> list[Rule]:
    """Rules for one encoder layer (``{layer}`` templates) from its HF module names.

    Args:
        names: optica module under ``decoder.layers.{layer}.`` → HF module (weight and bias each).
        qkv: The HF q, k and v projections, fused into ``self_attention.linear_qkv``.
        num_heads: Attention heads (every head is its own KV group in an encoder).
        qkv_bias: Whether q, k and v carry biases.
    """
    rules = [r for optica, hf in names.items() for r in module_rules(LAYER + optica, hf)]
    for param in ("weight", "bias") if qkv_bias else ("weight",):
        hf_keys = tuple(f"{name}.{param}" for name in qkv)
        fused = FuseQKV(num_heads, num_heads)
        rules.append(Rule(f"{LAYER}self_attention.linear_qkv.{param}", hf_keys, fused))
    return rules


def prefixed_aliases(prefix: str, components: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``prefix + c`` is canonical and ``c`` its alias, per top-level component ``c``: checkpoints
    with and without a ``vision_model.`` wrapper both import."""
    return {prefix + component: (component,) for component in components}


class EncoderHFAdapter(HFAdapter):
    """Config translation for ViT-style encoders whose config.json uses transformers' CLIP/ViT
    field names; families set the class attributes and write ``keymap``.

    Attributes:
        config_class: The family's config dataclass.
        nested_in: ``model_type`` s of dual-encoder checkpoints (CLIPModel, SiglipModel) whose
            config.json holds this encoder's fields under ``vision_config``.
        fixed_fields: Config fields the architecture cannot change (checked on export).
    """

    config_class: ClassVar[type[VisionTransformerConfig]]
    nested_in: ClassVar[tuple[str, ...]] = ()
    fixed_fields: ClassVar[tuple[str, ...]] = STRUCTURAL

    def config_from_hf(self, hf_config: Mapping[str, Any]) -> VisionTransformerConfig:
        """Reads the encoder's dimensions (from ``vision_config`` in a dual-encoder file)."""
        hf_config = self._complete(hf_config)
        if hf_config.get("model_type") in self.nested_in:
            hf_config = hf_config["vision_config"]
        return self.config_class(**self._config_fields(hf_config))

    def _complete(self, hf_config: Mapping[str, Any]) -> dict[str, Any]:
        """``hf_config`` with transformers' defaults filled in (hook: remote-code families)."""
        return complete_hf_config({"model_type": self.model_type, **hf_config})

    def _config_fields(self, hf: Mapping[str, Any]) -> dict[str, Any]:
        img_h, img_w = _image_size(hf.get("image_size", 224))
        return {
            "hidden_size": hf["hidden_size"],
            "ffn_hidden_size": hf["intermediate_size"],
            "num_layers": hf["num_hidden_layers"],
            "num_attention_heads": hf["num_attention_heads"],
            "patch_dim": hf["patch_size"],
            "img_h": img_h,
            "img_w": img_w,
            "num_channels": hf.get("num_channels", 3),
            "activation": activation_from_hf(hf.get("hidden_act", "gelu")),
            "layernorm_epsilon": hf.get("layer_norm_eps", 1e-6),
            "attention_dropout": hf.get("attention_dropout", 0.0),
        }

    def config_to_hf(
        self, config: VisionTransformerConfig, base: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Config.json for ``config``, overlaying ``base``."""
        self._check_exportable(config)
        return {
            **dict(base or {}),
            "architectures": [self.architecture],
            "model_type": self.model_type,
            "hidden_size": config.hidden_size,
            "intermediate_size": config.ffn_hidden_size,
            "num_hidden_layers": config.num_layers,
            "num_attention_heads": config.num_attention_heads,
            "patch_size": config.patch_dim,
            "image_size": config.img_h,
            "num_channels": config.num_channels,
            "hidden_act": activation_to_hf(config.activation),
            "layer_norm_eps": config.layernorm_epsilon,
            "attention_dropout": config.attention_dropout,
            **self._extra_fields(config),
        }

    def _extra_fields(self, config: VisionTransformerConfig) -> dict[str, Any]:
        """Fields only this architecture writes (hook for subclasses)."""
        return {}

    def _check_exportable(self, config: VisionTransformerConfig) -> None:
        """Refuses configs the HF architecture cannot express (the export would silently differ)."""
        reference = self.config_class()
        changed = [f.name for f in fields(config) if f.name in self.fixed_fields
                   and getattr(config, f.name) != getattr(reference, f.name)]  # fmt: skip
        if changed or config.img_h != config.img_w:
            what = ", ".join(changed) or f"a non-square image {config.img_h}x{config.img_w}"
            raise UnsupportedModelError(f"{self.architecture} cannot express {what}")


def complete_hf_config(hf_config: Mapping[str, Any]) -> dict[str, Any]:
    """The config.json with every default filled in by transformers' own config class: files
    often list only the fields that differ from the defaults (llava-hf's sub-configs, older
    saves), and the defaults differ by architecture (CLIP's quick-GELU, ViT's 1e-12 epsilon)."""
    from transformers import AutoConfig  # NOTE: lazy; transformers is heavy to import

    fields = {key: value for key, value in hf_config.items() if key != "model_type"}
    return AutoConfig.for_model(hf_config["model_type"], **fields).to_dict()


def _image_size(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    height, width = value
    return int(height), int(width)


def clip_layer_rules(hf_prefix: str, num_heads: int) -> list[Rule]:
    """Encoder-layer rules for the layer naming CLIP and SigLIP share
    (``encoder.layers.N.self_attn.{q,k,v,out}_proj``, ``layer_norm1/2``, ``mlp.fc1/fc2``)."""
    hf = hf_prefix + "encoder.layers.{layer}."
    names = {
        "self_attention.linear_proj": hf + "self_attn.out_proj",
        "mlp.linear_fc1": hf + "mlp.fc1",
        "mlp.linear_fc2": hf + "mlp.fc2",
        "input_layernorm": hf + "layer_norm1",
        "pre_mlp_layernorm": hf + "layer_norm2",
    }
    qkv = (hf + "self_attn.q_proj", hf + "self_attn.k_proj", hf + "self_attn.v_proj")
    return encoder_layer_rules(names, qkv, num_heads=num_heads, qkv_bias=True)


@dataclass(frozen=True)
class StackedQKV:
    """One HF projection with q, k and v stacked whole (``[q_all_heads; k; v]``, as timm and
    InternViT's ``attn.qkv``) ↔ optica's per-head fused ``linear_qkv`` (weight or bias)."""

    num_heads: int

    def to_optica(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        q, k, v = tensors[0].chunk(3, dim=0)
        return fuse_qkv(q, k, v, self.num_heads)

    def to_hf(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        return [torch.cat(split_qkv(tensor, self.num_heads, self.num_heads), dim=0)]
