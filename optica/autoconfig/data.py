"""Random token data for a candidate's run: the text-only batches every layout can take.

``optica.data.MockDataModule`` emits the full VLM batch (positions, document ids, image slots),
which pipeline stages do not take yet; a language model's candidate only needs ``input_ids`` and
``labels``. Samples are drawn from a generator seeded by their index, so every rank builds the
same dataset, and each data-parallel rank reads its own shard (an unshuffled
``DistributedSampler`` over the strategy's data-parallel rank and size; the runner's trainer has
``use_distributed_sampler=False``), while TP/CP/PP peers read the same samples.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class RandomTokens(Dataset):
    """``size`` sequences of ``seq_length`` token ids in [3, vocab_size)."""

    def __init__(self, *, size: int, seq_length: int, vocab_size: int) -> None:
        self.size, self.seq_length, self.vocab_size = size, seq_length, vocab_size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(index)
        ids = torch.randint(3, self.vocab_size, (self.seq_length,), generator=generator)
        return {"input_ids": ids, "labels": ids.clone()}


class RandomTokenData(pl.LightningDataModule):
    """Batches of :class:`RandomTokens` (module docstring); sizes as ``optica.data``'s modules."""

    def __init__(
        self,
        *,
        seq_length: int,
        vocab_size: int,
        micro_batch_size: int,
        global_batch_size: int,
        num_train_samples: int,
    ) -> None:
        super().__init__()
        self.seq_length, self.vocab_size = seq_length, vocab_size
        self.micro_batch_size, self.global_batch_size = micro_batch_size, global_batch_size
        self.num_train_samples = num_train_samples

    def train_dataloader(self) -> DataLoader:
        dataset = RandomTokens(
            size=self.num_train_samples, seq_length=self.seq_length, vocab_size=self.vocab_size
        )
        shards = getattr(self.trainer.strategy, "distributed_sampler_kwargs", None) or {}
        sampler = DistributedSampler(
            dataset,
            num_replicas=shards.get("num_replicas", 1),
            rank=shards.get("rank", 0),
            shuffle=False,
            drop_last=True,
        )
        return DataLoader(
            dataset, batch_size=self.micro_batch_size, sampler=sampler, drop_last=True
        )
