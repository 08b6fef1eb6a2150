"""Adapter-only checkpoints (``optica.train.adapters``) on a tiny Llama: what is written, loading
them onto a fresh base reproduces the adapted model, and what does not fit is one line."""

import json

import pytest
import torch
from safetensors.torch import load_file

from optica.models import LlamaConfigTiny, LlamaModel
from optica.run.errors import ConfigError
from optica.train.adapters import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    adapters_path,
    load_adapters,
    write_adapters,
)
from optica.train.peft import Freeze, LoRA, LoRALinear

TOKENS = torch.tensor([[1, 5, 9, 17, 3]])


def base(seed: int = 0, **sizes) -> LlamaModel:
    return LlamaModel(LlamaConfigTiny(**sizes)).init_weights(seed)


def trained_lora(peft: LoRA) -> LlamaModel:
    """A base with adapters whose B is non-zero (as after training)."""
    model = base()
    peft.apply(model)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALinear):
                module.lora_b.weight.copy_(
                    torch.randn(module.lora_b.weight.shape, generator=generator)
                )
    return model


def test_adapters_path_sits_beside_the_checkpoint(tmp_path):
    assert adapters_path(tmp_path / "last.ckpt") == tmp_path / "last.adapters"
    step = tmp_path / "shapes--1.23-step=4.ckpt"
    assert adapters_path(step) == tmp_path / "shapes--1.23-step=4.adapters"


def test_lora_adapters_reload_onto_a_fresh_base(tmp_path):
    peft = LoRA(target_modules=["linear_qkv", "linear_fc2"], dim=2, alpha=4)
    model = trained_lora(peft)
    folder = write_adapters(model, peft, tmp_path / "a.adapters", base_model="org/base")
    config = json.loads((folder / ADAPTER_CONFIG).read_text())
    assert config["peft"]["kind"] == "lora" and config["base_model"] == "org/base"
    assert len(config["adapted_modules"]) == 2 * LlamaConfigTiny().num_layers
    assert all(".lora_" in key for key in load_file(folder / ADAPTER_WEIGHTS))  # base frozen
    with torch.no_grad():
        expected = model(TOKENS)
        reloaded = load_adapters(base(), folder)(TOKENS)
        plain = base()(TOKENS)
    torch.testing.assert_close(reloaded, expected, atol=0, rtol=0)
    assert not torch.allclose(plain, expected)


def test_freeze_keeps_the_unfrozen_parameters(tmp_path):
    model = base()
    peft = Freeze()  # a plain LM has no parts to freeze: everything trains
    peft.apply(model)
    folder = write_adapters(model, peft, tmp_path / "f.adapters")
    config = json.loads((folder / ADAPTER_CONFIG).read_text())
    assert config["peft"]["kind"] == "freeze" and config["adapted_modules"] == []
    assert set(load_file(folder / ADAPTER_WEIGHTS)) == set(model.state_dict())


def test_what_does_not_fit_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="is not an adapters folder"):
        load_adapters(base(), tmp_path)
    peft = LoRA(target_modules=["linear_qkv"], dim=2)
    folder = write_adapters(trained_lora(peft), peft, tmp_path / "a.adapters")
    with pytest.raises(
        ConfigError, match="does not fit LlamaModel .other shape.; is this its base"
    ):
        load_adapters(base(hidden_size=32, ffn_hidden_size=64), folder)
    config = json.loads((folder / ADAPTER_CONFIG).read_text())
    config["peft"]["rank"] = 2  # a field LoRA does not have
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="lora settings do not fit: .*'rank'"):
        load_adapters(base(), folder)
    (folder / ADAPTER_CONFIG).write_text("{not json")
    with pytest.raises(ConfigError, match="is not an optica adapter config"):
        load_adapters(base(), folder)
