"""InternViT sizes, from OpenGVLab's config.json files."""

from __future__ import annotations

from dataclasses import dataclass

from optica.models.vision.intern_vit.model import InternViTConfig


@dataclass
class InternViT_300M_448px_Config(InternViTConfig):
    """OpenGVLab/InternViT-300M-448px (and -V2_5, same shape): 304,012,288 parameters, 32 x 32
    patches of 14 px + class token; LayerNorm, biased qkv, no q/k normalisation. Stochastic depth
    is a training choice and stays 0 here (InternVL's fine-tuning scripts set 0.1)."""

    hidden_size: int = 1024
    ffn_hidden_size: int = 4096
    num_layers: int = 24
    num_attention_heads: int = 16
    patch_dim: int = 14
    img_h: int = 448
    img_w: int = 448
    qkv_bias: bool = True


@dataclass
class InternViTConfigTiny(InternViTConfig):
    """A random-init test size: 32 px images in 4 px patches (64 tokens + class)."""

    hidden_size: int = 64
    ffn_hidden_size: int = 128
    num_layers: int = 3
    num_attention_heads: int = 4
    patch_dim: int = 4
    img_h: int = 32
    img_w: int = 32
    qkv_bias: bool = True


SIZES = {"300m_448px": InternViT_300M_448px_Config, "tiny": InternViTConfigTiny}
