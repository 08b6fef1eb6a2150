"""SigLIP image-tower sizes (Zhai et al., 2023, "Sigmoid Loss for Language Image Pre-Training"),
with the dimensions of Google's released checkpoints. Parameter counts are transformers'
``SiglipVisionModel`` for the same config.json with ``vision_use_head=False`` (see the package
docstring for why the pooling head is left out).
"""

from __future__ import annotations

from dataclasses import dataclass

from optica.models.vision.encoder import VisionTransformerConfig


@dataclass
class SigLIPViTConfig(VisionTransformerConfig):
    """SigLIP's image tower: no class token, tanh-approximated GELU, a final norm on every token."""

    activation: str = "gelu_tanh"
    layernorm_epsilon: float = 1e-6
    add_class_token: bool = False
    pre_layernorm: bool = False
    post_layernorm: str = "sequence"
    patch_bias: bool = True


@dataclass
class SigLIPB_16_224_Config(SigLIPViTConfig):
    """google/siglip-base-patch16-224: 85,797,120 parameters without the pooling head."""

    hidden_size: int = 768
    ffn_hidden_size: int = 3072
    num_layers: int = 12
    num_attention_heads: int = 12
    patch_dim: int = 16
    img_h: int = 224
    img_w: int = 224


@dataclass
class SigLIPB_16_384_Config(SigLIPB_16_224_Config):
    """google/siglip-base-patch16-384: 86,088,960 parameters without the pooling head."""

    img_h: int = 384
    img_w: int = 384


@dataclass
class SigLIPso400m_14_384_Config(SigLIPViTConfig):
    """google/siglip-so400m-patch14-384, the shape-optimised 400M tower (Alabdulmohsin et al.,
    2023): 412,987,248 parameters without the pooling head; 27 x 27 patches of 14 px (the
    last 6 pixel rows and columns fall outside every patch, as in the original)."""

    hidden_size: int = 1152
    ffn_hidden_size: int = 4304
    num_layers: int = 27
    num_attention_heads: int = 16
    patch_dim: int = 14
    img_h: int = 384
    img_w: int = 384


@dataclass
class SigLIPViTConfigTiny(SigLIPViTConfig):
    """A random-init test and demo size: 32 px images in 4 px patches (64 tokens)."""

    hidden_size: int = 64
    ffn_hidden_size: int = 128
    num_layers: int = 3
    num_attention_heads: int = 4
    patch_dim: int = 4
    img_h: int = 32
    img_w: int = 32


SIZES = {
    "base_16_224": SigLIPB_16_224_Config,
    "base_16_384": SigLIPB_16_384_Config,
    "so400m_14_384": SigLIPso400m_14_384_Config,
    "tiny": SigLIPViTConfigTiny,
}
