"""Throughput/MFU: the FLOPs and rate arithmetic against values worked out by hand, and a tiny
training run that logs the metrics (CSV) and prints the summary."""

import csv

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from optica.autoconfig.shapes import LanguageShape, ModelShape, ProjectorShape, VisionShape
from optica.autoconfig.training import Training
from optica.models import LlamaConfigTiny, LlamaModel, LlavaConfigTiny, LlavaModel
from optica.run.errors import ConfigError
from optica.train.api import pretrain
from optica.train.exp_manager import ExpManager
from optica.train.peft import LoRA, freeze
from optica.train.throughput import (
    PREFIX,
    ThroughputConfig,
    Work,
    batch_work,
    model_shape,
    rates,
    training_of,
)
from optica.train.trainer import TrainerConfig

# ViT: h=64, f=128, 4 heads of 16, 2 layers, 32 px in 8 px patches → 16 patches + class = 17.
VIT = ModelShape(
    name="vit",
    vision=VisionShape(hidden_size=64, ffn_hidden_size=128, num_layers=2, num_attention_heads=4,
                       image_size=32, patch_size=8),
    num_classes=10,
)  # fmt: skip
# VLM: Llama h=16, f=32 (gated), 2 heads of 8, 1 layer, V=100; tower h=8, f=16, 1 head, 1 layer,
# 8 px in 4 px patches (4 + class token; 4 image tokens); mlp2x_gelu projector 8 → 16.
VLM = ModelShape(
    name="vlm",
    language=LanguageShape(hidden_size=16, ffn_hidden_size=32, num_layers=1,
                           num_attention_heads=2, vocab_size=100, seq_length=64),
    vision=VisionShape(hidden_size=8, ffn_hidden_size=16, num_layers=1, num_attention_heads=1,
                       image_size=8, patch_size=4),
    projector=ProjectorShape(8, 16),
)  # fmt: skip


def test_vit_batch_flops_match_the_hand_count():
    # Per token and layer: qkv 2·64·12·16 = 24576, scores+sum 2·2·17·4·16 = 4352,
    # proj 2·64·64 = 8192, MLP 2·64·128·2 = 32768 → 69888; × 17 tokens × 2 layers × 3 passes
    # = 7128576. Patches 3 × 2·16·3·64·64 = 1179648; head 3 × 2·64·10 = 3840.
    per_sample = 7_128_576 + 1_179_648 + 3_840
    batch = {"images": torch.zeros(2, 3, 32, 32), "labels": torch.zeros(2, dtype=torch.long)}
    work = batch_work(VIT, batch, Training())
    assert work == Work(samples=2, tokens=34, flops=2 * per_sample)


def test_vlm_batch_flops_count_the_spliced_sequence_and_each_image():
    # 6 ids with one image each → 6 + 3 = 9 tokens. Language per token: qkv 2·16·6·8 = 1536,
    # causal attention 2·2·9·2·8·0.5 = 288, proj 2·16·16 = 512, MLP 2·16·32·3 = 3072 → 5408;
    # × 9 × 3 passes = 146016; output layer 2·16·100·9 × 3 = 86400. Per image (tower frozen):
    # patches 2·4·3·16·8 = 3072 + layer (384 + 160 + 128 + 512) · 5 = 5920, forward only;
    # projector 3 × 2·4·(8·16 + 16·16) = 9216.
    per_sample, per_image = 146_016 + 86_400, 3_072 + 5_920 + 9_216
    batch = {
        "input_ids": torch.zeros(2, 6, dtype=torch.long),
        "images": torch.zeros(2, 3, 8, 8),
        "labels": torch.zeros(2, 6, dtype=torch.long),
    }
    work = batch_work(VLM, batch, Training())
    assert work == Work(samples=2, tokens=18, flops=2 * per_sample + 2 * per_image)


def test_rates_and_mfu():
    found = rates(Work(samples=4, tokens=400, flops=2e12), 2.0, dp=2, peak_tflops=4.0)
    assert found == {
        PREFIX + "tokens_per_s": 400.0,
        PREFIX + "samples_per_s": 4.0,
        PREFIX + "tflops_per_device": 1.0,
        PREFIX + "mfu": 0.25,
    }
    assert PREFIX + "mfu" not in rates(Work(1, 1, 1e12), 1.0, dp=1, peak_tflops=None)


def test_what_learns_is_read_from_the_model():
    model = LlavaModel(LlavaConfigTiny()).init_weights(seed=0)
    freeze(model, vision_model=True)
    LoRA(dim=4).apply(model)
    training = training_of(model, "bf16-mixed")
    assert training.lora is not None and training.lora.dim == 4
    assert training.freeze_vision is True and training.freeze_language is False
    assert model_shape(LlamaModel(LlamaConfigTiny())).language.hidden_size == 64


def test_a_bad_peak_is_one_clear_error():
    with pytest.raises(ConfigError, match="log.throughput.peak_tflops"):
        ThroughputConfig(peak_tflops=0)
    with pytest.raises(ConfigError, match="log.throughput.warmup_steps must be >= 0"):
        ThroughputConfig(warmup_steps=-1)


class Tokens(Dataset):
    def __len__(self):
        return 16

    def __getitem__(self, index):
        ids = torch.randint(3, 200, (16,), generator=torch.Generator().manual_seed(index))
        return {"input_ids": ids, "labels": ids.clone()}


class TokenData(pl.LightningDataModule):
    micro_batch_size = global_batch_size = 2

    def train_dataloader(self):
        return DataLoader(Tokens(), batch_size=2)


def test_a_tiny_run_logs_throughput_and_prints_the_summary(tmp_path, caplog):
    log = ExpManager(exp_dir=str(tmp_path), name="tp", version="v", ckpt=None,
                     tensorboard=False, throughput=ThroughputConfig(peak_tflops=1.0))  # fmt: skip
    config = TrainerConfig(max_steps=4, log_every_n_steps=1, enable_progress_bar=False,
                           enable_model_summary=False, accelerator="cpu")  # fmt: skip
    with caplog.at_level("INFO"):
        run_dir = pretrain(LlamaModel(LlamaConfigTiny()), TokenData(), config, log=log)
    with open(run_dir / "metrics.csv") as file:
        rows = [r for r in csv.DictReader(file) if r.get(PREFIX + "mfu")]
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(float(r[PREFIX + "tokens_per_s"]) > 0 for r in rows)
    for row in rows:  # 2 samples of 16 tokens per step; MFU is TFLOPS over the 1 TFLOPS peak
        ratio = float(row[PREFIX + "tokens_per_s"]) / float(row[PREFIX + "samples_per_s"])
        assert ratio == pytest.approx(16)
        assert float(row[PREFIX + "mfu"]) == pytest.approx(float(row[PREFIX + "tflops_per_device"]))
    assert "throughput:" in caplog.text and "MFU" in caplog.text
