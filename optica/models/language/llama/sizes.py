"""Llama-family size presets with the published dimensions (from each model's config.json).

Each preset is a config subclass, so ``Llama2Config7B()`` is a complete config and
``run.Config(Llama2Config7B, num_layers=2)`` overrides one field.
"""

from __future__ import annotations

from dataclasses import dataclass

from optica.models.language.llama.model import LlamaConfig
from optica.models.modules.rope import RopeScaling

# Frozen, hence safe as a shared dataclass default.
LLAMA31_ROPE_SCALING = RopeScaling(
    factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192
)


@dataclass
class Llama2Config7B(LlamaConfig):
    """meta-llama/Llama-2-7b-hf: 6,738,415,616 parameters."""

    vocab_size: int = 32000
    hidden_size: int = 4096
    ffn_hidden_size: int = 11008
    num_layers: int = 32
    num_attention_heads: int = 32
    seq_length: int = 4096
    rotary_base: float = 10000.0
    layernorm_epsilon: float = 1e-5


@dataclass
class Llama2Config13B(LlamaConfig):
    """meta-llama/Llama-2-13b-hf: 13,015,864,320 parameters."""

    vocab_size: int = 32000
    hidden_size: int = 5120
    ffn_hidden_size: int = 13824
    num_layers: int = 40
    num_attention_heads: int = 40
    seq_length: int = 4096
    rotary_base: float = 10000.0
    layernorm_epsilon: float = 1e-5


@dataclass
class VicunaConfig7B(Llama2Config7B):
    """lmsys/vicuna-7b-v1.5: Llama 2 7B fine-tuned on conversations; same dimensions (LLaVA-1.5's
    language model)."""


@dataclass
class VicunaConfig13B(Llama2Config13B):
    """lmsys/vicuna-13b-v1.5: Llama 2 13B fine-tuned on conversations; same dimensions."""


@dataclass
class Llama3Config8B(LlamaConfig):
    """meta-llama/Meta-Llama-3-8B: 8,030,261,248 parameters; GQA with 8 KV heads."""

    vocab_size: int = 128256
    hidden_size: int = 4096
    ffn_hidden_size: int = 14336
    num_layers: int = 32
    num_attention_heads: int = 32
    num_query_groups: int | None = 8
    seq_length: int = 8192
    rotary_base: float = 500000.0
    layernorm_epsilon: float = 1e-5


@dataclass
class Llama31Config8B(Llama3Config8B):
    """meta-llama/Llama-3.1-8B: Llama 3 8B with rope scaling to a 128k context."""

    seq_length: int = 131072
    rope_scaling: RopeScaling | None = LLAMA31_ROPE_SCALING


@dataclass
class LlamaConfigTiny(LlamaConfig):
    """A random-init test and demo size: GQA (4 heads, 2 KV groups) and a vocabulary that needs
    padding (250 → 256), so both code paths run in every test."""

    vocab_size: int = 250
    hidden_size: int = 64
    ffn_hidden_size: int = 160
    num_layers: int = 2
    num_attention_heads: int = 4
    num_query_groups: int | None = 2
    seq_length: int = 256
    rotary_base: float = 10000.0
    layernorm_epsilon: float = 1e-5


SIZES = {
    "llama2_7b": Llama2Config7B,
    "llama2_13b": Llama2Config13B,
    "vicuna_7b": VicunaConfig7B,
    "vicuna_13b": VicunaConfig13B,
    "llama3_8b": Llama3Config8B,
    "llama31_8b": Llama31Config8B,
    "tiny": LlamaConfigTiny,
}
