"""Samples → a padded batch, in the form ``LlavaModel.forward`` (and the training module) take.

Batch keys (B rows, T = longest row, rounded up to ``pad_to_multiple_of``):

* ``input_ids`` Long [B, T]: pad id after each row; -200 at images.
* ``labels`` Long [B, T]: aligned with ``input_ids`` (not shifted), -100 where not learned.
* ``attention_mask`` Bool [B, T]: True at real tokens.
* ``images`` Float [N, 3, H, W]: all images, row-major in tag order; ``num_images`` Long [B].
* ``position_ids`` Long [B, T']: over the *expanded* sequence the language model sees, where each
  -200 stands for ``image_token_len`` positions (T' = T + (P - 1) x the most images in a row, as
  the model pads it); restarting at 0 for each packed sample, 0 on padding.
* ``document_ids`` Long [B, T]: index of the sample within its row, -1 on padding.
* ``packed_seq_params``: only for packed batches: ``PackedSeqParams(document_ids=...)``, which
  the model expands with the images and turns into a block-diagonal causal mask.
* ``problems``: skipped samples and notes, for the DataModule to count (not a model input).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from optica.data.config import IGNORE_INDEX, IMAGE_TOKEN_ID
from optica.data.sample import Sample


def _documents(lengths: Sequence[int]) -> torch.Tensor:
    return torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])


def _expanded_positions(sample: Sample, image_token_len: int) -> torch.Tensor:
    """Positions of one row's expanded tokens, restarting for each packed sample."""
    images = (sample.input_ids == IMAGE_TOKEN_ID).long()
    ranges, start = [], 0
    for length in sample.lengths:
        extra = int(images[start : start + length].sum()) * (image_token_len - 1)
        ranges.append(torch.arange(length + extra))
        start += length
    return torch.cat(ranges)


def stack_batch(items: list[dict]) -> dict:
    """Stacks same-shaped tensors key by key (classification batches: ``images``, ``labels``)."""
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def packed_params(document_ids: torch.Tensor):
    """The model's packing description (imported here: ``optica.models`` is heavy)."""
    from optica.models.modules.masks import PackedSeqParams

    return PackedSeqParams(document_ids=document_ids)


@dataclass
class Collator:
    """Pads and stacks :class:`~optica.data.sample.Sample` rows.

    Args:
        pad_id: Id used for padding ``input_ids``.
        image_size: (H, W) of images, for the empty image tensor of text-only batches.
        pad_to_multiple_of: Round T up (8 helps tensor cores; 1 keeps batches tight).
        image_token_len: Positions each image takes in the language model (for
            ``position_ids``; 1 for text-only models).
    """

    pad_id: int
    image_size: tuple[int, int] = (1, 1)
    pad_to_multiple_of: int = 1
    image_token_len: int = 1

    def __call__(self, samples: Sequence[Sample]) -> dict:
        width = max(len(s.input_ids) for s in samples)
        width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = self._tokens(samples, width)
        images = [s.images.numpy() for s in samples if len(s.images)]
        # numpy's copy: single-threaded, see optica.data.sample.stack_images
        batch["images"] = (
            torch.from_numpy(np.concatenate(images))
            if images
            else torch.empty(0, 3, *self.image_size)
        )
        batch["num_images"] = torch.tensor([len(s.images) for s in samples], dtype=torch.long)
        batch["position_ids"] = self._positions(samples, width, batch["num_images"])
        if any(len(s.lengths) > 1 for s in samples):
            batch["packed_seq_params"] = packed_params(batch["document_ids"])
        batch["problems"] = [p for s in samples for p in s.problems]
        return batch

    def _tokens(self, samples: Sequence[Sample], width: int) -> dict:
        rows = len(samples)
        batch = {
            "input_ids": torch.full((rows, width), self.pad_id, dtype=torch.long),
            "labels": torch.full((rows, width), IGNORE_INDEX, dtype=torch.long),
            "attention_mask": torch.zeros((rows, width), dtype=torch.bool),
            "document_ids": torch.full((rows, width), -1, dtype=torch.long),
        }
        for row, sample in enumerate(samples):
            n = len(sample.input_ids)
            batch["input_ids"][row, :n] = sample.input_ids
            batch["labels"][row, :n] = sample.labels
            batch["attention_mask"][row, :n] = True
            batch["document_ids"][row, :n] = _documents(sample.lengths)
        return batch

    def _positions(self, samples: Sequence[Sample], width: int, images: torch.Tensor):
        expanded = width + int(images.max()) * (self.image_token_len - 1) if len(images) else width
        positions = torch.zeros((len(samples), expanded), dtype=torch.long)
        for row, sample in enumerate(samples):
            row_positions = _expanded_positions(sample, self.image_token_len)
            positions[row, : len(row_positions)] = row_positions
        return positions
