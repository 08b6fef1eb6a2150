"""Sequence packing for SFT: several samples per row, attention kept inside each sample.

Samples are assigned to rows of at most ``seq_length`` tokens (images counted at their full
``image_token_len``) by first-fit-decreasing: longest first, each into the first row with room.
A segment tree over the rows' free space finds that row in O(log rows), so packing LLaVA-665k is
seconds, not hours. The rows are fixed before training (from token counts alone, no images), so
a packed data set has a stable length and the resumable sampler works on rows as on samples.

The collate turns each row's ``lengths`` into ``position_ids`` that restart at 0 and per-token
``document_ids``; with a block-diagonal causal mask built from them the loss equals unpacked
training on the same samples (``tests/unit/data/test_packing.py`` proves it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from optica.data.errors import BadSampleError, DataError, Problem
from optica.data.llava import first_good
from optica.data.sample import DroppedSample, Sample


class _FreeSpace:
    """Max-segment-tree over bins' free space: leftmost bin with at least ``size`` free."""

    def __init__(self, bins: int, capacity: int):
        self.leaves = 1 << max(0, (bins - 1).bit_length())
        self.tree = np.full(2 * self.leaves, capacity, dtype=np.int64)

    def first_fit(self, size: int) -> int:
        if self.tree[1] < size:
            return -1
        node = 1
        while node < self.leaves:
            node = 2 * node if self.tree[2 * node] >= size else 2 * node + 1
        return node - self.leaves

    def take(self, leaf: int, size: int) -> None:
        node = leaf + self.leaves
        self.tree[node] -= size
        while node > 1:
            node //= 2
            self.tree[node] = max(self.tree[2 * node], self.tree[2 * node + 1])


def first_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices of ``lengths`` grouped into bins of total length <= ``capacity``.

    Deterministic: ties are broken by index, bins are returned in creation order and each
    bin lists its samples in placement order (longest first).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(lengths) and lengths.max() > capacity:
        raise DataError(f"a sample of {lengths.max()} tokens cannot fit in a row of {capacity}")
    order = np.argsort(-lengths, kind="stable")
    space = _FreeSpace(len(lengths), capacity)
    bins: list[list[int]] = []
    for index in order.tolist():
        size = int(lengths[index])
        slot = space.first_fit(size)
        if slot < 0 or slot >= len(bins):
            slot = len(bins)
            bins.append([])
        space.take(slot, size)
        bins[slot].append(index)
    return bins


def concatenate(samples: Sequence[Sample]) -> Sample:
    """Samples side by side in one row (images in the same order as their tags)."""
    return Sample(
        ids=tuple(i for s in samples for i in s.ids),
        input_ids=torch.cat([s.input_ids for s in samples]),
        labels=torch.cat([s.labels for s in samples]),
        images=torch.cat([s.images for s in samples]),
        lengths=tuple(n for s in samples for n in s.lengths),
        problems=tuple(p for s in samples for p in s.problems),
    )


def measure(
    size: int, length: Callable[[int], int], policy: str
) -> tuple[np.ndarray, list[Problem]]:
    """Each sample's length; -1 (and a problem) for samples a policy leaves out."""
    lengths = np.full(size, -1, dtype=np.int64)
    problems: list[Problem] = []
    for index in range(size):
        try:
            lengths[index] = length(index)
        except DroppedSample as err:
            problems.extend(err.problems)
        except BadSampleError as err:
            if policy != "skip":
                raise
            problems.extend(err.problems)
    return lengths, problems


class PackedDataset(Dataset):
    """Rows of packed samples over a dataset with ``encode(i)``, ``token_length(i)`` and
    ``on_bad_input`` (e.g. :class:`~optica.data.llava.LlavaDataset`).

    Building it measures every sample once (tokenizing, no images). Samples left out then are
    in :attr:`problems`; a sample whose image turns out bad later is left out of its row.
    """

    def __init__(self, dataset, seq_length: int):
        self.dataset, self.seq_length = dataset, seq_length
        self.policy = dataset.on_bad_input
        lengths, self.problems = measure(len(dataset), dataset.token_length, self.policy)
        kept = np.flatnonzero(lengths >= 0)
        if len(kept) == 0:
            raise DataError("no usable samples to pack")
        bins = first_fit_decreasing(lengths[kept], seq_length)
        self.bins = [kept[b].tolist() for b in bins]

    def __len__(self) -> int:
        return len(self.bins)

    def _row(self, row: int) -> Sample:
        samples: list[Sample] = []
        problems: list[Problem] = []
        for index in self.bins[row]:
            try:
                samples.append(self.dataset.encode(index))
            except BadSampleError as err:
                if self.policy != "skip" and not isinstance(err, DroppedSample):
                    raise
                problems.extend(err.problems)
        if not samples:
            raise BadSampleError(*problems)
        packed = concatenate(samples)
        packed.problems = (*problems, *packed.problems)
        return packed

    def __getitem__(self, row: int) -> Sample:
        return first_good(row, len(self), self._row, "skip" if self.policy == "skip" else "error")
