"""Greedy generation of imported tiny random transformers models equals transformers'
``generate(do_sample=False)`` token for token: a Llama and a LLaVA (two images in one prompt, a
text-only prompt and an image-first prompt in the same batch), prompts of different lengths
left-padded. transformers gets the LLaVA prompts with each image written out as its
``image_seq_length`` <image> tokens, left-padded after that expansion.
"""

import pytest
import torch

from optica.generate import CausalModel, Decoding, SamplingConfig, left_pad
from optica.models import load_hf
from tests.parity.hf_models import make_hf_model
from tests.parity.vision_models import IMAGE_TOKEN, images, make_llava

IMG = -200
PAD = 0
NEW = 16


def optica_tokens(model, rows, pixels=None) -> torch.Tensor:
    ids, mask = left_pad(rows, PAD)
    decoding = Decoding(CausalModel(model), ids, mask, pixels, max_new_tokens=NEW,
                        sampling=SamplingConfig(), stop_ids=[], pad_id=PAD)  # fmt: skip
    return torch.stack(list(decoding), dim=1)


def transformers_tokens(hf_model, rows, **inputs) -> torch.Tensor:
    ids, mask = left_pad(rows, PAD)
    with torch.no_grad():
        out = hf_model.generate(input_ids=ids, attention_mask=mask.long(), max_new_tokens=NEW,
                                do_sample=False, pad_token_id=PAD, eos_token_id=None,
                                **inputs)  # fmt: skip
    return out[:, ids.shape[1] :]


@pytest.mark.parametrize("kind", ["llama", "mistral"])
def test_llama_greedy_equals_transformers(kind, tmp_path):
    hf_model = make_hf_model(tmp_path / "hf", kind)
    rows = [[5, 6, 7, 8, 9, 10, 11], [3, 4, 5], [100, 101, 102, 103, 104]]
    ours = optica_tokens(load_hf(tmp_path / "hf"), rows)
    theirs = transformers_tokens(hf_model, rows)
    print(f"[parity] {kind} greedy: {NEW} tokens x {len(rows)} rows identical")
    assert ours.unique().numel() > 5  # a real sequence, not one repeated token
    assert torch.equal(ours, theirs)


def test_llava_greedy_equals_transformers(tmp_path):
    hf_model = make_llava(tmp_path / "hf", "clip", layer=-2, strategy="default")
    model = load_hf(tmp_path / "hf")
    per_image = model.config.num_image_tokens
    rows = [[5, 17, IMG, 8, 9, IMG, 11, 12], [3, 4, 5, 6], [IMG, 21, 22, 23, 24, 25]]
    pixels = images(3)
    ours = optica_tokens(model, rows, pixels)
    written_out = [
        [t for token in row for t in ([IMAGE_TOKEN] * per_image if token == IMG else [token])]
        for row in rows
    ]
    theirs = transformers_tokens(hf_model, written_out, pixel_values=pixels)
    print(f"[parity] llava greedy: {NEW} tokens x {len(rows)} rows identical")
    assert ours.unique().numel() > 5
    assert torch.equal(ours, theirs)
