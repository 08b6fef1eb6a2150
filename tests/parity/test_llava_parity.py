"""LLaVA against transformers' ``LlavaForConditionalGeneration``, with a CLIP tower and with a
SigLIP tower (GQA language model in both): several images in one sample and a text-only sample in
the same batch give the same logits over the expanded sequence (fp32, max abs diff ≤ 1e-4), every
key spelling in the wild imports, and exports reload in transformers with identical weights.

transformers expects each image already written out as ``image_seq_length`` <image> tokens;
``hf_inputs`` builds that from optica's -200 placeholders with plain loops.
"""

from __future__ import annotations

import dataclasses
import fnmatch

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import LlavaForConditionalGeneration

from optica.models import IMAGE_TOKEN_INDEX, LlavaModel, family_for_config, load_hf, save_hf
from tests.parity.vision_models import hf_inputs, images, make_llava, max_diff

TOL = 1e-4
IMG = IMAGE_TOKEN_INDEX
# Row 0: two images in one sample; row 1: text only; row 2: an image first, then text.
INPUT_IDS = torch.tensor(
    [
        [5, 17, IMG, 8, 9, IMG, 11, 12],
        [3, 4, 5, 6, 7, 8, 9, 10],
        [IMG, 21, 22, 23, 24, 25, 26, 27],
    ]
)

CASES = {
    "clip-layer-2": ("clip", {"layer": -2, "strategy": "default"}),
    "siglip-layer-1": ("siglip", {"layer": -1, "strategy": "full"}),
    "clip-keep-cls": ("clip", {"layer": -3, "strategy": "full"}),
}


@pytest.fixture(params=list(CASES), scope="module")
def case(request, tmp_path_factory):
    kind, kwargs = CASES[request.param]
    path = tmp_path_factory.mktemp(request.param) / "hf"
    hf_model = make_llava(path, kind, **kwargs)
    return request.param, path, hf_model, load_hf(path)


def compare(model: LlavaModel, hf_model: torch.nn.Module) -> float:
    """Max abs logit difference over the real (unpadded) expanded positions."""
    pixels = images(3)
    ids, mask = hf_inputs(INPUT_IDS, model.config.num_image_tokens)
    with torch.no_grad():
        ours = model(input_ids=INPUT_IDS, images=pixels)
        theirs = hf_model(input_ids=ids, pixel_values=pixels, attention_mask=mask).logits
    assert ours.shape == theirs.shape
    assert theirs[mask.bool()].abs().max() > 0.5  # O(1) logits: the bound means something
    return max_diff(ours[mask.bool()], theirs[mask.bool()])


def test_imported_logits_match_transformers(case):
    name, _, hf_model, model = case
    diff = compare(model, hf_model)
    print(f"[parity] llava {name}: import max abs diff {diff:.2e}")
    assert diff <= TOL


def test_export_reloads_in_transformers(case, tmp_path):
    name, _, hf_model, model = case
    reloaded = LlavaForConditionalGeneration.from_pretrained(save_hf(model, tmp_path / "out"))
    original = {k: v for k, v in hf_model.state_dict().items() if ".vision_tower.head." not in k}
    theirs = reloaded.state_dict()
    assert theirs.keys() == original.keys()  # a SigLIP tower is exported without its head
    assert all(torch.equal(theirs[k], original[k]) for k in original)
    diff = compare(model, reloaded.eval())
    print(f"[parity] llava {name}: export max abs diff {diff:.2e}")
    assert diff <= TOL


SPELLINGS = {
    # llava-hf's original files (transformers 4.x).
    "llava-hf": {"vision_tower.": "vision_tower.vision_model."},
    # What transformers 5.x holds in memory.
    "transformers5-memory": {
        "vision_tower.": "model.vision_tower.",
        "multi_modal_projector.": "model.multi_modal_projector.",
        "language_model.model.": "model.language_model.",
        "language_model.lm_head.": "lm_head.",
    },
}


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_every_spelling_imports_the_same(case, tmp_path, spelling):
    """transformers 5.x saves ``vision_tower.*`` (no wrapper) and ``language_model.model.*``;
    the other spellings are renamings of that file."""
    _, path, _, model = case
    renames = SPELLINGS[spelling]
    tensors = {}
    for key, tensor in load_file(path / "model.safetensors").items():
        old = next((p for p in renames if key.startswith(p)), "")
        tensors[renames.get(old, "") + key[len(old) :]] = tensor
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    again = load_hf(tmp_path)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in model.state_dict().items())


def test_config_round_trips_through_config_json(case):
    _, _, _, model = case
    adapter = family_for_config(model.config).hf_adapter
    written = adapter.config_to_hf(model.config)
    assert dataclasses.asdict(adapter.config_from_hf(written)) == dataclasses.asdict(model.config)


def test_megatron_names_match_the_seed_lora_patterns(case):
    """Inside the training module the model is an attribute (``model.``), as in NeMo, so the
    seed's ``*.language_model.*.linear_qkv`` selects exactly the language model's qkv layers."""
    _, _, _, model = case
    names = ["model." + name for name, _ in model.named_modules()]
    qkv = fnmatch.filter(names, "*.language_model.*.linear_qkv")
    assert qkv == [
        f"model.language_model.decoder.layers.{i}.self_attention.linear_qkv"
        for i in range(model.config.language_transformer_config.num_layers)
    ]
    assert fnmatch.filter(names, "*.vision_model.*.linear_qkv")  # the tower is named alike
    assert "model.vision_projection.linear_fc1" in names
