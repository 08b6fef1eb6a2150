"""Vision sizes: the seed-002 ViT classifiers and LLaVA-1.5 (NeVA).

ViT classifiers follow seed 002's table (Dosovitskiy et al. 2021; Zhai et al. 2022 for g/14 and
G/14) at its defaults: 224 px, 1000 classes (ImageNet-1K), dropout 0.1. LLaVA-1.5 (Liu et al.
2023, "Improved Baselines with Visual Instruction Tuning") is CLIP ViT-L/14 at 336 px → a
two-layer GELU MLP → Vicuna-1.5 (Llama 2 shapes), trained at 2048 tokens; each image becomes
24 × 24 = 576 tokens (the class token dropped).
"""

from __future__ import annotations

from optica.autoconfig.catalog import Preset, register
from optica.autoconfig.shapes import (
    LanguageShape,
    ModelShape,
    ProjectorShape,
    VisionShape,
)

SEED_002 = "seed 002 ViT table (Dosovitskiy et al. 2021; Zhai et al. 2022)"


def _vit(name: str, hidden: int, ffn: int, heads: int, layers: int, patch: int) -> None:
    def make() -> ModelShape:
        encoder = VisionShape(
            hidden_size=hidden, ffn_hidden_size=ffn, num_layers=layers,
            num_attention_heads=heads, patch_size=patch, image_size=224, dropout=True,
        )  # fmt: skip
        return ModelShape(name=name, vision=encoder, num_classes=1000)

    register(Preset(name=name, family="vit", make=make, source=SEED_002))


# name,     hidden, ffn, heads, layers, patch
_vit("vit_b16", 768, 3072, 12, 12, 16)
_vit("vit_l16", 1024, 4096, 16, 24, 16)
_vit("vit_h16", 1280, 5120, 16, 32, 16)
_vit("vit_h14", 1280, 5120, 16, 32, 14)
_vit("vit_g14", 1408, 6144, 16, 40, 14)
_vit("vit_G14", 1664, 8192, 16, 48, 14)


def clip_vit_l14_336() -> VisionShape:
    """openai/clip-vit-large-patch14-336: 303,507,456 parameters (no patch bias, a pre-norm)."""
    return VisionShape(
        hidden_size=1024, ffn_hidden_size=4096, num_layers=24, num_attention_heads=16,
        image_size=336, patch_size=14, patch_bias=False, pre_norm=True,
    )  # fmt: skip


def _llava15(name: str, hidden: int, ffn: int, layers: int, heads: int) -> None:
    def make() -> ModelShape:
        vicuna = LanguageShape(
            hidden_size=hidden, ffn_hidden_size=ffn, num_layers=layers,
            num_attention_heads=heads, vocab_size=32000, seq_length=2048,
        )  # fmt: skip
        projector = ProjectorShape(input_size=1024, output_size=hidden, kind="mlp2x_gelu")
        return ModelShape(
            name=name, language=vicuna, vision=clip_vit_l14_336(), projector=projector
        )

    source = "Liu et al. 2023 (LLaVA-1.5): CLIP ViT-L/14-336 + mlp2x_gelu + Vicuna-1.5"
    register(Preset(name=name, family="llava15", make=make, source=source))


_llava15("llava15_7b", 4096, 11008, 32, 32)
_llava15("llava15_13b", 5120, 13824, 40, 40)
