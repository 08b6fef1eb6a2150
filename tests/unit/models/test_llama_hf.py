"""Llama/Mistral config translation: presets survive a round trip through config.json, and
transformers builds the same-sized model from what we write."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from optica.models import (
    Llama2Config13B,
    Llama31Config8B,
    LlamaConfigTiny,
    LlamaModel,
    MistralConfig7B,
    UnsupportedModelError,
    VicunaConfig7B,
    family_for_config,
)


@pytest.mark.parametrize(
    "preset",
    [Llama2Config13B, VicunaConfig7B, Llama31Config8B, MistralConfig7B],
    ids=lambda c: c.__name__,
)
def test_presets_round_trip_and_match_transformers_size(preset):
    config = preset()
    adapter = family_for_config(config).hf_adapter
    written = adapter.config_to_hf(config)
    assert dataclasses.asdict(adapter.config_from_hf(written)) == dataclasses.asdict(config)
    hf_config = AutoConfig.for_model(**written)
    with torch.device("meta"):
        hf_model = AutoModelForCausalLM.from_config(hf_config)
    assert type(hf_model).__name__ == written["architectures"][0]
    ours = sum(p.numel() for p in LlamaModel(config).parameters())
    assert sum(p.numel() for p in hf_model.parameters()) == ours


def test_base_config_extras_survive_export():
    config = LlamaConfigTiny()
    base = {"bos_token_id": 7, "eos_token_id": [8, 9], "hidden_size": 1}
    written = family_for_config(config).hf_adapter.config_to_hf(config, base)
    assert written["bos_token_id"] == 7 and written["eos_token_id"] == [8, 9]
    assert written["hidden_size"] == 64


def test_unexpressible_exports_are_refused():
    llama = family_for_config(LlamaConfigTiny()).hf_adapter
    with pytest.raises(UnsupportedModelError, match="no sliding window; export this model as"):
        llama.config_to_hf(LlamaConfigTiny(sliding_window=16))
    mistral = family_for_config(MistralConfig7B()).hf_adapter
    with pytest.raises(UnsupportedModelError, match="has no biases"):
        mistral.config_to_hf(MistralConfig7B(attention_bias=True))
