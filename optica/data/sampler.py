"""Deterministic, resumable, data-parallel batch order (Megatron's pretraining sampler, in spirit).

The global order of epoch ``e`` is a permutation seeded by ``(seed, e)``, cut to a whole number of
global batches. Consecutive ``micro_batch_size * data_parallel_size`` indices form one micro-step;
rank ``r`` takes its ``micro_batch_size`` slice. Everything is a pure function of
``consumed_samples`` (counted over all ranks), so a run resumed from a checkpoint sees exactly the
batches it would have seen, and the ranks partition each global batch without a process group.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from optica.data.errors import DataConfigError, DataError


@dataclass
class Progress:
    """Samples consumed so far (all ranks), shared between a DataModule and its samplers."""

    consumed_samples: int = 0


def epoch_order(size: int, *, epoch: int, seed: int, shuffle: bool) -> np.ndarray:
    """The order of epoch ``epoch``: the same on every rank and in every process."""
    if not shuffle:
        return np.arange(size)
    return np.random.default_rng([seed, epoch]).permutation(size)


def check_batch_sizes(micro_batch_size: int, global_batch_size: int, data_parallel_size: int):
    """A global batch must be a whole number of micro-steps over all ranks."""
    step = micro_batch_size * data_parallel_size
    if micro_batch_size < 1 or global_batch_size % step:
        raise DataConfigError(
            f"global_batch_size={global_batch_size} must be a multiple of micro_batch_size="
            f"{micro_batch_size} x data parallel size {data_parallel_size}"
        )


class ResumableBatchSampler:
    """Yields this rank's micro-batches (lists of indices) from ``progress.consumed_samples`` to
    the end of that epoch; iterate again for the next epoch.

    Args:
        size: Samples (or packed rows) in the data set.
        micro_batch_size, global_batch_size: Per-rank and all-rank batch sizes.
        data_parallel_rank, data_parallel_size: This rank and the number of replicas.
        shuffle: Permute each epoch (training) or keep file order (validation).
        seed: Shuffle seed.
        drop_last: Leave out the last incomplete global batch (training); otherwise split the
            remainder across ranks (a rank may get a shorter or no last batch).
        progress: Where consumed samples are counted; the DataModule advances it.
    """

    def __init__(
        self,
        *,
        size: int,
        micro_batch_size: int,
        global_batch_size: int,
        data_parallel_rank: int = 0,
        data_parallel_size: int = 1,
        shuffle: bool = True,
        seed: int = 1234,
        drop_last: bool = True,
        progress: Progress | None = None,
    ):
        check_batch_sizes(micro_batch_size, global_batch_size, data_parallel_size)
        if not 0 <= data_parallel_rank < data_parallel_size:
            raise DataConfigError(f"rank {data_parallel_rank} not in 0..{data_parallel_size - 1}")
        self.size, self.mbs, self.gbs = size, micro_batch_size, global_batch_size
        self.rank, self.replicas = data_parallel_rank, data_parallel_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.progress = progress if progress is not None else Progress()
        self.epoch_size = size // global_batch_size * global_batch_size if drop_last else size
        if self.epoch_size == 0:
            raise DataError(f"{size} samples: fewer than one global batch ({global_batch_size})")

    @property
    def step(self) -> int:
        """Samples one micro-batch consumes over all ranks."""
        return self.mbs * self.replicas

    def __len__(self) -> int:
        """Micro-batches of this rank in a whole epoch (also when resuming mid-epoch)."""
        full, rest = divmod(self.epoch_size, self.step)
        return full + int(rest > self.rank * self.mbs)

    def __iter__(self) -> Iterator[list[int]]:
        consumed = self.progress.consumed_samples
        if consumed % self.step and self.drop_last:
            raise DataConfigError(
                f"consumed_samples={consumed} is not a multiple of micro_batch_size x data "
                f"parallel size ({self.step}); resume with the batch sizes of the checkpoint"
            )
        epoch, offset = divmod(consumed, self.epoch_size)
        order = epoch_order(self.size, epoch=epoch, seed=self.seed, shuffle=self.shuffle)
        order = order[: self.epoch_size]
        for start in range(offset, self.epoch_size, self.step):
            chunk = order[start : start + self.step]
            mine = chunk[self.rank * self.mbs : (self.rank + 1) * self.mbs]
            if len(mine):
                yield mine.tolist()
