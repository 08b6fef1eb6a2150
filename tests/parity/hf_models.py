"""Tiny random Hugging Face causal LMs, saved to a directory, for parity tests.

transformers initialises with std 0.02, which makes logits so small that a 1e-4 tolerance would
pass almost anything; the weights are therefore redrawn at unit-variance scale (norm scales and
biases included), so logits are O(1) and every tensor's placement matters.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

TINY = {
    "vocab_size": 250,
    "hidden_size": 64,
    "intermediate_size": 160,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-5,
}

LLAMA31_SCALING = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Redraws every parameter: matrices N(0, 1/fan_in), norm scales 1 + N(0, 0.1²), biases
    N(0, 0.1²)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if param.dim() == 2:
                param.copy_(noise / math.sqrt(param.shape[1]))
            elif name.endswith("bias"):
                param.copy_(0.1 * noise)
            else:
                param.copy_(1 + 0.1 * noise)
    return model


def make_hf_model(path: Path, kind: str = "llama", seed: int = 0, **overrides) -> torch.nn.Module:
    """Builds, randomises and saves a tiny ``LlamaForCausalLM`` or ``MistralForCausalLM``."""
    config_class, model_class = {
        "llama": (LlamaConfig, LlamaForCausalLM),
        "mistral": (MistralConfig, MistralForCausalLM),
    }[kind]
    torch.manual_seed(seed)
    model = model_class(config_class(**{**TINY, **overrides})).eval()
    randomize_(model, seed)
    model.save_pretrained(path)
    return model


def token_ids(batch: int = 2, length: int = 12, vocab: int = 250, seed: int = 1) -> torch.Tensor:
    """Random token ids [batch, length]."""
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))
