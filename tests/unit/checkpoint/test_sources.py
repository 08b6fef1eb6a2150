"""``hf://`` sources resolve from the local Hugging Face cache only (wherever the environment puts
it), local directories are read in place, and a missing model fails at once, naming where it
looked."""

from __future__ import annotations

import time

import pytest

import optica
from optica.checkpoint import CheckpointError, Manifest, SourceNotFoundError, parse_source
from optica.checkpoint.sources import hub_cache_dir
from tests.unit.checkpoint.helpers import make_hf_cache

REPO = "tiny-org/tiny-llama"


def test_hf_source_imports_from_the_cache_into_optica_home(llama, hub_cache, isolated_environment):
    source, _ = llama
    snapshot = make_hf_cache(hub_cache, REPO, source)
    checkpoint = optica.import_ckpt("llama", f"hf://{REPO}")
    assert checkpoint == isolated_environment / "models" / "tiny-org" / "tiny-llama"
    manifest = Manifest.read(checkpoint)
    assert manifest.source == {
        "uri": f"hf://{REPO}",
        "path": str(snapshot),
        "revision": snapshot.name,
    }
    # Snapshot entries are links into blobs/: the checkpoint holds the contents.
    tokenizer = checkpoint / "tokenizer.json"
    assert not tokenizer.is_symlink()
    assert tokenizer.read_bytes() == (source / "tokenizer.json").read_bytes()


@pytest.mark.parametrize("variable", ["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG"])
def test_cache_location_follows_the_environment(variable, tmp_path, monkeypatch):
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    expected = {
        "HF_HUB_CACHE": ("HF_HUB_CACHE", tmp_path, tmp_path),
        "HUGGINGFACE_HUB_CACHE": ("HUGGINGFACE_HUB_CACHE", tmp_path, tmp_path),
        "HF_HOME": ("HF_HOME", tmp_path, tmp_path / "hub"),
        "XDG": ("XDG_CACHE_HOME", tmp_path, tmp_path / "huggingface" / "hub"),
    }
    name, value, cache = expected[variable]
    monkeypatch.setenv(name, str(value))
    assert hub_cache_dir() == cache


def test_revision_by_ref_or_commit(llama, hub_cache):
    source, _ = llama
    first = make_hf_cache(hub_cache, REPO, source, commit="a" * 40)
    second = make_hf_cache(hub_cache, REPO, source, commit="b" * 40)  # refs/main → b
    (hub_cache / f"models--{REPO.replace('/', '--')}" / "refs" / "v1").write_text(first.name)
    assert parse_source(f"hf://{REPO}").locate().path == second
    assert parse_source(f"hf://{REPO}@v1").locate().path == first
    assert parse_source(f"hf://{REPO}@{'a' * 40}").locate().path == first
    with pytest.raises(SourceNotFoundError, match=r"revision 'v2' is not in the cache .*aaaa"):
        parse_source(f"hf://{REPO}@v2").locate()


def test_missing_model_fails_at_once_naming_the_cache_folder(hub_cache):
    start = time.monotonic()
    with pytest.raises(SourceNotFoundError) as err:
        optica.import_ckpt("llama", "hf://nobody/nothing")
    assert time.monotonic() - start < 5  # a hub lookup would retry for ~46 s
    message = str(err.value)
    assert "\n" not in message
    assert "hf://nobody/nothing: not in the local Hugging Face cache" in message
    assert str(hub_cache / "models--nobody--nothing") in message


def test_incomplete_snapshot_is_named(llama, hub_cache):
    source, _ = llama
    snapshot = make_hf_cache(hub_cache, REPO, source)
    (snapshot / "config.json").unlink()
    with pytest.raises(SourceNotFoundError, match=r"has no config.json \(an incomplete download"):
        optica.import_ckpt("llama", f"hf://{REPO}")


def test_local_sources(tmp_path, llama):
    source, _ = llama
    assert parse_source(source).directory == source
    assert parse_source(f"hf://{source}").directory == source  # hf:// of a path is that path
    assert parse_source("hf://org/name@main").repo_id == "org/name"
    assert parse_source("hf://gpt2").default_output.parts[-2:] == ("models", "gpt2")
    with pytest.raises(SourceNotFoundError, match=r"source directory .*nowhere does not exist"):
        optica.import_ckpt("llama", tmp_path / "nowhere")
    (tmp_path / "file").write_text("")
    with pytest.raises(SourceNotFoundError, match="is not a directory"):
        optica.import_ckpt("llama", tmp_path / "file")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("s3://bucket/model", "scheme s3:// is not read"),
        ("hf://a/b/c", "is not a Hugging Face model id"),
        ("hf://org/../x", "is not a Hugging Face model id"),
        ("hf://org/name@../../x", "is not a revision name"),
    ],
)
def test_malformed_sources(text, message):
    with pytest.raises(CheckpointError, match=message):
        parse_source(text)
