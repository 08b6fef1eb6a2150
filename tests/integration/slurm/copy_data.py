"""A tiny learnable data module for the Slurm fine-tuning test (sequences that repeat their
first half; only the second half is learned)."""

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader


class CopyData(pl.LightningDataModule):
    def __init__(self, micro_batch_size: int = 2, global_batch_size: int = 4):
        super().__init__()
        self.micro_batch_size, self.global_batch_size = micro_batch_size, global_batch_size

    def train_dataloader(self) -> DataLoader:
        halves = torch.randint(3, 60, (64, 8), generator=torch.Generator().manual_seed(0))
        ids = torch.cat([halves, halves], dim=1)
        labels = ids.clone()
        labels[:, :8] = -100
        rows = [{"input_ids": i, "labels": label} for i, label in zip(ids, labels)]
        return DataLoader(rows, batch_size=self.micro_batch_size)
