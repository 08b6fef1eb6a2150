"""Lightning DataModules: batch sizes, workers, resumable order, bad-input report.

:class:`OpticaDataModule` holds what every source shares; a source only says how to build its
data sets and collate. Consumed samples are counted when a training batch reaches the model
(``on_after_batch_transfer``), saved in the checkpoint (``state_dict``) and restored before the
loaders are built, so a resumed run continues with exactly the next batch.

NOTE: the order is already data-parallel; the Trainer must not inject its own
``DistributedSampler`` (``Trainer(use_distributed_sampler=False)``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from optica.data.errors import DataReport
from optica.data.sampler import Progress, ResumableBatchSampler, check_batch_sizes

log = logging.getLogger("optica.data")


class ResumableDataLoader(DataLoader):
    """A DataLoader whose position is its sampler's consumed-sample count.

    Lightning saves ``state_dict()`` with the fit loop and calls ``load_state_dict()`` before
    iterating again, so it knows the loader resumes mid-epoch (and does not warn otherwise).
    """

    def state_dict(self) -> dict:
        return {"consumed_samples": self.batch_sampler.progress.consumed_samples}

    def load_state_dict(self, state_dict: dict) -> None:
        self.batch_sampler.progress.consumed_samples = int(state_dict["consumed_samples"])


class OpticaDataModule(pl.LightningDataModule):
    """Shared DataModule behaviour; subclasses implement :meth:`build_dataset` and
    :meth:`collator`.

    Args:
        seq_length: Longest sequence the model sees (images counted in full).
        micro_batch_size: Rows per step on each rank.
        global_batch_size: Rows per optimizer step over all ranks (gradient accumulation fills
            the gap).
        num_workers: DataLoader worker processes.
        seed: Shuffle seed (epoch ``e`` uses ``(seed, e)``).
        data_parallel_rank, data_parallel_size: This rank and the replica count; by default
            taken from the Trainer's strategy, else ``torch.distributed``, else 0 and 1.
        pin_memory, persistent_workers: Passed to the DataLoader.
    """

    def __init__(
        self,
        *,
        seq_length: int = 2048,
        micro_batch_size: int = 1,
        global_batch_size: int = 1,
        num_workers: int = 0,
        seed: int = 1234,
        data_parallel_rank: int | None = None,
        data_parallel_size: int | None = None,
        pin_memory: bool = False,
        persistent_workers: bool = False,
    ):
        super().__init__()
        check_batch_sizes(micro_batch_size, global_batch_size, 1)
        self.seq_length, self.micro_batch_size = seq_length, micro_batch_size
        self.global_batch_size, self.num_workers, self.seed = global_batch_size, num_workers, seed
        self.data_parallel_rank, self.data_parallel_size = data_parallel_rank, data_parallel_size
        self.pin_memory, self.persistent_workers = pin_memory, persistent_workers
        self.progress = Progress()
        self.report = DataReport()
        self.datasets: dict[str, Dataset | None] = {}

    # -- what a source provides -------------------------------------------------------------
    def build_dataset(self, split: str) -> Dataset | None:
        """The data set of ``split`` (``train`` / ``val``), or ``None`` for none."""
        raise NotImplementedError

    def collator(self) -> Callable:
        raise NotImplementedError

    # -- Lightning hooks ----------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        for split in ("train", "val"):
            if split not in self.datasets:
                self.datasets[split] = self.build_dataset(split)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True, drop_last=True, progress=self.progress)

    def val_dataloader(self) -> DataLoader | list:
        self.setup()
        if self.datasets.get("val") is None:
            return []
        return self._loader("val", shuffle=False, drop_last=False, progress=Progress())

    def on_after_batch_transfer(self, batch, dataloader_idx: int = 0):
        trainer = self.trainer
        return self.consume(batch, training=trainer is None or trainer.training)

    def state_dict(self) -> dict:
        return {
            "consumed_samples": self.progress.consumed_samples,
            "report": self.report.state_dict(),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.progress.consumed_samples = int(state_dict.get("consumed_samples", 0))
        self.report.load_state_dict(state_dict.get("report", {}))

    def teardown(self, stage: str) -> None:
        summary = self.report.summary()
        if summary:
            rank, _ = self.data_parallel()
            log.warning("[rank %d] %s", rank, summary)

    # -- the rest -----------------------------------------------------------------------------
    @property
    def consumed_samples(self) -> int:
        """Rows consumed by training so far, over all ranks."""
        return self.progress.consumed_samples

    def consume(self, batch, *, training: bool = True):
        """Counts a batch that reached the model (and its problems); returns the model inputs.

        Called by Lightning through ``on_after_batch_transfer``; call it yourself in a plain loop.
        """
        if isinstance(batch, dict) and "problems" in batch:
            self.report.add(batch.pop("problems"))
        if training:
            self.progress.consumed_samples += self.micro_batch_size * self.data_parallel()[1]
        return batch

    def data_parallel(self) -> tuple[int, int]:
        """(rank, size) of data parallelism."""
        if self.data_parallel_rank is not None or self.data_parallel_size is not None:
            return self.data_parallel_rank or 0, self.data_parallel_size or 1
        strategy = getattr(self.trainer, "strategy", None)
        kwargs = getattr(strategy, "distributed_sampler_kwargs", None) or {}
        if kwargs:
            return int(kwargs.get("rank", 0)), int(kwargs.get("num_replicas", 1))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def batch_sampler(self, split: str, **kwargs) -> ResumableBatchSampler:
        rank, size = self.data_parallel()
        return ResumableBatchSampler(
            size=len(self.datasets[split]),
            micro_batch_size=self.micro_batch_size,
            global_batch_size=self.global_batch_size,
            data_parallel_rank=rank,
            data_parallel_size=size,
            seed=self.seed,
            **kwargs,
        )

    def _loader(self, split: str, **kwargs) -> DataLoader:
        self.setup()
        if self.num_workers > 0:  # forked workers cannot use the tokenizer's thread pool
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        loader = ResumableDataLoader if split == "train" else DataLoader
        return loader(
            self.datasets[split],
            batch_sampler=self.batch_sampler(split, **kwargs),
            collate_fn=self.collator(),
            num_workers=self.num_workers,
            # NOTE: the loader's own generator: without one, each new iterator draws its worker
            # seed from the global stream, and a resumed run's dropout would drift from the
            # uninterrupted run's.
            generator=torch.Generator().manual_seed(self.seed),
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
        )
