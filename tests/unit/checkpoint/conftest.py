"""Tiny Hugging Face checkpoints shared by the module's tests (built once per session, read only),
and an empty Hugging Face cache per test so no test sees the machine's own."""

from __future__ import annotations

import pytest
from transformers.utils import logging as hf_logging

from tests.unit.checkpoint.helpers import make_hf_dir

VARIANTS = {
    "llama": ("llama", {}),
    "mistral": ("mistral", {"sliding_window": 5}),
    "llama3-tied": (
        "llama",
        {
            "tie_word_embeddings": True,
            "rope_parameters": {
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            },
        },
    ),
}


@pytest.fixture(autouse=True, scope="session")
def quiet_transformers():
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


@pytest.fixture(autouse=True)
def hub_cache(tmp_path, monkeypatch):
    """An empty ``$HF_HUB_CACHE`` for this test."""
    hub = tmp_path / "hf_hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    return hub


@pytest.fixture(scope="session")
def hf_dirs(tmp_path_factory):
    """Variant name → (directory, transformers model), built on first use."""
    built = {}

    def get(name: str):
        if name not in built:
            kind, overrides = VARIANTS[name]
            path = tmp_path_factory.mktemp(name) / name
            built[name] = (path, make_hf_dir(path, kind, **overrides))
        return built[name]

    return get


@pytest.fixture
def llama(hf_dirs):
    """(directory, transformers model) of the tiny Llama."""
    return hf_dirs("llama")
