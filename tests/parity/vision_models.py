"""Tiny random Hugging Face vision models and LLaVAs, saved to a directory, for parity tests.

Weights are redrawn at unit-variance scale by ``randomize_`` (see ``hf_models``), so features and
logits are O(1) and a 1e-4 bound means something. Images are 16 px in 4 px patches (16 patches).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    SiglipVisionConfig,
    SiglipVisionModel,
    ViTConfig,
    ViTForImageClassification,
)

from tests.parity.hf_models import randomize_

IMAGE = 16
PATCHES = (IMAGE // 4) ** 2
TOWER = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "image_size": IMAGE,
    "patch_size": 4,
}
TEXT = {  # GQA: 4 query heads over 2 KV heads
    "vocab_size": 120,
    "hidden_size": 48,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-5,
}
IMAGE_TOKEN = 119  # the HF <image> id (last row of the vocabulary)
VISION = {
    "clip": (CLIPVisionConfig, CLIPVisionModel),
    "siglip": (SiglipVisionConfig, SiglipVisionModel),
}


def images(count: int, seed: int = 2) -> torch.Tensor:
    """Random normalised pixels [count, 3, 16, 16]."""
    return torch.randn(count, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(seed))


def save(model: torch.nn.Module, path: Path, seed: int = 0) -> torch.nn.Module:
    """Randomises ``model`` and saves it to ``path``; returns it in eval mode."""
    randomize_(model.eval(), seed)
    model.save_pretrained(path)
    return model


def make_vision(path: Path, kind: str, **overrides) -> torch.nn.Module:
    """A saved tiny ``CLIPVisionModel`` or ``SiglipVisionModel``."""
    config_class, model_class = VISION[kind]
    return save(model_class(config_class(**{**TOWER, **overrides})), path)


def make_vit(path: Path, **overrides) -> ViTForImageClassification:
    """A saved tiny ``ViTForImageClassification`` with 5 labels."""
    config = ViTConfig(**{**TOWER, "num_labels": 5, "layer_norm_eps": 1e-6, **overrides})
    return save(ViTForImageClassification(config), path)


def llava_config(kind: str, *, layer: int, strategy: str) -> LlavaConfig:
    """A tiny ``LlavaConfig`` with a CLIP or SigLIP tower and a GQA Llama."""
    vision = VISION[kind][0](**TOWER)
    tokens = PATCHES + (strategy == "full" and kind == "clip")
    return LlavaConfig(
        vision_config=vision,
        text_config=LlamaConfig(**TEXT),
        image_token_index=IMAGE_TOKEN,
        image_seq_length=tokens,
        vision_feature_layer=layer,
        vision_feature_select_strategy=strategy,
    )


def make_llava(path: Path, kind: str, **kwargs) -> LlavaForConditionalGeneration:
    """A saved tiny ``LlavaForConditionalGeneration``."""
    return save(LlavaForConditionalGeneration(llava_config(kind, **kwargs)), path)


def hf_inputs(input_ids: torch.Tensor, tokens_per_image: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What transformers' LLaVA expects for optica's ``input_ids``: each -200 written out as
    ``tokens_per_image`` copies of the <image> id, rows right-padded with a mask.

    Written with plain loops on purpose: an independent reference for optica's vectorised splice.
    """
    rows = []
    for row in input_ids.tolist():
        expanded = []
        for token in row:
            expanded += [IMAGE_TOKEN] * tokens_per_image if token == -200 else [token]
        rows.append(expanded)
    width = max(len(row) for row in rows)
    ids = torch.tensor([row + [0] * (width - len(row)) for row in rows])
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
    return ids, mask


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference."""
    return (a - b).abs().max().item()
