"""The checkpoint format itself: lossless configs for every registered size, sharded weights,
``save`` for models that were not imported, and a fast ``import optica``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

import optica
from optica.checkpoint import CheckpointError, CheckpointExistsError, Manifest, save
from optica.checkpoint.layout import config_to_yaml, read_config
from optica.checkpoint.weights import write_weights
from optica.models import LlamaConfigTiny, LlamaModel, MistralConfigTiny, families
from optica.run.errors import OpticaError
from tests.conftest import REPO_ROOT
from tests.unit.checkpoint.helpers import token_ids

SIZES = [(f.name, size, factory) for f in families() for size, factory in f.sizes.items()]


@pytest.mark.parametrize(
    ("family", "size", "factory"), SIZES, ids=[f"{f}-{s}" for f, s, _ in SIZES]
)
def test_every_registered_size_round_trips(family, size, factory, tmp_path):
    config = factory()
    (tmp_path / "model.yaml").write_text(config_to_yaml(config))
    back = read_config(tmp_path)
    assert type(back) is type(config) and back == config


def tiny_model(config=None, seed=0) -> LlamaModel:
    return LlamaModel(config or LlamaConfigTiny()).init_weights(seed)


@torch.no_grad()
def test_sharded_weights_load_the_same_model(tmp_path):
    model = tiny_model()
    path = save(model, tmp_path / "ckpt", max_shard_bytes=50_000)
    shards = sorted(p.name for p in path.glob("model-*-of-*.safetensors"))
    assert len(shards) > 2 and (path / "model.safetensors.index.json").is_file()
    ids = token_ids()
    assert torch.equal(optica.load(path)(input_ids=ids), model(input_ids=ids))


@torch.no_grad()
def test_saved_model_exports_without_an_imported_config(tmp_path):
    model = tiny_model(MistralConfigTiny())
    path = save(model, tmp_path / "ckpt")
    manifest = Manifest.read(path)
    assert (manifest.family, manifest.hf_config, manifest.source, manifest.assets) == (
        "mistral",
        None,
        None,
        (),
    )
    reloaded = AutoModelForCausalLM.from_pretrained(optica.export_ckpt(path)).eval()
    assert type(reloaded).__name__ == "MistralForCausalLM"
    ids = token_ids()
    assert (reloaded(input_ids=ids).logits - model(input_ids=ids)).abs().max() <= 1e-4


def test_save_carries_config_and_tokenizer_from_the_starting_checkpoint(llama, tmp_path):
    source, _ = llama
    imported = optica.import_ckpt("llama", source)
    tuned = optica.load(imported)
    with torch.no_grad():
        tuned.decoder.final_layernorm.weight.mul_(2)  # stands in for fine-tuning
    path = save(tuned, tmp_path / "tuned", carry_from=imported)
    assert Manifest.read(path).assets == Manifest.read(imported).assets
    out = optica.export_ckpt(path)
    assert json.loads((out / "config.json").read_text())["bos_token_id"] == 3
    assert (out / "tokenizer.json").is_file()
    weight = AutoModelForCausalLM.from_pretrained(out).model.norm.weight
    assert torch.equal(weight, tuned.decoder.final_layernorm.weight)


def test_save_refuses_to_overwrite_and_tied_tensors(tmp_path):
    path = save(tiny_model(), tmp_path / "ckpt")
    with pytest.raises(CheckpointExistsError, match="already exists; pass overwrite=True"):
        save(tiny_model(), path)
    save(tiny_model(seed=1), path, overwrite=True)
    shared = torch.zeros(4, 4)
    with pytest.raises(CheckpointError, match="a and b are the same tensor .tied weights."):
        write_weights(tmp_path, {"a": shared, "b": shared})
    with pytest.raises(CheckpointError, match=r"LlamaModel has no weights yet \(meta device\)"):
        save(LlamaModel(LlamaConfigTiny()), tmp_path / "lazy")
    with pytest.raises(CheckpointError, match=r"cannot carry files from .*nowhere"):
        save(tiny_model(), tmp_path / "carried", carry_from=tmp_path / "nowhere")
    assert not (tmp_path / "lazy").exists() and not (tmp_path / "carried").exists()


def test_views_of_one_tensor_are_written_apart(tmp_path):
    fused = torch.arange(12.0).view(4, 3)
    first, second = fused.split([3, 1])
    write_weights(tmp_path, {"first": first, "second": second})
    from safetensors.torch import load_file

    loaded = load_file(tmp_path / "model.safetensors")
    assert torch.equal(loaded["first"], first) and torch.equal(loaded["second"], second)


def test_damaged_manifest_and_config(tmp_path):
    path = save(tiny_model(), tmp_path / "ckpt")
    (path / "model.yaml").write_text("_target_: os.system\n_args_: [echo hacked]\n")
    with pytest.raises(OpticaError, match="refusing to import .os.system."):
        optica.load(path)
    (path / "model.yaml").unlink()
    with pytest.raises(CheckpointError, match="has no model.yaml or model.json; the checkpoint"):
        optica.load(path)
    (path / "optica_checkpoint.json").write_text(json.dumps({"format": "optica-checkpoint"}))
    with pytest.raises(CheckpointError, match="is not an optica checkpoint manifest"):
        optica.load(path)


def test_import_optica_is_fast_and_lazy():
    code = (
        "import sys, optica; "
        "assert 'torch' not in sys.modules, 'import optica imported torch'; "
        "assert {'import_ckpt', 'export_ckpt', 'load'} <= set(dir(optica)); "
        "print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert result.stdout.strip() == "ok", result.stderr
    from optica import checkpoint

    assert (optica.load, optica.import_ckpt, optica.export_ckpt) == (
        checkpoint.load,
        checkpoint.import_ckpt,
        checkpoint.export_ckpt,
    )
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        optica.nothing  # noqa: B018
