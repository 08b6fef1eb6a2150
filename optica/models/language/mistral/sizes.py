"""Mistral size presets with the published dimensions."""

from __future__ import annotations

from dataclasses import dataclass

from optica.models.language.llama.model import LlamaConfig


@dataclass
class MistralConfig(LlamaConfig):
    """A Llama-architecture config that belongs to the Mistral family (see the package doc)."""


@dataclass
class MistralConfig7B(MistralConfig):
    """mistralai/Mistral-7B-v0.1: 7,241,732,096 parameters; GQA with 8 KV heads and a 4096-token
    sliding window."""

    vocab_size: int = 32000
    hidden_size: int = 4096
    ffn_hidden_size: int = 14336
    num_layers: int = 32
    num_attention_heads: int = 32
    num_query_groups: int | None = 8
    seq_length: int = 32768
    rotary_base: float = 10000.0
    layernorm_epsilon: float = 1e-5
    sliding_window: int | None = 4096


@dataclass
class MistralConfigTiny(MistralConfig):
    """A random-init test size whose sliding window (8) is shorter than test sequences, so the
    windowed mask is exercised."""

    vocab_size: int = 250
    hidden_size: int = 64
    ffn_hidden_size: int = 160
    num_layers: int = 2
    num_attention_heads: int = 4
    num_query_groups: int | None = 2
    seq_length: int = 256
    rotary_base: float = 10000.0
    layernorm_epsilon: float = 1e-5
    sliding_window: int | None = 8


SIZES = {"mistral_7b": MistralConfig7B, "tiny": MistralConfigTiny}
