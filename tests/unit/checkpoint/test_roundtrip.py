"""Import → load → logits equal to transformers; export → ``from_pretrained`` → the same model,
config.json extras, tokenizer and image processor."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from transformers import AutoImageProcessor, AutoModelForCausalLM, AutoTokenizer

import optica
from optica.checkpoint import Manifest
from optica.models import LlamaModel, RopeScaling
from tests.unit.checkpoint.conftest import VARIANTS
from tests.unit.checkpoint.helpers import TOKEN_IDS, token_ids

TOL = 1e-4


@pytest.fixture(params=list(VARIANTS))
def imported(request, hf_dirs):
    """(optica checkpoint, transformers model, HF directory) of each variant."""
    path, hf_model = hf_dirs(request.param)
    return optica.import_ckpt(None, path), hf_model, path


@torch.no_grad()
def test_loaded_model_matches_transformers(imported):
    checkpoint, hf_model, _ = imported
    model = optica.load(checkpoint)
    assert isinstance(model, LlamaModel) and not model.training
    ids = token_ids()
    diff = (model(input_ids=ids) - hf_model(input_ids=ids).logits).abs().max().item()
    print(f"[checkpoint] {checkpoint.name}: import max abs diff {diff:.2e}")
    assert diff <= TOL


@torch.no_grad()
def test_export_loads_in_transformers_with_the_same_weights(imported):
    checkpoint, hf_model, _ = imported
    out = optica.export_ckpt(checkpoint)
    assert out == checkpoint / "hf"
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(reloaded) is type(hf_model)
    theirs, original = reloaded.state_dict(), hf_model.state_dict()
    assert theirs.keys() == original.keys()
    assert all(torch.equal(theirs[key], original[key]) for key in theirs)
    ids = token_ids()
    assert torch.equal(reloaded(input_ids=ids).logits, hf_model(input_ids=ids).logits)


def test_export_keeps_config_extras_tokenizer_and_processor(imported):
    checkpoint, _, source = imported
    out = optica.export_ckpt(checkpoint)
    config = json.loads((out / "config.json").read_text())
    assert {key: config[key] for key in TOKEN_IDS} == TOKEN_IDS
    original = json.loads((source / "config.json").read_text())
    assert config["architectures"] == original["architectures"]
    text = "abcabd"
    expected = AutoTokenizer.from_pretrained(source)(text).input_ids
    assert AutoTokenizer.from_pretrained(out)(text).input_ids == expected
    processor = AutoImageProcessor.from_pretrained(out)
    assert processor.crop_size == {"height": 16, "width": 16}
    assert (out / "README.md").read_text() == (source / "README.md").read_text()


def test_checkpoint_layout_and_manifest(llama):
    source, _ = llama
    checkpoint = optica.import_ckpt("llama", source)
    assert checkpoint == optica_models_dir() / source.name
    names = {path.name for path in checkpoint.iterdir()}
    assert {"optica_checkpoint.json", "model.yaml", "model.safetensors", "hf_config.json"} <= names
    assert {"tokenizer.json", "preprocessor_config.json", "generation_config.json"} <= names
    assert "config.json" not in names  # the folder must not pass for a Hugging Face checkpoint
    manifest = Manifest.read(checkpoint)
    assert (manifest.family, manifest.dtype, manifest.hf_config) == (
        "llama",
        "float32",
        "hf_config.json",
    )
    assert manifest.source == {"uri": str(source), "path": str(source), "revision": None}
    assert manifest.num_parameters == sum(p.numel() for p in optica.load(checkpoint).parameters())
    assert (checkpoint / "hf_config.json").read_bytes() == (source / "config.json").read_bytes()


def test_tokenizer_loads_from_the_optica_checkpoint(llama):
    source, _ = llama
    checkpoint = optica.import_ckpt("llama", source)
    ids = AutoTokenizer.from_pretrained(checkpoint)("bad").input_ids
    assert ids == AutoTokenizer.from_pretrained(source)("bad").input_ids


def test_nested_rope_scaling_survives_the_stored_config(hf_dirs):
    source, _ = hf_dirs("llama3-tied")
    model = optica.load(optica.import_ckpt(None, source))
    assert model.config.rope_scaling == RopeScaling(original_max_position_embeddings=16)
    assert model.config.rotary_base == 500000.0
    assert model.config.share_embeddings_and_output_weights and model.output_layer is None


def test_bfloat16_weights_stay_bfloat16(llama, tmp_path):
    _, hf_model = llama
    bf16 = tmp_path / "bf16"
    copy.deepcopy(hf_model).to(torch.bfloat16).save_pretrained(bf16)
    checkpoint = optica.import_ckpt("llama", bf16)
    assert Manifest.read(checkpoint).dtype == "bfloat16"
    assert {p.dtype for p in optica.load(checkpoint).parameters()} == {torch.bfloat16}
    out = optica.export_ckpt(checkpoint)
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


def optica_models_dir():
    from optica.run.home import optica_home

    return optica_home() / "models"
