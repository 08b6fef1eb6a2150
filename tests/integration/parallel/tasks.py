"""What each rank runs in the parallel-layout tests: a few steps of the tiny Llama on a
deterministic copy task, under one layout after another, returning the logged losses.

The data module shards samples by data-parallel rank itself (an unshuffled ``DistributedSampler``
over the strategy's data-parallel rank and size; Lightning then injects none), so TP/CP/PP peers
see the same batch and the DP ranks together see exactly the single process's global batch. On
resume it starts at the sample the checkpointed step reached, so the next batch is the
uninterrupted run's next batch.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from optica.models import LlamaConfigTiny, LlamaModel
from optica.train.api import finetune
from optica.train.exp_manager import CheckpointConfig, ExpManager, ResumeConfig
from optica.train.optim import OptimizerConfig
from optica.train.strategy import ParallelStrategy
from optica.train.trainer import TrainerConfig

GLOBAL_BATCH = 8
SEQ_HALF = 8  # sequences of 16 tokens: the second half repeats the first


class CopyTask(Dataset):
    """Sequences whose second half repeats the first (only the second half is learned)."""

    def __len__(self) -> int:
        return 64

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(index)
        half = torch.randint(3, 60, (SEQ_HALF,), generator=generator)
        ids = torch.cat([half, half])
        labels = ids.clone()
        labels[:SEQ_HALF] = -100
        return {"input_ids": ids, "labels": labels}


class CopyData(pl.LightningDataModule):
    def __init__(self, micro_batch_size: int, global_batch_size: int = GLOBAL_BATCH) -> None:
        super().__init__()
        self.micro_batch_size, self.global_batch_size = micro_batch_size, global_batch_size

    def train_dataloader(self) -> DataLoader:
        start = self.trainer.global_step * self.global_batch_size  # restored before this is built
        remaining = Subset(CopyTask(), range(start, len(CopyTask())))
        shards = getattr(self.trainer.strategy, "distributed_sampler_kwargs", None) or {}
        sampler = DistributedSampler(
            remaining,
            num_replicas=shards.get("num_replicas", 1),
            rank=shards.get("rank", 0),
            shuffle=False,
        )
        return DataLoader(remaining, batch_size=self.micro_batch_size, sampler=sampler)


def train(
    exp_dir: str,
    name: str,
    *,
    devices: int,
    micro_batch_size: int,
    steps: int = 3,
    strategy: dict[str, Any] | None = None,
    num_layers: int = 2,
    precision: str = "32-true",
    save_at: int | None = None,
    resume_from: str | None = None,
    gradient_clip_val: float | None = None,
) -> list[float]:
    """One run; returns ``reduced_train_loss`` per step (on rank 0)."""
    trainer = TrainerConfig(
        devices=devices,
        accelerator="cpu",
        max_steps=steps,
        precision=precision,
        gradient_clip_val=gradient_clip_val,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        strategy=None if strategy is None else ParallelStrategy(**strategy),
    )
    ckpt = None
    if save_at:
        ckpt = CheckpointConfig(
            monitor=None, save_top_k=-1, every_n_train_steps=save_at, save_last=False,
            filename="{step}",
        )  # fmt: skip
    log = ExpManager(exp_dir=exp_dir, name=name, version="run", ckpt=ckpt, tensorboard=False)
    resume = ResumeConfig(resume_if_exists=False, resume_from_checkpoint=resume_from)
    model = LlamaModel(LlamaConfigTiny(num_layers=num_layers))
    data = CopyData(micro_batch_size)
    run_dir = finetune(model, data, trainer, log=log, optim=OptimizerConfig(lr=3e-3), resume=resume)
    return read_losses(run_dir)


def read_losses(run_dir: Path) -> list[float]:
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():  # only rank 0 logs
        return []
    with path.open() as file:
        rows = [r for r in csv.DictReader(file) if r.get("reduced_train_loss")]
    return [float(r["reduced_train_loss"]) for r in sorted(rows, key=lambda r: int(r["step"]))]


def train_all(exp_dir: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs one after another in the same processes: ``{name: losses}``."""
    return {spec["name"]: _attempt(exp_dir, spec) for spec in runs}


def _attempt(exp_dir: str, spec: dict[str, Any]) -> Any:
    spec = dict(spec)
    name = spec.pop("name")
    return train(exp_dir, name, **spec)
