"""``optica.load`` adopts the tensors it reads as the parameters (no copy), and neither import nor
load ever holds two copies of the model: measured as the kernel's resident-memory peak in a fresh
process (see ``memory_probe``), against a ~107 MB model so a second copy cannot hide in noise."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import optica
from optica.checkpoint import api
from optica.models import LlamaConfig, LlamaModel, save_hf
from tests.conftest import REPO_ROOT

# A second copy of the weights would put the peak at ≥ 2.0x; one copy measures ~1.05x.
MAX_PEAK_OVER_WEIGHTS = 1.5


def test_parameters_are_the_tensors_read_from_the_files(llama, monkeypatch):
    source, _ = llama
    checkpoint = optica.import_ckpt("llama", source)
    read = {}

    def spy(*args, **kwargs):
        read.update(api_read_weights(*args, **kwargs))
        return read

    api_read_weights = api.read_weights
    monkeypatch.setattr(api, "read_weights", spy)
    model = optica.load(checkpoint)
    params = dict(model.named_parameters())
    assert params.keys() == read.keys()
    assert all(params[key].data_ptr() == read[key].data_ptr() for key in params)


def _clear_refs_works() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _clear_refs_works(), reason="needs Linux's /proc/self/clear_refs")
def test_peak_memory_of_import_and_load_is_one_model(tmp_path):
    config = LlamaConfig(
        vocab_size=1024, hidden_size=512, ffn_hidden_size=1408, num_layers=8, num_attention_heads=8
    )
    model = LlamaModel(config).init_weights()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    save_hf(model, tmp_path / "hf")
    del model
    # NOTE: a fixed mmap threshold makes glibc return every freed tensor to the kernel at once,
    # so the resident size follows the live tensors rather than the allocator's free lists.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    probe = [sys.executable, "-m", "tests.unit.checkpoint.memory_probe"]
    result = subprocess.run(
        [*probe, str(tmp_path / "hf"), str(tmp_path / "optica")],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        check=True,
    )
    growth = json.loads(result.stdout.splitlines()[-1])
    ratios = {step: round(peak / weight_bytes, 2) for step, peak in growth.items()}
    print(f"[checkpoint] peak memory / weights ({weight_bytes / 1e6:.0f} MB): {ratios}")
    assert all(ratio < MAX_PEAK_OVER_WEIGHTS for ratio in ratios.values()), ratios
