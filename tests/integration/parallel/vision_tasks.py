"""What each rank runs in the vision parallel-layout tests: a few steps of the tiny LLaVA on
synthetic shapes VQA, or of the tiny ViT on shapes classification, under one layout after
another, returning the logged losses.

Every shapes VQA sample learns exactly two tokens (the one-word answer and ``</s>``), so the mean
of per-rank token means that data parallelism averages equals one process's token mean over the
global batch; the data module hands each data-parallel rank its part of the same global batch.
Dropout is off (it draws different random numbers under another layout).
"""

from __future__ import annotations

from typing import Any

from optica.data.synthetic import ShapesClassificationDataModule, ShapesDataModule
from optica.models import LlavaConfigTiny, LlavaModel, ViTClassificationModel, ViTConfigTiny
from optica.train.api import finetune
from optica.train.exp_manager import CheckpointConfig, ExpManager, ResumeConfig
from optica.train.optim import OptimizerConfig
from optica.train.peft import Freeze, LoRA
from optica.train.strategy import ParallelStrategy
from optica.train.trainer import TrainerConfig
from tests.integration.parallel.tasks import read_losses

GLOBAL_BATCH = 8
SEED = 1234  # the trainer seed, which also initialises the model
SAMPLES = 64


def build(kind: str, micro_batch_size: int) -> tuple[Any, Any]:
    """(model, data) for ``kind`` ``llava`` or ``vit``."""
    sizes = {"micro_batch_size": micro_batch_size, "global_batch_size": GLOBAL_BATCH,
             "num_train_samples": SAMPLES, "num_val_samples": 0}  # fmt: skip
    if kind == "llava":
        return LlavaModel(LlavaConfigTiny()), ShapesDataModule(seq_length=128, **sizes)
    data = ShapesClassificationDataModule(**sizes)
    config = ViTConfigTiny(num_classes=data.num_classes, hidden_dropout=0.0)
    return ViTClassificationModel(config), data


def train(
    exp_dir: str,
    name: str,
    *,
    kind: str,
    devices: int,
    micro_batch_size: int,
    steps: int = 3,
    strategy: dict[str, Any] | None = None,
    save_at: int | None = None,
    resume_from: str | None = None,
    lora: bool = False,
    freeze_vision: bool = False,
    precision: str = "32-true",
) -> list[float]:
    """One run; returns ``reduced_train_loss`` per step (on rank 0)."""
    trainer = TrainerConfig(
        devices=devices, accelerator="cpu", max_steps=steps, log_every_n_steps=1,
        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
        seed=SEED, precision=precision,
        strategy=None if strategy is None else ParallelStrategy(**strategy),
    )  # fmt: skip
    ckpt = None
    if save_at:
        ckpt = CheckpointConfig(
            monitor=None, save_top_k=-1, every_n_train_steps=save_at, save_last=False,
            filename="{step}",
        )  # fmt: skip
    log = ExpManager(exp_dir=exp_dir, name=name, version="run", ckpt=ckpt, tensorboard=False)
    resume = ResumeConfig(resume_if_exists=False, resume_from_checkpoint=resume_from)
    model, data = build(kind, micro_batch_size)
    peft = LoRA(target_modules=["*.language_model.*.linear_qkv"]) if lora else None
    peft = Freeze(vision_model=True) if freeze_vision else peft
    optim = OptimizerConfig(lr=3e-3)
    run_dir = finetune(model, data, trainer, log=log, optim=optim, resume=resume, peft=peft)
    return read_losses(run_dir)


def train_all(exp_dir: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs one after another in the same processes: ``{name: losses}``."""
    results = {}
    for spec in runs:
        spec = dict(spec)
        name = spec.pop("name")
        results[name] = train(exp_dir, name, **spec)
    return results
