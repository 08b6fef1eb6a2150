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
from optica.data.slab import joined_view


def _spans(lengths: np.ndarray) -> np.ndarray:
    """``arange(n)`` for each n of ``lengths``, concatenated (int64)."""
    starts = np.cumsum(lengths) - lengths
    return np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(starts, lengths)


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
        rows = _Rows(samples)
        width = -(-int(rows.lengths.max()) // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = self._tokens(samples, rows, width)
        batch["images"] = self._images([s.images for s in samples if len(s.images)])
        batch["num_images"] = torch.tensor([len(s.images) for s in samples], dtype=torch.long)
        batch["position_ids"] = self._positions(rows, width, batch["num_images"])
        if any(len(s.lengths) > 1 for s in samples):
            batch["packed_seq_params"] = packed_params(batch["document_ids"])
        batch["problems"] = [p for s in samples for p in s.problems]
        return batch

    def _images(self, images: list[torch.Tensor]) -> torch.Tensor:
        """All images [N, 3, H, W]: a view when they lie back to back in one slab (samples
        fetched together, see optica.data.slab), else a copy with numpy's single-threaded
        concatenate (see optica.data.sample.stack_images)."""
        if not images:
            return torch.empty(0, 3, *self.image_size)
        joined = joined_view(images)
        return (
            joined
            if joined is not None
            else torch.from_numpy(np.concatenate([image.numpy() for image in images]))
        )

    def _tokens(self, samples: Sequence[Sample], rows: _Rows, width: int) -> dict:
        """All rows at once, each sample's tokens left-aligned through one row mask (a few numpy
        calls per batch, not a few torch calls per row)."""
        return {
            "input_ids": rows.left_aligned(width, self.pad_id, rows.ids),
            "labels": rows.left_aligned(width, IGNORE_INDEX, _joined(s.labels for s in samples)),
            "attention_mask": torch.from_numpy(np.arange(width) < rows.lengths[:, None]),
            "document_ids": rows.left_aligned(width, -1, np.repeat(rows.piece_index, rows.pieces)),
        }

    def _positions(self, rows: _Rows, width: int, images: torch.Tensor) -> torch.Tensor:
        """Positions over each packed sample's expanded length (an image counts
        ``image_token_len``), restarting at 0 for each, 0 on padding."""
        expanded = width + int(images.max()) * (self.image_token_len - 1) if len(images) else width
        extra, is_image = self.image_token_len - 1, rows.ids == IMAGE_TOKEN_ID
        per_piece = rows.pieces + rows.count(is_image, rows.pieces) * extra
        per_row = rows.lengths + rows.count(is_image, rows.lengths) * extra
        return _Rows.fill(expanded, 0, per_row, _spans(per_piece))


class _Rows:
    """A batch's token layout: row lengths, packed-sample lengths, and all ids joined."""

    def __init__(self, samples: Sequence[Sample]):
        self.lengths = np.array([len(s.input_ids) for s in samples], dtype=np.int64)
        self.pieces = np.array([n for s in samples for n in s.lengths], dtype=np.int64)
        self.piece_index = _spans(np.array([len(s.lengths) for s in samples], dtype=np.int64))
        self.ids = _joined(s.input_ids for s in samples)

    def left_aligned(self, width: int, fill: int, values: np.ndarray) -> torch.Tensor:
        return self.fill(width, fill, self.lengths, values)

    @staticmethod
    def fill(width: int, fill: int, lengths: np.ndarray, values: np.ndarray) -> torch.Tensor:
        """[rows, width] int64: ``values`` row by row, ``lengths`` each, from the left."""
        out = np.full((len(lengths), width), fill, dtype=np.int64)
        out[np.arange(width) < lengths[:, None]] = values
        return torch.from_numpy(out)

    @staticmethod
    def count(flags: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """How many ``flags`` are set in each consecutive run of ``lengths``."""
        seen = np.concatenate([[0], np.cumsum(flags)])
        ends = np.cumsum(lengths)
        return seen[ends] - seen[ends - lengths]


def _joined(tensors) -> np.ndarray:
    return np.concatenate([t.numpy() for t in tensors]).astype(np.int64, copy=False)
