"""LoRA: seed patterns verbatim, only adapters train, exact start, merge equals adapted."""

import pytest
import torch
from torch import nn

from optica.models import LlamaConfigTiny, LlamaModel
from optica.run.errors import ConfigError
from optica.train.peft import LoRA, LoRALinear, adapter_state_dict, freeze, merge_lora


class TinyVLM(nn.Module):
    """The names optica's LLaVA uses, around a real tiny Llama."""

    def __init__(self):
        super().__init__()
        self.vision_model = nn.Sequential(nn.Linear(6, 6))
        self.vision_projection = nn.Linear(6, 6)
        self.language_model = LlamaModel(LlamaConfigTiny())
        self.language_model.init_weights(seed=0)

    def forward(self, ids):
        return self.language_model(input_ids=ids)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return TinyVLM()


def ids():
    return torch.randint(0, 100, (2, 7), generator=torch.Generator().manual_seed(1))


def test_seed_pattern_matches_verbatim_and_only_qkv(model):
    names = LoRA(target_modules=["*.language_model.*.linear_qkv"], dim=4).apply(model)
    layers = len(model.language_model.decoder.layers)
    assert names == [
        f"language_model.decoder.layers.{i}.self_attention.linear_qkv" for i in range(layers)
    ]


def test_default_adapts_every_language_linear_and_trains_only_adapters_and_vision(model):
    names = LoRA(dim=4).apply(model)
    assert {n.rsplit(".", 1)[-1] for n in names} == {
        "linear_qkv",
        "linear_proj",
        "linear_fc1",
        "linear_fc2",
    }
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(
        ".lora_" in n or n.startswith(("vision_model", "vision_projection")) for n in trainable
    )
    assert any(".lora_a." in n for n in trainable) and any(".lora_b." in n for n in trainable)
    assert set(adapter_state_dict(model)) == set(trainable)


def test_adapted_model_starts_at_the_base_output_and_keeps_names(model):
    before_names = set(model.state_dict())
    before = model(ids())
    LoRA(dim=4, dropout=0.1).apply(model)
    model.eval()
    assert torch.equal(model(ids()), before)
    after_names = set(model.state_dict())
    assert before_names <= after_names
    assert all(".lora_" in n for n in after_names - before_names)


def test_merge_gives_the_adapted_outputs_with_plain_linears(model):
    LoRA(dim=4, alpha=8).apply(model)
    for module in model.modules():
        if isinstance(module, LoRALinear):
            nn.init.normal_(module.lora_b.weight, std=0.5)
    adapted = model(ids())
    merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert not any(".lora_" in n for n in model.state_dict())
    torch.testing.assert_close(model(ids()), adapted, atol=1e-5, rtol=1e-5)


def test_a_training_step_moves_only_adapters(model):
    LoRA(dim=4, freeze_vision_model=True, freeze_vision_projection=True).apply(model)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        model(ids()).float().pow(2).mean().backward()
        optimizer.step()
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    lora_b = model.language_model.decoder.layers[0].self_attention.linear_qkv.lora_b.weight
    assert lora_b.abs().sum() > 0


def test_plain_language_model_is_frozen_whole(model):
    lm = model.language_model
    LoRA(target_modules=["linear_fc2"], dim=2).apply(lm)
    assert all(".lora_" in n for n, p in lm.named_parameters() if p.requires_grad)


def test_mistakes_are_one_line(model):
    with pytest.raises(ConfigError, match="match no linear layer"):
        LoRA(target_modules=["*.nothing.*"]).apply(model)
    with pytest.raises(ConfigError, match="has no 'vision_model'"):
        freeze(model.language_model, vision_model=True)
    with pytest.raises(ConfigError, match="dim must be >= 1"):
        LoRA(dim=0)
