"""CLIP, SigLIP and the ViT classifier against transformers: imported features and logits match
(fp32, max abs diff ≤ 1e-4) and exports reload in transformers with identical weights."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPVisionModel,
    SiglipConfig,
    SiglipModel,
    SiglipVisionModel,
    ViTForImageClassification,
)

from optica.models import CheckpointError, VisionTransformer, load_hf, save_hf
from tests.parity.vision_models import TOWER, images, make_vision, make_vit, max_diff, save

TOL = 1e-4


@pytest.fixture(params=["clip", "siglip"], scope="module")
def tower(request, tmp_path_factory):
    """A saved tiny CLIP or SigLIP tower (SigLIP with its pooling head) and its optica import."""
    path = tmp_path_factory.mktemp(request.param) / "hf"
    hf_model = make_vision(path, request.param)
    return request.param, path, hf_model, load_hf(path)


@torch.no_grad()
def test_tower_features_match_transformers(tower):
    name, _, hf_model, model = tower
    pixels = images(3)
    theirs = hf_model(pixel_values=pixels, output_hidden_states=True)
    diffs = {"last": max_diff(model(pixels), theirs.last_hidden_state)}
    for index in (-1, -2, 0):  # -2 is LLaVA's default feature layer
        diffs[index] = max_diff(model(pixels, feature_layer=index), theirs.hidden_states[index])
    all_states = model.hidden_states(pixels)
    assert len(all_states) == len(theirs.hidden_states) == TOWER["num_hidden_layers"] + 1
    diffs["all"] = max(max_diff(a, b) for a, b in zip(all_states, theirs.hidden_states))
    if name == "clip":
        diffs["pooled"] = max_diff(model.pool(model(pixels)), theirs.pooler_output)
    print(f"[parity] {name}: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    assert max(diffs.values()) <= TOL
    assert theirs.last_hidden_state.abs().max() > 0.5  # O(1) features: the bound means something
    assert max_diff(theirs.hidden_states[-1], theirs.hidden_states[-2]) > 0.1


@torch.no_grad()
def test_tower_export_reloads_in_transformers(tower, tmp_path):
    name, _, hf_model, model = tower
    out = save_hf(model, tmp_path / "export")
    model_class = {"clip": CLIPVisionModel, "siglip": SiglipVisionModel}[name]
    reloaded = model_class.from_pretrained(out).eval()
    original = {k: v for k, v in hf_model.state_dict().items() if not k.startswith("head.")}
    assert reloaded.state_dict().keys() == original.keys()  # SigLIP: exported without its head
    assert all(torch.equal(reloaded.state_dict()[k], original[k]) for k in original)
    pixels = images(2)
    diff = max_diff(reloaded(pixel_values=pixels).last_hidden_state, model(pixels))
    print(f"[parity] {name}: export max abs diff {diff:.2e}")
    assert diff <= TOL


@pytest.mark.parametrize("prefix", ["", "vision_model."], ids=["transformers5", "wrapped"])
def test_both_tower_spellings_import_the_same(tower, tmp_path, prefix):
    _, path, _, model = tower
    tensors = {prefix + k: v for k, v in load_file(path / "model.safetensors").items()}
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    again = load_hf(tmp_path)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("kind", ["clip", "siglip"])
@torch.no_grad()
def test_dual_encoder_checkpoint_imports_its_image_tower(tmp_path, kind):
    """openai/clip-vit-* and google/siglip-* are full CLIPModel / SiglipModel checkpoints."""
    text = {"vocab_size": 50, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 1, "num_attention_heads": 4}  # fmt: skip
    config_class, model_class = {"clip": (CLIPConfig, CLIPModel),
                                 "siglip": (SiglipConfig, SiglipModel)}[kind]  # fmt: skip
    hf_model = save(model_class(config_class(text_config=text, vision_config=TOWER)), tmp_path)
    model = load_hf(tmp_path)
    assert isinstance(model, VisionTransformer)
    pixels = images(2)
    theirs = hf_model.vision_model(pixel_values=pixels).last_hidden_state
    assert max_diff(model(pixels), theirs) <= TOL


@torch.no_grad()
def test_image_not_a_multiple_of_the_patch_matches_transformers(tmp_path):
    """As SigLIP-so400m (384 px in 14 px patches): pixels past the last patch are ignored."""
    hf_model = make_vision(tmp_path, "siglip", image_size=18)
    model = load_hf(tmp_path)
    pixels = torch.randn(2, 3, 18, 18)
    assert model(pixels).shape == (2, 16, TOWER["hidden_size"])
    assert max_diff(model(pixels), hf_model(pixel_values=pixels).last_hidden_state) <= TOL


def test_missing_tower_tensor_is_named(tower, tmp_path):
    _, path, _, _ = tower
    tensors = load_file(path / "model.safetensors")
    del tensors["encoder.layers.2.layer_norm2.weight"]
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as err:
        load_hf(tmp_path)
    assert "missing: vision_model.encoder.layers.2.layer_norm2.weight" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    path = tmp_path_factory.mktemp("vit") / "hf"
    hf_model = make_vit(path)
    return path, hf_model, load_hf(path)


@torch.no_grad()
def test_vit_logits_match_transformers(vit):
    _, hf_model, model = vit
    pixels = images(4)
    logits = model(pixels)
    assert logits.shape == (4, 5)
    diff = max_diff(logits, hf_model(pixel_values=pixels).logits)
    print(f"[parity] vit classifier: import max abs diff {diff:.2e}")
    assert diff <= TOL and logits.abs().max() > 0.5


@torch.no_grad()
def test_vit_export_reloads_in_transformers(vit, tmp_path):
    _, hf_model, model = vit
    reloaded = ViTForImageClassification.from_pretrained(save_hf(model, tmp_path / "out")).eval()
    original = hf_model.state_dict()
    assert reloaded.state_dict().keys() == original.keys()
    assert all(torch.equal(reloaded.state_dict()[k], original[k]) for k in original)
    assert reloaded.config.id2label == hf_model.config.id2label
    pixels = images(2)
    assert max_diff(reloaded(pixel_values=pixels).logits, model(pixels)) <= TOL
