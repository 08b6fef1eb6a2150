"""RoPE frequencies and rotation against transformers' own implementation, and config.json
spellings."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig as HFLlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

from optica.models import UnsupportedModelError
from optica.models.hf.rope import rope_from_hf, rope_to_hf
from optica.models.modules.rope import RopeScaling, RotaryEmbedding, apply_rotary, rope_inv_freq

SCALING = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}


def hf_config(**kwargs) -> HFLlamaConfig:
    return HFLlamaConfig(hidden_size=512, num_attention_heads=4, **kwargs)


@pytest.mark.parametrize("original", [16, 8192])
def test_llama3_scaling_matches_transformers(original):
    params = {"rope_type": "llama3", "rope_theta": 500000.0, **SCALING}
    params["original_max_position_embeddings"] = original
    theirs, _ = ROPE_INIT_FUNCTIONS["llama3"](hf_config(rope_parameters=params), "cpu")
    scaling = RopeScaling(**SCALING, original_max_position_embeddings=original)
    ours = rope_inv_freq(128, 500000.0, scaling)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    assert not torch.equal(ours, rope_inv_freq(128, 500000.0))  # scaling changes something


def test_default_frequencies_and_tables_match_transformers():
    config = hf_config(rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    theirs = LlamaRotaryEmbedding(config)
    positions = torch.arange(50).expand(2, 50)
    x = torch.randn(2, 50, 128)
    cos_t, sin_t = theirs(x, positions)
    cos, sin = RotaryEmbedding(128, 10000.0)(positions, x.dtype)
    torch.testing.assert_close(cos, cos_t, rtol=0, atol=1e-6)
    torch.testing.assert_close(sin, sin_t, rtol=0, atol=1e-6)


def test_rotation_matches_transformers():
    q, k = torch.randn(2, 7, 4, 16), torch.randn(2, 7, 2, 16)
    cos, sin = RotaryEmbedding(16)(torch.arange(7).expand(2, 7), torch.float32)
    q_t, k_t = apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
    torch.testing.assert_close(apply_rotary(q, cos, sin), q_t.transpose(1, 2))
    torch.testing.assert_close(apply_rotary(k, cos, sin), k_t.transpose(1, 2))


@pytest.mark.parametrize(
    "config_json",
    [
        {
            "rope_parameters": {
                "rope_type": "llama3",
                "rope_theta": 5e5,
                **SCALING,
                "original_max_position_embeddings": 8192,
            }
        },
        {
            "rope_theta": 5e5,
            "rope_scaling": {
                "rope_type": "llama3",
                **SCALING,
                "original_max_position_embeddings": 8192,
            },
        },
        {
            "rope_theta": 5e5,
            "rope_scaling": {"type": "llama3", **SCALING, "original_max_position_embeddings": 8192},
        },
    ],
    ids=["transformers5", "transformers4", "legacy-type-key"],
)
def test_both_config_spellings_read_the_same(config_json):
    assert rope_from_hf(config_json) == (500000.0, RopeScaling(**SCALING))


def test_plain_theta_and_defaults():
    assert rope_from_hf({"rope_parameters": {"rope_type": "default", "rope_theta": 1e6}}) == (
        1e6,
        None,
    )
    assert rope_from_hf({"rope_theta": 500000.0}) == (500000.0, None)
    assert rope_from_hf({}) == (10000.0, None)


def test_written_config_reads_back_in_both_spellings():
    written = rope_to_hf(500000.0, RopeScaling(**SCALING))
    assert rope_from_hf(written) == (500000.0, RopeScaling(**SCALING))
    legacy_only = {k: written[k] for k in ("rope_theta", "rope_scaling")}
    assert rope_from_hf(legacy_only) == (500000.0, RopeScaling(**SCALING))
    config = hf_config(**written)
    assert config.rope_parameters["rope_type"] == "llama3"
    assert config.rope_parameters["rope_theta"] == 500000.0


def test_unsupported_rope_type_is_one_clear_line():
    with pytest.raises(UnsupportedModelError, match="rope type 'yarn' .* not supported"):
        rope_from_hf({"rope_parameters": {"rope_type": "yarn", "factor": 4.0}})
