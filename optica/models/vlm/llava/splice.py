"""Splicing image embeddings into a token sequence (LLaVA, Liu et al., 2023, "Visual Instruction
Tuning"): each image placeholder in ``input_ids`` (-200, LLaVA's and NeMo's ``IMAGE_TOKEN_INDEX``)
becomes that image's P embeddings, so a row of T tokens holding k images grows to T + k·(P − 1).
Rows grow by different amounts (text-only rows not at all); the expanded batch is right-padded to
its longest row.

A :class:`SplicePlan` computes every token's expanded position with one cumulative sum and then
moves values with one scatter per kind of token — no Python loop over tokens or images — and the
same plan expands embeddings, labels, padding masks and packed-sample ids, so they always agree.
Images are taken in reading order: row by row, left to right (as transformers' LLaVA does).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IMAGE_TOKEN_INDEX = -200
IGNORE_INDEX = -100


@dataclass(frozen=True)
class SplicePlan:
    """Where each token of ``input_ids`` [B, T] lands in the expanded sequence [B, width].

    Attributes:
        is_image: [B, T], True at image placeholders.
        starts: [B, T], each token's first expanded position.
        lengths: [B], each row's expanded length.
        width: The longest expanded row (T').
        tokens_per_image: Embeddings each placeholder expands to (P).
    """

    is_image: torch.Tensor
    starts: torch.Tensor
    lengths: torch.Tensor
    width: int
    tokens_per_image: int

    @classmethod
    def build(cls, input_ids: torch.Tensor, tokens_per_image: int) -> SplicePlan:
        """Plans the expansion of ``input_ids`` [B, T]."""
        is_image = input_ids == IMAGE_TOKEN_INDEX
        sizes = torch.where(is_image, tokens_per_image, 1)
        ends = sizes.cumsum(dim=1)
        lengths = ends[:, -1] if ends.shape[1] else ends.new_zeros(ends.shape[0])
        width = int(lengths.max()) if lengths.numel() else 0
        return cls(is_image, ends - sizes, lengths, width, tokens_per_image)

    @property
    def num_images(self) -> int:
        """Image placeholders in the batch."""
        return int(self.is_image.sum())

    @property
    def ragged(self) -> bool:
        """Whether rows expand to different lengths (so the shorter ones are padded)."""
        return bool((self.lengths != self.width).any())

    def text_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids`` with placeholders replaced by 0, safe for an embedding lookup."""
        return input_ids.masked_fill(self.is_image, 0)

    def expand(
        self,
        values: torch.Tensor,
        *,
        image: torch.Tensor | float | None = None,
        pad: float = 0,
    ) -> torch.Tensor:
        """Moves per-token ``values`` [B, T, ...] to their expanded positions → [B, width, ...].

        Args:
            values: One value per input token (embeddings, labels, mask, sample ids).
            image: What image positions hold: per-image values [N, P, ...], a scalar, or None for
                their placeholder's own value (so a mask or sample id covers the whole image).
            pad: What the padding after a shorter row holds.
        """
        batch, _, *rest = values.shape
        out = values.new_full((batch, self.width, *rest), pad)
        rows, cols = (~self.is_image).nonzero(as_tuple=True)
        out[rows, self.starts[rows, cols]] = values[rows, cols]
        rows, cols = self.is_image.nonzero(as_tuple=True)
        if rows.numel() == 0:
            return out
        offsets = torch.arange(self.tokens_per_image, device=values.device)
        dest = self.starts[rows, cols, None] + offsets
        if image is None:
            image = values[rows, cols].unsqueeze(1).expand(-1, self.tokens_per_image, *rest)
        out[rows[:, None], dest] = image
        return out

    def padding_mask(self) -> torch.Tensor:
        """[B, width], True at real (not padding) positions."""
        positions = torch.arange(self.width, device=self.lengths.device)
        return positions < self.lengths[:, None]


def expand_labels(
    input_ids: torch.Tensor, labels: torch.Tensor, tokens_per_image: int
) -> torch.Tensor:
    """Labels [B, T] → [B, T'] aligned with the expanded sequence; image tokens and padding are
    ``IGNORE_INDEX`` (nothing to learn there)."""
    plan = SplicePlan.build(input_ids, tokens_per_image)
    return plan.expand(labels, image=IGNORE_INDEX, pad=IGNORE_INDEX)
