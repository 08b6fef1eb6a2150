"""LLaVA presets: literal compositions of a language-model size, a vision-tower size and the
projector, with the dimensions of the llava-hf checkpoints. Parameter counts are transformers'
``LlavaForConditionalGeneration`` for the same config.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from optica.models.language.llama import (
    LlamaConfig,
    LlamaConfigTiny,
    VicunaConfig7B,
    VicunaConfig13B,
)
from optica.models.vision.clip import CLIPViTConfigTiny, CLIPViTL_14_336_Config
from optica.models.vision.encoder import VisionTransformerConfig
from optica.models.vlm.llava.model import LlavaConfig

# llava-hf added <image> (32000) and <pad> (32001) to Vicuna's 32000 tokens and padded the
# embedding to a multiple of 64; padding to 64 (not Megatron's 128) keeps that size exact.
LLAVA15_VOCAB = 32064
LLAVA15_IMAGE_TOKEN_ID = 32000


def vicuna7b_llava15() -> LlamaConfig:
    """lmsys/vicuna-7b-v1.5 with LLaVA-1.5's vocabulary."""
    return VicunaConfig7B(vocab_size=LLAVA15_VOCAB, make_vocab_size_divisible_by=64)


def vicuna13b_llava15() -> LlamaConfig:
    """lmsys/vicuna-13b-v1.5 with LLaVA-1.5's vocabulary."""
    return VicunaConfig13B(vocab_size=LLAVA15_VOCAB, make_vocab_size_divisible_by=64)


def tiny_language() -> LlamaConfig:
    """The tiny Llama widened to 96 so the tiny LLaVA has ~0.4M parameters (the demo's size)."""
    return LlamaConfigTiny(hidden_size=96, ffn_hidden_size=256)


@dataclass
class Llava15Config7B(LlavaConfig):
    """llava-hf/llava-1.5-7b-hf: Vicuna-7B + CLIP ViT-L/14-336 + mlp2x_gelu, 7,063,427,072
    parameters; 576 image tokens per image."""

    language_transformer_config: LlamaConfig = field(default_factory=vicuna7b_llava15)
    vision_transformer_config: VisionTransformerConfig = field(
        default_factory=CLIPViTL_14_336_Config
    )
    image_token_id: int | None = LLAVA15_IMAGE_TOKEN_ID


@dataclass
class Llava15Config13B(Llava15Config7B):
    """llava-hf/llava-1.5-13b-hf: Vicuna-13B + CLIP ViT-L/14-336 + mlp2x_gelu, 13,351,494,656
    parameters."""

    language_transformer_config: LlamaConfig = field(default_factory=vicuna13b_llava15)


@dataclass
class LlavaConfigTiny(LlavaConfig):
    """A random-init test and demo size (~0.38M parameters): 32 px images in 4 px patches (64
    image tokens after the class token is dropped), a 96-wide 2-layer GQA Llama with 250 tokens.
    Set ``vocab_size`` to the tokenizer's and ``image_token_id`` to its ``<image>`` id; the
    default (the last id) only lets a random model export as it is."""

    language_transformer_config: LlamaConfig = field(default_factory=tiny_language)
    vision_transformer_config: VisionTransformerConfig = field(default_factory=CLIPViTConfigTiny)
    image_token_id: int | None = 249


SIZES = {"llava15_7b": Llava15Config7B, "llava15_13b": Llava15Config13B, "tiny": LlavaConfigTiny}
