"""Bad input gives one clear line naming what and where; a given config that disagrees with the
checkpoint is reported and the checkpoint's values are used."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, replace

import pytest
import torch
from safetensors.torch import load_file, save_file

import optica
from optica import run
from optica.checkpoint import (
    CheckpointError,
    CheckpointExistsError,
    ConfigMismatchWarning,
    UnsupportedModelError,
)
from optica.models import (
    Llama2Config7B,
    LlamaConfig,
    LlamaConfigTiny,
    LlamaModel,
    MistralConfig,
    RopeScaling,
)
from tests.unit.checkpoint.helpers import edit_config, token_ids


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


@pytest.fixture
def copy_of(llama, tmp_path):
    """A writable copy of the tiny Llama's directory."""
    source, _ = llama
    return shutil.copytree(source, tmp_path / "copy")


def test_unsupported_architecture_suggests_the_closest(copy_of):
    edit_config(copy_of, architectures=["MistralForCausalLm"], model_type="mistal")
    with pytest.raises(UnsupportedModelError) as err:
        optica.import_ckpt(None, copy_of)
    message = one_line(err)
    assert f"{copy_of}: unsupported architecture MistralForCausalLm" in message
    assert "did you mean 'MistralForCausalLM'?" in message
    assert "optica imports LlamaForCausalLM, MistralForCausalLM" in message


def test_checkpoint_of_another_family_is_refused(hf_dirs):
    source, _ = hf_dirs("mistral")
    with pytest.raises(UnsupportedModelError) as err:
        optica.import_ckpt(LlamaConfigTiny(), source)
    message = one_line(err)
    assert "holds a MistralForCausalLM ('mistral' family)" in message
    assert "the model given is a 'llama' model" in message


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("lama", "unknown model 'lama'; did you mean 'llama'?"),
        ("tiny", "size 'tiny' exists in several families; use llama:tiny, mistral:tiny"),
        ("llama:huge", "family 'llama' has no size 'huge'"),
        ("lamma:tiny", "unknown model family 'lamma'; did you mean 'llama'?"),
    ],
)
def test_bad_model_names(llama, name, message):
    source, _ = llama
    with pytest.raises(UnsupportedModelError) as err:
        optica.import_ckpt(name, source)
    assert message in one_line(err)


def test_model_argument_forms_pick_the_family(llama, tmp_path):
    source, _ = llama
    forms = [
        "llama",
        "llama:tiny",
        "LlamaConfigTiny",
        LlamaConfigTiny,
        LlamaConfigTiny(),
        LlamaModel(LlamaConfigTiny()),
        run.Config(LlamaConfigTiny),
    ]
    for index, form in enumerate(forms):
        checkpoint = optica.import_ckpt(form, source, output_path=tmp_path / f"{index}")
        assert asdict(optica.load(checkpoint).config) == asdict(LlamaConfigTiny()), form
    with pytest.raises(UnsupportedModelError, match="is not an optica model, config or family"):
        optica.import_ckpt(42, source)


def test_disagreeing_config_warns_and_the_checkpoint_wins(llama):
    source, hf_model = llama
    given = LlamaConfig(hidden_size=128, num_layers=3, make_vocab_size_divisible_by=50)
    with pytest.warns(ConfigMismatchWarning) as caught:
        checkpoint = optica.import_ckpt(given, source)
    message = str(caught[0].message)
    assert f"{source}: config.json differs from the given LlamaConfig in" in message
    assert "hidden_size (given 128, checkpoint 64)" in message
    assert "num_layers (given 3, checkpoint 2)" in message
    assert "make_vocab_size_divisible_by" not in message  # config.json has no say in it
    model = optica.load(checkpoint)
    assert (model.config.hidden_size, model.config.num_layers) == (64, 2)
    assert model.config.make_vocab_size_divisible_by == 50  # kept from the given config
    assert model.embedding.word_embeddings.weight.shape[0] == 250
    ids = token_ids()
    with torch.no_grad():
        assert (model(input_ids=ids) - hf_model(input_ids=ids).logits).abs().max() <= 1e-4


def test_matching_preset_is_kept_without_warning(llama, recwarn):
    source, _ = llama
    checkpoint = optica.import_ckpt(LlamaModel(LlamaConfigTiny()), source)
    assert type(optica.load(checkpoint).config) is LlamaConfigTiny
    assert not [w for w in recwarn if issubclass(w.category, ConfigMismatchWarning)]
    assert "sizes.LlamaConfigTiny" in (checkpoint / "model.yaml").read_text()


def test_preset_of_another_size_is_not_kept(llama):
    source, _ = llama
    with pytest.warns(ConfigMismatchWarning, match=r"Llama2Config7B in vocab_size"):
        checkpoint = optica.import_ckpt("llama2_7b", source)
    assert type(optica.load(checkpoint).config) is LlamaConfig
    assert not isinstance(optica.load(checkpoint).config, Llama2Config7B)


def test_config_json_without_a_needed_field(copy_of):
    edit_config(copy_of, hidden_size=None)
    with pytest.raises(CheckpointError) as err:
        optica.import_ckpt("llama", copy_of)
    assert one_line(err) == f"{copy_of}/config.json has no 'hidden_size'"


