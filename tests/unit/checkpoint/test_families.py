"""Every registered family goes through the checkpoint code, which names none: a tiny model saves
and loads bit-exactly, and a Hugging Face directory written by the family's own adapter comes back
out of import → export with the same tensors and config.json."""

from __future__ import annotations

import json

import pytest
import torch

import optica
from optica.checkpoint import Manifest, save
from optica.models import UnsupportedModelError, families, save_hf
from optica.models.hf import read_hf_state_dict

TINY = [family for family in families() if "tiny" in family.sizes]
CONVERTIBLE = [family for family in TINY if family.hf_adapter is not None]


def tiny(family):
    return family.build(family.size("tiny")).init_weights(seed=0)


@pytest.mark.parametrize("family", TINY, ids=lambda family: family.name)
def test_save_and_load_are_exact(family, tmp_path):
    model = tiny(family)
    loaded = optica.load(save(model, tmp_path / "ckpt"))
    assert type(loaded) is type(model) and loaded.config == model.config
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[key], theirs[key]) for key in ours)


@pytest.mark.parametrize("family", CONVERTIBLE, ids=lambda family: family.name)
def test_import_then_export_gives_back_the_same_files(family, tmp_path):
    try:
        source = save_hf(tiny(family), tmp_path / "hf")
    except UnsupportedModelError as err:
        pytest.skip(f"the family's adapter cannot write its tiny size: {err}")
    checkpoint = optica.import_ckpt(None, source)  # the family is found from config.json
    assert Manifest.read(checkpoint).family == family.name
    out = optica.export_ckpt(checkpoint)
    original, exported = read_hf_state_dict(source), read_hf_state_dict(out)
    assert sorted(original) == sorted(exported)
    assert all(torch.equal(original[key], exported[key]) for key in original)
    config = json.loads((out / "config.json").read_text())
    assert config == json.loads((source / "config.json").read_text())
