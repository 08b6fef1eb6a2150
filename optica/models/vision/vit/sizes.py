"""ViT classifier sizes: exactly the table of seed 002 (NeMo's ViT page) — hidden size, FFN size,
heads, layers, patch — at 224 px with 1000 classes. Encoder parameters (head excluded) at 224 px:
B/16 85.8M (table: 86), L/16 303.3M (303), H/16 630.9M and H/14 630.8M (632: with the
1000-class head, 632.2M / 632.0M), g/14 1011.2M (1011), G/14 1842.8M (1843).
"""

from __future__ import annotations

from dataclasses import dataclass

from optica.models.vision.vit.model import ViTConfig


@dataclass
class ViTB16Config(ViTConfig):
    """ViT-B/16 (seed 002: 86M)."""

    hidden_size: int = 768
    ffn_hidden_size: int = 3072
    num_attention_heads: int = 12
    num_layers: int = 12
    patch_dim: int = 16


@dataclass
class ViTL16Config(ViTConfig):
    """ViT-L/16 (seed 002: 303M)."""

    hidden_size: int = 1024
    ffn_hidden_size: int = 4096
    num_attention_heads: int = 16
    num_layers: int = 24
    patch_dim: int = 16


@dataclass
class ViTH16Config(ViTConfig):
    """ViT-H/16 (seed 002: 632M)."""

    hidden_size: int = 1280
    ffn_hidden_size: int = 5120
    num_attention_heads: int = 16
    num_layers: int = 32
    patch_dim: int = 16


@dataclass
class ViTH14Config(ViTH16Config):
    """ViT-H/14 (seed 002: 632M)."""

    patch_dim: int = 14


@dataclass
class ViTg14Config(ViTConfig):
    """ViT-g/14, giant (Zhai et al., 2022, "Scaling Vision Transformers"; seed 002: 1011M)."""

    hidden_size: int = 1408
    ffn_hidden_size: int = 6144
    num_attention_heads: int = 16
    num_layers: int = 40
    patch_dim: int = 14


@dataclass
class ViTG14Config(ViTConfig):
    """ViT-G/14, gigantic (Zhai et al., 2022; seed 002: 1843M)."""

    hidden_size: int = 1664
    ffn_hidden_size: int = 8192
    num_attention_heads: int = 16
    num_layers: int = 48
    patch_dim: int = 14


@dataclass
class ViTConfigTiny(ViTConfig):
    """A random-init test and demo size: 32 px images in 8 px patches, 10 classes."""

    hidden_size: int = 64
    ffn_hidden_size: int = 128
    num_attention_heads: int = 4
    num_layers: int = 2
    patch_dim: int = 8
    img_h: int = 32
    img_w: int = 32
    num_classes: int = 10


SIZES = {
    "b16": ViTB16Config,
    "l16": ViTL16Config,
    "h16": ViTH16Config,
    "h14": ViTH14Config,
    "g14": ViTg14Config,
    "G14": ViTG14Config,
    "tiny": ViTConfigTiny,
}