def test_output_taken_by_something_else(llama, hf_dirs, tmp_path):
    source, _ = llama
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointExistsError) as err:
        optica.import_ckpt("llama", source, output_path=taken)
    assert f"{taken} exists and is not an optica checkpoint" in one_line(err)
    assert (taken / "notes.txt").read_text() == "mine"
    mistral, _ = hf_dirs("mistral")
    checkpoint = optica.import_ckpt("llama", source, output_path=tmp_path / "ckpt")
    with pytest.raises(CheckpointExistsError) as err:
        optica.import_ckpt(None, mistral, output_path=checkpoint)
    assert f"{checkpoint} already holds an import of {source}" in one_line(err)


def test_importing_an_optica_checkpoint_is_refused(llama, tmp_path):
    source, _ = llama
    checkpoint = optica.import_ckpt("llama", source)
    with pytest.raises(CheckpointError, match="is already an optica checkpoint; optica.load it"):
        optica.import_ckpt("llama", checkpoint, output_path=tmp_path / "again")


def test_load_of_what_is_not_a_checkpoint(llama, tmp_path, isolated_environment):
    source, _ = llama
    with pytest.raises(CheckpointError) as err:
        optica.load(source)
    assert (
        "is not an optica checkpoint: no optica_checkpoint.json; it looks like a Hugging Face"
        in one_line(err)
    )
    with pytest.raises(CheckpointError) as err:
        optica.load("org/missing")
    message = one_line(err)
    assert str(isolated_environment / "models" / "org" / "missing") in message
    assert "import it first: optica import hf://org/missing" in message


def test_load_by_imported_name(llama, hub_cache):
    from tests.unit.checkpoint.helpers import make_hf_cache

    source, _ = llama
    make_hf_cache(hub_cache, "org/tiny", source)
    checkpoint = optica.import_ckpt("llama", "hf://org/tiny")
    for name in ("org/tiny", "hf://org/tiny"):
        assert optica.load(name).config == optica.load(checkpoint).config


def test_damaged_weights_are_named(llama):
    source, _ = llama
    checkpoint = optica.import_ckpt("llama", source)
    weights = checkpoint / "model.safetensors"
    tensors = load_file(weights)
    tensors["decoder.layers.0.mlp.linear_fc2.weight"] = torch.zeros(3, 3)
    tensors["decoder.layers.0.extra"] = torch.zeros(1)
    del tensors["decoder.final_layernorm.weight"]
    save_file(tensors, weights)
    with pytest.raises(CheckpointError) as err:
        optica.load(checkpoint)
    message = one_line(err)
    assert f"the weights in {checkpoint} do not fit the model" in message
    assert "missing: decoder.final_layernorm.weight" in message
    assert "unexpected: decoder.layers.0.extra" in message
    assert (
        "mis-shaped: decoder.layers.0.mlp.linear_fc2.weight [3, 3] (expected [64, 160])" in message
    )
    weights.write_bytes(weights.read_bytes()[:-64])
    with pytest.raises(CheckpointError, match=rf"cannot read {weights} \(corrupt or truncated\?\)"):
        optica.load(checkpoint)


def test_newer_format_and_unknown_family(llama):
    source, _ = llama
    checkpoint = optica.import_ckpt("llama", source)
    manifest = json.loads((checkpoint / "optica_checkpoint.json").read_text())
    (checkpoint / "optica_checkpoint.json").write_text(
        json.dumps({**manifest, "format_version": 99})
    )
    with pytest.raises(
        CheckpointError, match="has checkpoint format 99; this optica reads up to 1"
    ):
        optica.load(checkpoint)
    (checkpoint / "optica_checkpoint.json").write_text(json.dumps({**manifest, "family": "lama"}))
    with pytest.raises(UnsupportedModelError, match="unknown model family 'lama'; did you mean"):
        optica.load(checkpoint)


def test_unknown_export_target(llama):
    source, _ = llama
    checkpoint = optica.import_ckpt("llama", source)
    with pytest.raises(CheckpointError, match="unknown export target 'hff'; did you mean 'hf'"):
        optica.export_ckpt(checkpoint, target="hff")


def test_mistral_config_for_mistral_checkpoint(hf_dirs):
    source, _ = hf_dirs("mistral")
    with pytest.warns(ConfigMismatchWarning):
        checkpoint = optica.import_ckpt(MistralConfig(), source)
    assert optica.load(checkpoint).config.sliding_window == 5


def test_nested_config_fields_are_compared_one_by_one(hf_dirs, tmp_path):
    source, _ = hf_dirs("llama3-tied")
    config = optica.load(optica.import_ckpt(None, source)).config
    given = replace(config, rope_scaling=RopeScaling(original_max_position_embeddings=8192))
    with pytest.warns(ConfigMismatchWarning) as caught:
        checkpoint = optica.import_ckpt(given, source, output_path=tmp_path / "again")
    message = str(caught[0].message)
    assert "rope_scaling.original_max_position_embeddings (given 8192, checkpoint 16)" in message
    assert "rope_scaling.factor" not in message  # equal in both
    assert optica.load(checkpoint).config.rope_scaling.original_max_position_embeddings == 16
