"""CLIP image-tower sizes (Radford et al., 2021, "Learning Transferable Visual Models From Natural
Language Supervision"), with the dimensions of OpenAI's released checkpoints. Parameter counts are
transformers' ``CLIPVisionModel`` for the same config.json.
"""

from __future__ import annotations

from dataclasses import dataclass

from optica.models.vision.encoder import VisionTransformerConfig


@dataclass
class CLIPViTConfig(VisionTransformerConfig):
    """CLIP's image tower: class token, a norm before the first layer (``ln_pre``), quick-GELU,
    a bias-free patch projection, and ``ln_post`` on the pooled class token only."""

    activation: str = "quick_gelu"
    layernorm_epsilon: float = 1e-5
    add_class_token: bool = True
    pre_layernorm: bool = True
    post_layernorm: str = "pooled"
    patch_bias: bool = False


@dataclass
class CLIPViTB_32_Config(CLIPViTConfig):
    """openai/clip-vit-base-patch32: 87,456,000 parameters."""

    hidden_size: int = 768
    ffn_hidden_size: int = 3072
    num_layers: int = 12
    num_attention_heads: int = 12
    patch_dim: int = 32
    img_h: int = 224
    img_w: int = 224


@dataclass
class CLIPViTB_16_Config(CLIPViTB_32_Config):
    """openai/clip-vit-base-patch16: 85,799,424 parameters."""

    patch_dim: int = 16


@dataclass
class CLIPViTL_14_Config(CLIPViTConfig):
    """openai/clip-vit-large-patch14: 303,179,776 parameters."""

    hidden_size: int = 1024
    ffn_hidden_size: int = 4096
    num_layers: int = 24
    num_attention_heads: int = 16
    patch_dim: int = 14
    img_h: int = 224
    img_w: int = 224


@dataclass
class CLIPViTL_14_336_Config(CLIPViTL_14_Config):
    """openai/clip-vit-large-patch14-336, LLaVA-1.5's vision tower: 303,507,456 parameters
    (24 x 24 patches + class token)."""

    img_h: int = 336
    img_w: int = 336


@dataclass
class CLIPViTConfigTiny(CLIPViTConfig):
    """A random-init test and demo size: 32 px images in 4 px patches (64 tokens + class)."""

    hidden_size: int = 64
    ffn_hidden_size: int = 128
    num_layers: int = 3
    num_attention_heads: int = 4
    patch_dim: int = 4
    img_h: int = 32
    img_w: int = 32


SIZES = {
    "vit_b32": CLIPViTB_32_Config,
    "vit_b16": CLIPViTB_16_Config,
    "vit_l14": CLIPViTL_14_Config,
    "vit_l14_336": CLIPViTL_14_336_Config,
    "tiny": CLIPViTConfigTiny,
}
