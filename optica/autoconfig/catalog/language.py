"""GPT-family sizes as published (papers and each release's config.json).

Common traits per family — GPT-3: GELU MLP of 4h, biases, LayerNorm, learned positions, tied
embeddings, dropout. Llama/Mistral/Mixtral: SwiGLU, RMSNorm, RoPE, no biases, untied. Gemma:
GeGLU, head dimension 256 apart from h / a, tied. Nemotron: squared-ReLU (not gated), LayerNorm,
untied, 256k vocabulary.
"""

from __future__ import annotations

from typing import Any

from optica.autoconfig.catalog import Preset, register
from optica.autoconfig.shapes import LanguageShape, ModelShape

GPT3 = "Brown et al. 2020, Table 2.1 (13B at h=5120 as Megatron-LM); 5B/20B/40B: NeMo gpt3 configs"
GPT3_TRAITS = dict(
    gated_mlp=False, bias=True, norm="layernorm", dropout=True, vocab_size=50257,
    seq_length=2048, tied_embeddings=True, learned_positions=True, activation="gelu",
)  # fmt: skip
LLAMA_TRAITS = dict(gated_mlp=True, bias=False, norm="rmsnorm")
GEMMA_TRAITS = dict(
    LLAMA_TRAITS, vocab_size=256000, seq_length=8192, tied_embeddings=True, activation="gelu_tanh"
)
NEMOTRON_TRAITS = dict(
    gated_mlp=False, bias=False, norm="layernorm", vocab_size=256000, seq_length=4096,
    activation="squared_relu",
)  # fmt: skip


def _lm(name: str, family: str, source: str, **fields: Any) -> None:
    def make() -> ModelShape:
        return ModelShape(name=name, language=LanguageShape(**fields))

    register(Preset(name=name, family=family, make=make, source=source))


def _gpt3(name: str, hidden: int, layers: int, heads: int) -> None:
    _lm(name, "gpt3", GPT3, hidden_size=hidden, ffn_hidden_size=4 * hidden, num_layers=layers,
        num_attention_heads=heads, **GPT3_TRAITS)  # fmt: skip


# name,        hidden, layers, heads
_gpt3("gpt3_125m", 768, 12, 12)
_gpt3("gpt3_350m", 1024, 24, 16)
_gpt3("gpt3_760m", 1536, 24, 16)
_gpt3("gpt3_1.3b", 2048, 24, 16)
_gpt3("gpt3_2.7b", 2560, 32, 32)
_gpt3("gpt3_5b", 4096, 24, 32)
_gpt3("gpt3_6.7b", 4096, 32, 32)
_gpt3("gpt3_13b", 5120, 40, 40)
_gpt3("gpt3_20b", 6144, 44, 48)
_gpt3("gpt3_40b", 8192, 48, 64)
_gpt3("gpt3_175b", 12288, 96, 96)

LLAMA2 = "Touvron et al. 2023 (Llama 2), meta-llama/Llama-2-*-hf config.json"
for name, h, f, layers, heads, groups in (
    ("llama2_7b", 4096, 11008, 32, 32, None),
    ("llama2_13b", 5120, 13824, 40, 40, None),
    ("llama2_70b", 8192, 28672, 80, 64, 8),
):
    _lm(name, "llama2", LLAMA2, hidden_size=h, ffn_hidden_size=f, num_layers=layers,
        num_attention_heads=heads, num_query_groups=groups, vocab_size=32000, seq_length=4096,
        **LLAMA_TRAITS)  # fmt: skip

_lm("tinyllama_1.1b", "tinyllama", "Zhang et al. 2024 (TinyLlama), "
    "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T config.json: Llama 2's architecture",
    hidden_size=2048, ffn_hidden_size=5632, num_layers=22, num_attention_heads=32,
    num_query_groups=4, vocab_size=32000, seq_length=2048, **LLAMA_TRAITS)  # fmt: skip

LLAMA3 = "Meta Llama 3 / 3.1 config.json (Dubey et al. 2024)"
for name, h, f, layers, heads in (
    ("llama3_8b", 4096, 14336, 32, 32),
    ("llama3_70b", 8192, 28672, 80, 64),
    ("llama31_405b", 16384, 53248, 126, 128),
):
    _lm(name, "llama3", LLAMA3, hidden_size=h, ffn_hidden_size=f, num_layers=layers,
        num_attention_heads=heads, num_query_groups=8, vocab_size=128256, seq_length=8192,
        **LLAMA_TRAITS)  # fmt: skip

_lm("mistral_7b", "mistral", "Jiang et al. 2023 (Mistral 7B), mistralai/Mistral-7B-v0.1",
    hidden_size=4096, ffn_hidden_size=14336, num_layers=32, num_attention_heads=32,
    num_query_groups=8, vocab_size=32000, seq_length=32768, **LLAMA_TRAITS)  # fmt: skip

MIXTRAL = "Jiang et al. 2024 (Mixtral of Experts), mistralai/Mixtral-*-v0.1 config.json"
_lm("mixtral_8x7b", "mixtral", MIXTRAL, hidden_size=4096, ffn_hidden_size=14336, num_layers=32,
    num_attention_heads=32, num_query_groups=8, vocab_size=32000, seq_length=32768,
    num_experts=8, moe_router_topk=2, **LLAMA_TRAITS)  # fmt: skip
_lm("mixtral_8x22b", "mixtral", MIXTRAL, hidden_size=6144, ffn_hidden_size=16384, num_layers=56,
    num_attention_heads=48, num_query_groups=8, vocab_size=32768, seq_length=65536,
    num_experts=8, moe_router_topk=2, **LLAMA_TRAITS)  # fmt: skip

GEMMA = "Gemma Team 2024 (Gemma), google/gemma-*b config.json"
_lm("gemma_2b", "gemma", GEMMA, hidden_size=2048, ffn_hidden_size=16384, num_layers=18,
    num_attention_heads=8, num_query_groups=1, kv_channels=256, **GEMMA_TRAITS)  # fmt: skip
_lm("gemma_7b", "gemma", GEMMA, hidden_size=3072, ffn_hidden_size=24576, num_layers=28,
    num_attention_heads=16, kv_channels=256, **GEMMA_TRAITS)  # fmt: skip

NEMOTRON = "Parmar et al. 2024 (Nemotron-4 15B), NVIDIA 2024 (340B); 8B: NeMo recipe"
for name, h, f, layers, heads, groups in (
    ("nemotron3_8b", 4096, 16384, 32, 32, None),
    ("nemotron4_15b", 6144, 24576, 32, 48, 8),
    ("nemotron4_340b", 18432, 73728, 96, 96, 8),
):
    _lm(name, "nemotron", NEMOTRON, hidden_size=h, ffn_hidden_size=f, num_layers=layers,
        num_attention_heads=heads, num_query_groups=groups, **NEMOTRON_TRAITS)  # fmt: skip
