"""A failed import or export never leaves a half-written checkpoint that looks valid, and never
damages the checkpoint it was replacing; importing twice is a no-op unless ``overwrite``."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import optica
from optica.checkpoint import CheckpointError, Manifest, weights
from tests.unit.checkpoint.helpers import token_ids


@pytest.fixture
def disk_full(monkeypatch):
    """Arms a failure of the weight writer after one shard is on disk (a full disk mid-write);
    returns the files written before it."""
    written = []
    real_save_file = weights.save_file

    def save_file_then_fail(tensors, filename, metadata=None):
        if written:
            raise OSError(28, "No space left on device")
        real_save_file(tensors, filename, metadata=metadata)
        written.append(filename)

    def arm():
        monkeypatch.setattr(weights, "MAX_SHARD_BYTES", 60_000)  # the tiny Llama → ~8 shards
        monkeypatch.setattr(weights, "save_file", save_file_then_fail)
        return written

    return arm


def leftovers(directory):
    return sorted(path.name for path in directory.iterdir()) if directory.exists() else []


def test_failed_import_leaves_nothing(llama, tmp_path, disk_full):
    source, _ = llama
    written = disk_full()
    dest = tmp_path / "out" / "model"
    with pytest.raises(CheckpointError) as err:
        optica.import_ckpt("llama", source, output_path=dest)
    assert str(err.value) == f"cannot write {dest}: No space left on device"
    assert written, "the failure was injected after a shard was written"
    assert leftovers(dest.parent) == []  # neither the output nor the temporary folder


def test_failed_overwrite_keeps_the_previous_checkpoint(llama, disk_full):
    source, hf_model = llama
    good = optica.import_ckpt("llama", source)
    before = Manifest.read(good)
    disk_full()
    with pytest.raises(CheckpointError, match="No space left on device"):
        optica.import_ckpt("llama", source, overwrite=True)
    assert Manifest.read(good) == before
    assert leftovers(good.parent) == [good.name]
    ids = token_ids()
    with torch.no_grad():
        diff = (optica.load(good)(input_ids=ids) - hf_model(input_ids=ids).logits).abs().max()
    assert diff <= 1e-4


def test_interrupt_mid_write_leaves_nothing(llama, tmp_path, monkeypatch):
    source, _ = llama

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(weights, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        optica.import_ckpt("llama", source, output_path=tmp_path / "out" / "model")
    assert leftovers(tmp_path / "out") == []


def test_corrupt_source_shard_is_named_and_nothing_written(llama, tmp_path):
    source, _ = llama
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    (sharded / "config.json").write_text((source / "config.json").read_text())
    tensors = load_file(source / "model.safetensors")
    keys = sorted(tensors)
    halves = {
        "model-00001-of-00002.safetensors": keys[:10],
        "model-00002-of-00002.safetensors": keys[10:],
    }
    for name, part in halves.items():
        save_file({key: tensors[key] for key in part}, sharded / name, metadata={"format": "pt"})
    index = {"weight_map": {key: name for name, part in halves.items() for key in part}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    corrupt = sharded / "model-00002-of-00002.safetensors"
    corrupt.write_bytes(corrupt.read_bytes()[:-100])  # truncated
    dest = tmp_path / "out" / "model"
    with pytest.raises(CheckpointError) as err:
        optica.import_ckpt("llama", sharded, output_path=dest)
    assert f"cannot read {corrupt} (corrupt or truncated?)" in str(err.value)
    assert "\n" not in str(err.value)
    assert leftovers(tmp_path / "out") == []


def test_importing_twice_is_a_no_op(llama):
    source, _ = llama
    first = optica.import_ckpt("llama", source)
    stamp = (first / "optica_checkpoint.json").stat().st_mtime_ns
    inode = first.stat().st_ino
    assert optica.import_ckpt("llama", source) == first
    assert (first / "optica_checkpoint.json").stat().st_mtime_ns == stamp
    assert first.stat().st_ino == inode


def test_overwrite_imports_again(llama):
    source, _ = llama
    first = optica.import_ckpt("llama", source)
    created = Manifest.read(first).created
    assert optica.import_ckpt("llama", source, overwrite=True) == first
    assert Manifest.read(first).created != created
    assert leftovers(first.parent) == [first.name]


def test_export_overwrite(llama):
    source, _ = llama
    checkpoint = optica.import_ckpt("llama", source)
    out = optica.export_ckpt(checkpoint)
    (out / "stale.txt").write_text("from an older export")
    with pytest.raises(CheckpointError, match=r"already exists; pass overwrite=True"):
        optica.export_ckpt(checkpoint)
    assert optica.export_ckpt(checkpoint, overwrite=True) == out
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in checkpoint.iterdir() if p.name.startswith(".")) == []
