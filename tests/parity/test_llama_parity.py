"""Llama and Mistral against transformers: imported logits match (fp32, max abs diff ≤ 1e-4) and
exports reload in transformers with identical weights and logits."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from optica.models import CheckpointError, LlamaModel, load_hf, save_hf
from tests.parity.hf_models import LLAMA31_SCALING, make_hf_model, token_ids

TOL = 1e-4

CASES = {
    "llama-gqa": ("llama", {}),
    "llama-mha-tied": ("llama", {"num_key_value_heads": 4, "tie_word_embeddings": True}),
    "llama-mqa-bias": (
        "llama",
        {"num_key_value_heads": 1, "attention_bias": True, "mlp_bias": True},
    ),
    "llama3-rope-scaling": (
        "llama",
        {"rope_parameters": {**LLAMA31_SCALING, "rope_theta": 500000.0}},
    ),
    "mistral-sliding-window": ("mistral", {"sliding_window": 5}),
    "mistral-tied": ("mistral", {"tie_word_embeddings": True, "sliding_window": None}),
}


@pytest.fixture(params=list(CASES), scope="module")
def case(request, tmp_path_factory):
    """A saved tiny HF model and its optica import."""
    kind, overrides = CASES[request.param]
    path = tmp_path_factory.mktemp(request.param) / "hf"
    hf_model = make_hf_model(path, kind, **overrides)
    return request.param, path, hf_model, load_hf(path)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@torch.no_grad()
def test_imported_logits_match_transformers(case):
    name, _, hf_model, model = case
    ids = token_ids(length=12)
    diff = max_diff(model(input_ids=ids), hf_model(input_ids=ids).logits)
    print(f"[parity] {name}: import max abs diff {diff:.2e}")
    assert diff <= TOL


@torch.no_grad()
def test_padding_mask_matches_transformers(case):
    _, _, hf_model, model = case
    ids = token_ids(length=10)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding
    mask[1, -4:] = 0  # right padding
    ours = model(input_ids=ids, attention_mask=mask)
    theirs = hf_model(input_ids=ids, attention_mask=mask).logits
    real = mask.bool()
    assert max_diff(ours[real], theirs[real]) <= TOL


@torch.no_grad()
def test_export_reloads_in_transformers(case, tmp_path):
    name, _, hf_model, model = case
    out = save_hf(model, tmp_path / "export")
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(reloaded) is type(hf_model)
    theirs, original = reloaded.state_dict(), hf_model.state_dict()
    assert theirs.keys() == original.keys()
    assert all(torch.equal(theirs[k], original[k]) for k in theirs)
    ids = token_ids(length=12)
    diff = max_diff(reloaded(input_ids=ids).logits, hf_model(input_ids=ids).logits)
    print(f"[parity] {name}: export max abs diff {diff:.2e}")
    assert diff == 0.0


@pytest.mark.parametrize(
    "spelling",
    [
        {"model.": "language_model.model.", "lm_head.": "language_model.lm_head."},
        {"model.": "model.language_model.", "lm_head.": "lm_head."},
    ],
    ids=["llava-hf", "transformers5-llava"],
)
@torch.no_grad()
def test_llava_spellings_import_the_same(case, tmp_path, spelling):
    _, path, hf_model, _ = case
    renamed = {}
    for key, tensor in load_file(path / "model.safetensors").items():
        prefix = next(p for p in spelling if key.startswith(p))
        renamed[spelling[prefix] + key[len(prefix) :]] = tensor
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    save_file(renamed, tmp_path / "model.safetensors", metadata={"format": "pt"})
    ids = token_ids(length=8)
    assert max_diff(load_hf(tmp_path)(input_ids=ids), hf_model(input_ids=ids).logits) <= TOL


def copy_with(path, dest, edit):
    """Copies the HF checkpoint in ``path`` to ``dest`` with its tensors edited by ``edit``."""
    dest.mkdir()
    (dest / "config.json").write_text((path / "config.json").read_text())
    tensors = load_file(path / "model.safetensors")
    edit(tensors)
    save_file(tensors, dest / "model.safetensors", metadata={"format": "pt"})
    return dest


def test_missing_tensor_is_named(tmp_path, case):
    _, path, _, _ = case
    bad = copy_with(path, tmp_path / "bad", lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(CheckpointError) as err:
        load_hf(bad)
    message = str(err.value)
    assert "\n" not in message
    assert "missing: model.layers.1.mlp.up_proj.weight" in message
    assert str(bad) in message


def test_misshaped_and_unexpected_tensors_are_named(tmp_path, case):
    _, path, _, _ = case

    def edit(tensors):
        tensors["model.layers.0.self_attn.k_proj.weight"] = torch.zeros(3, 64)
        tensors["model.layers.0.self_attn.extra.weight"] = torch.zeros(1)

    with pytest.raises(CheckpointError) as err:
        load_hf(copy_with(path, tmp_path / "bad", edit))
    message = str(err.value)
    assert "\n" not in message
    assert "mis-shaped: model.layers.0.self_attn.k_proj.weight [3, 64] (expected [" in message
    assert "unexpected: model.layers.0.self_attn.extra.weight" in message


def test_dtype_on_import_and_export(tmp_path, case):
    _, path, hf_model, _ = case
    model = load_hf(path, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    out = save_hf(model, tmp_path / "bf16")
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16)
    for key, tensor in hf_model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], tensor.to(torch.bfloat16)), key


def test_sharded_export_reloads(tmp_path):
    hf_model = make_hf_model(tmp_path / "hf")
    model = load_hf(tmp_path / "hf")
    out = save_hf(model, tmp_path / "export", max_shard_bytes=100_000)
    assert len(list(out.glob("model-*-of-*.safetensors"))) > 1
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    ids = token_ids()
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=ids).logits, hf_model(input_ids=ids).logits)
    assert isinstance(load_hf(out), LlamaModel)
