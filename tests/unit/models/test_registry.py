"""The family registry: lookups by name, config, model and Hugging Face config."""

from __future__ import annotations

import dataclasses

import pytest

from optica.models import (
    Llama31Config8B,
    LlamaConfig,
    LlamaConfigTiny,
    LlamaModel,
    MistralConfig7B,
    UnsupportedModelError,
    VicunaConfig7B,
    family_for_config,
    family_for_hf_config,
    family_for_model,
    get_family,
    register_family,
)


def test_presets_find_their_family():
    assert family_for_config(VicunaConfig7B()).name == "llama"
    assert family_for_config(Llama31Config8B()).name == "llama"
    assert family_for_config(MistralConfig7B()).name == "mistral"  # sub-family beats its parent
    assert family_for_model(LlamaModel(LlamaConfigTiny())).name == "llama"


def test_hf_configs_find_their_family():
    assert family_for_hf_config({"architectures": ["MistralForCausalLM"]}).name == "mistral"
    assert family_for_hf_config({"model_type": "llama"}).name == "llama"
    with pytest.raises(
        UnsupportedModelError, match=r"unsupported .*GPT2LMHeadModel.*LlamaForCausalLM"
    ):
        family_for_hf_config({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"})


def test_names_and_sizes_with_hints():
    family = get_family("llama")
    assert family.size("tiny") == LlamaConfigTiny()
    assert family.size("llama2_7b").num_layers == 32
    with pytest.raises(UnsupportedModelError, match="did you mean 'llama'"):
        get_family("lama")
    with pytest.raises(UnsupportedModelError, match="did you mean 'llama3_8b'"):
        family.size("llama3_8")


def test_unknown_config_and_conflicts_are_refused():
    with pytest.raises(UnsupportedModelError, match="no model family .* dict"):
        family_for_config({})
    clash = dataclasses.replace(get_family("llama"), name="llama-copy")
    with pytest.raises(ValueError, match="both import"):
        register_family(clash)
    other = dataclasses.replace(get_family("llama"), config_class=LlamaConfig, sizes={})
    with pytest.raises(ValueError, match="already registered"):
        register_family(other)
