"""Hugging Face ``MistralForCausalLM`` ↔ optica: Llama's adapter with Mistral's names and its
sliding window (and no bias fields, which Mistral checkpoints do not have)."""

from __future__ import annotations

from typing import Any

from optica.models.errors import UnsupportedModelError
from optica.models.language.llama.hf import LlamaHFAdapter
from optica.models.language.mistral.sizes import MistralConfig


class MistralHFAdapter(LlamaHFAdapter):
    """Adapter for ``MistralForCausalLM`` checkpoints."""

    model_type = "mistral"
    architecture = "MistralForCausalLM"
    config_class = MistralConfig

    def _check_exportable(self, config: MistralConfig) -> None:
        if config.attention_bias or config.mlp_bias:
            raise UnsupportedModelError(f"{self.architecture} has no biases; export as Llama")

    def _extra_fields(self, config: MistralConfig) -> dict[str, Any]:
        return {"sliding_window": config.sliding_window}
