"""Tiny Hugging Face checkpoints (model, tokenizer, image processor) and a fake Hugging Face cache,
built in the test: nothing is downloaded."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import CLIPImageProcessorPil, PreTrainedTokenizerFast

from tests.parity.hf_models import make_hf_model

# Token ids optica does not model: an export must write them back unchanged.
TOKEN_IDS = {"bos_token_id": 3, "eos_token_id": 4, "pad_token_id": 5}
SPECIALS = ["<unk>", "<pad>", "<x>", "<s>", "</s>", "<p>"]


def make_tokenizer(path: Path) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over 250 ids (the tiny models' vocabulary), saved to ``path``."""
    words = [chr(code) for code in range(ord("a"), ord("a") + 244)]
    vocab = {token: index for index, token in enumerate(SPECIALS + words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    tokenizer.save_pretrained(path)
    return tokenizer


def make_hf_dir(path: Path, kind: str = "llama", **overrides) -> torch.nn.Module:
    """A tiny random ``kind`` model with a tokenizer and an image processor, saved to ``path``."""
    model = make_hf_model(path, kind, **{**TOKEN_IDS, **overrides})
    make_tokenizer(path)
    processor = CLIPImageProcessorPil(
        size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}
    )
    processor.save_pretrained(path)
    (path / "README.md").write_text("a tiny test model\n")
    return model


def make_hf_cache(
    hub: Path, repo_id: str, source: Path, commit: str = "c0ffee" * 6 + "abcd"
) -> Path:
    """Lays ``source``'s files out as ``huggingface_hub`` caches them: blobs named by hash,
    snapshot entries linking to them, ``refs/main`` naming the commit. Returns the snapshot."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True)
    for file in sorted(source.iterdir()):
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copyfile(file, blob)
        os.symlink(os.path.relpath(blob, snapshot), snapshot / file.name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def edit_config(path: Path, **changes) -> None:
    """Rewrites ``path/config.json`` with ``changes`` (a value of None deletes the key)."""
    config = json.loads((path / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (path / "config.json").write_text(json.dumps(config))


def token_ids(batch: int = 2, length: int = 12, seed: int = 1) -> torch.Tensor:
    """Random ids [batch, length] below the tiny vocabulary size."""
    return torch.randint(0, 250, (batch, length), generator=torch.Generator().manual_seed(seed))
