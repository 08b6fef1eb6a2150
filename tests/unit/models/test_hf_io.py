"""Reading and writing Hugging Face checkpoint directories; bad files give one clear line."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from optica.models import CheckpointError, UnsupportedModelError, load_hf
from optica.models.hf.io import read_hf_config, read_hf_state_dict, write_hf_checkpoint

TENSORS = {"a.weight": torch.arange(6.0).view(2, 3), "b.bias": torch.ones(4)}


def test_single_file_and_sharded_round_trip(tmp_path):
    for name, shard_bytes in (("single", 10**9), ("sharded", 30)):
        out = write_hf_checkpoint(tmp_path / name, {"x": 1}, TENSORS, max_shard_bytes=shard_bytes)
        state = read_hf_state_dict(out)
        assert sorted(state) == sorted(TENSORS) and len(state) == 2
        assert all(torch.equal(state[k], v) for k, v in TENSORS.items())
        assert read_hf_config(out) == {"x": 1}
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    assert not (tmp_path / "single" / "model.safetensors.index.json").exists()


def test_views_of_one_tensor_are_written_separately(tmp_path):
    fused = torch.arange(12.0).view(4, 3)
    q, k = fused.split([3, 1])
    out = write_hf_checkpoint(tmp_path, {}, {"q": q, "k": k})
    assert torch.equal(read_hf_state_dict(out)["k"], k)


def test_pytorch_bin_files_are_read(tmp_path):
    torch.save(TENSORS, tmp_path / "pytorch_model.bin")
    assert torch.equal(read_hf_state_dict(tmp_path)["b.bias"], TENSORS["b.bias"])


def test_truncated_safetensors_is_named(tmp_path):
    save_file(TENSORS, tmp_path / "model.safetensors")
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) - 20])
    with pytest.raises(CheckpointError, match=r"cannot read .*model\.safetensors \(corrupt"):
        dict(read_hf_state_dict(tmp_path))


def test_missing_files_are_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"config\.json not found"):
        read_hf_config(tmp_path)
    with pytest.raises(CheckpointError, match="no model.safetensors or pytorch_model.bin found"):
        read_hf_state_dict(tmp_path)
    index = {"weight_map": {"a.weight": "model-00001-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="listed in the index but does not exist"):
        read_hf_state_dict(tmp_path)


def test_unsupported_architecture_and_activation(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(UnsupportedModelError, match="BertModel"):
        load_hf(tmp_path)
    gelu = {"architectures": ["LlamaForCausalLM"], "hidden_act": "gelu"}
    (tmp_path / "config.json").write_text(json.dumps(gelu))
    with pytest.raises(UnsupportedModelError, match="hidden_act='gelu' is not supported"):
        load_hf(tmp_path)
