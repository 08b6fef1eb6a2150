"""Declarative key maps: expansion, spellings, every kind of mismatch named in one line."""

from __future__ import annotations

import pytest
import torch

from optica.models import CheckpointError
from optica.models.hf import Concat, FuseQKV, KeyMap, PadVocab, Rule
from optica.models.hf.problems import fold_keys

RULES = [
    Rule("embed.weight", ("model.embed.weight",), PadVocab(5, 8)),
    Rule("layers.{layer}.qkv.weight", tuple(f"model.h.{{layer}}.{n}.weight" for n in "qkv"),
         FuseQKV(2, 1)),
    Rule("layers.{layer}.fc1.weight", ("model.h.{layer}.gate.weight", "model.h.{layer}.up.weight"),
         Concat((3, 3))),
]  # fmt: skip
ALIASES = {"model.": ("language_model.model.", "model.language_model.")}
EXPECTED = {
    "embed.weight": torch.Size([8, 4]),
    **{f"layers.{i}.qkv.weight": torch.Size([8, 4]) for i in range(2)},
    **{f"layers.{i}.fc1.weight": torch.Size([6, 4]) for i in range(2)},
}


def keymap() -> KeyMap:
    return KeyMap.from_templates(
        RULES, num_layers=2, prefix_aliases=ALIASES, ignore=("*.inv_freq",)
    )


def hf_state(prefix: str = "model.") -> dict[str, torch.Tensor]:
    state = {f"{prefix}embed.weight": torch.randn(5, 4)}
    for i in range(2):
        for name, rows in (("q", 4), ("k", 2), ("v", 2), ("gate", 3), ("up", 3)):
            state[f"{prefix}h.{i}.{name}.weight"] = torch.randn(rows, 4)
    return state


def test_round_trip_with_vocab_padding():
    state = hf_state()
    ours = keymap().to_optica(state, EXPECTED)
    assert {k: v.shape for k, v in ours.items()} == EXPECTED
    assert ours["embed.weight"][5:].abs().sum() == 0  # padded rows are zeros
    back = keymap().to_hf(ours)
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)


@pytest.mark.parametrize("prefix", ["language_model.model.", "model.language_model."])
def test_alternative_spellings_are_accepted(prefix):
    state = hf_state(prefix)
    ours = keymap().to_optica(state, EXPECTED)
    assert torch.equal(ours["embed.weight"][:5], state[f"{prefix}embed.weight"])


def test_every_problem_named_in_one_line():
    state = hf_state()
    for i in range(2):
        del state[f"model.h.{i}.up.weight"]
    state["model.h.0.q.weight"] = torch.randn(3, 4)
    state["model.h.1.bogus"] = torch.randn(1)
    state["model.h.1.rotary.inv_freq"] = torch.randn(2)  # ignored
    state["language_model.model.embed.weight"] = torch.randn(5, 4)  # same tensor twice
    with pytest.raises(CheckpointError) as err:
        keymap().to_optica(state, EXPECTED, where="/ckpt")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("/ckpt does not fit the model: ")
    assert "missing: model.h.{0-1}.up.weight" in message
    assert "mis-shaped: model.h.0.q.weight [3, 4] (expected [4, 4])" in message
    assert "unexpected: model.h.1.bogus" in message
    assert "given twice: model.embed.weight / language_model.model.embed.weight" in message
    assert "inv_freq" not in message


def test_model_keys_without_a_rule_are_reported():
    expected = {**EXPECTED, "extra.weight": torch.Size([1])}
    with pytest.raises(CheckpointError, match=r"no conversion rule for: extra\.weight"):
        keymap().to_optica(hf_state(), expected)


def test_export_refuses_tensors_without_hf_names():
    ours = keymap().to_optica(hf_state(), EXPECTED)
    ours["layers.0.qkv.lora_A.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="merge LoRA adapters first"):
        keymap().to_hf(ours)


def test_rebased_and_merged_maps_compose():
    inner = keymap().rebased(
        optica_prefix="language_model.",
        hf_prefixes={"model.": "model.language_model."},
        prefix_aliases={"model.language_model.": ("language_model.model.",)},
    )
    other = KeyMap.from_templates([Rule("proj.weight", ("model.proj.weight",))], num_layers=0)
    merged = inner.merged(other)
    state = {**hf_state("language_model.model."), "model.proj.weight": torch.randn(2, 2)}
    expected = {"language_model." + k: v for k, v in EXPECTED.items()}
    expected["proj.weight"] = torch.Size([2, 2])
    ours = merged.to_optica(state, expected)
    assert set(ours) == set(expected)
    assert "model.language_model.h.1.up.weight" in merged.to_hf(ours)


def test_fold_keys():
    keys = ["a.1.x", "a.0.x", "a.2.x", "a.5.x", "b", "c.3.y"]
    assert fold_keys(keys) == ["a.{0-2,5}.x", "b", "c.3.y"]


def test_rules_for_tensors_the_model_lacks_are_reported():
    expected = {k: v for k, v in EXPECTED.items() if k != "embed.weight"}
    with pytest.raises(CheckpointError, match="rules for tensors the model lacks: embed.weight"):
        keymap().to_optica(hf_state(), expected)


class CountingState(dict):
    """A state dict that knows shapes without reading and counts tensor reads."""

    reads = 0

    def shape(self, key):
        return super().__getitem__(key).shape

    def __getitem__(self, key):
        type(self).reads += 1
        return super().__getitem__(key)


def test_nothing_is_read_when_the_checkpoint_does_not_fit():
    state = CountingState(hf_state())
    state["model.h.1.q.weight"] = torch.randn(1, 4)
    with pytest.raises(CheckpointError, match="mis-shaped"):
        keymap().to_optica(state, EXPECTED)
    assert CountingState.reads == 0
