"""KV-cached autoregressive decoding over any optica causal model (a language model, or a VLM
whose ``forward`` takes ``images``).

The prompt runs once (the *prefill*: images are encoded here and never again), filling a
:class:`~optica.models.modules.kv_cache.StaticKVCache`; each later step feeds one token per row.
Prompts of different lengths are left-padded at the token level. A VLM expands each image
placeholder into its image's embeddings, so rows with fewer images end up shorter and padded on
the right as well; rather than moving rows around, every position is given its true place:
position ids count real tokens only, the padding mask hides pad keys, and new tokens are appended
after the widest row. Attention over "pads, real tokens, pads, new tokens" with pads masked is
exactly attention over the real tokens, so the result equals transformers' left-padded batches.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from optica.generate.errors import GenerationError
from optica.generate.sampling import (
    IMAGE_PLACEHOLDER,
    SamplingConfig,
    TokenChooser,
    seen_tokens,
)
from optica.models.modules.kv_cache import StaticKVCache


@dataclass(frozen=True)
class Layout:
    """Where a batch of token rows sits in the model's sequence once images are expanded.

    Attributes:
        input_ids: [B, T] left-padded token ids (-200 at images).
        mask: [B, T] True at real tokens.
        positions: [B, W] position ids over the expanded sequence (0 at the first real token).
        expanded_mask: [B, W] True at real expanded positions.
        lengths: [B] real expanded tokens per row.
        last: [B] index of each row's last real position.
    """

    input_ids: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor
    expanded_mask: torch.Tensor
    lengths: torch.Tensor
    last: torch.Tensor

    @classmethod
    def of(cls, input_ids: torch.Tensor, mask: torch.Tensor, tokens_per_image: int) -> Layout:
        """Lays out left-padded ``input_ids``/``mask`` [B, T]; each -200 counts
        ``tokens_per_image`` positions (the model's splice puts any shortfall at the end)."""
        sizes = torch.where(input_ids == IMAGE_PLACEHOLDER, tokens_per_image, 1) * mask
        lengths = sizes.sum(dim=1)
        left = (~mask).sum(dim=1)
        width = int((left + lengths).max())
        index = torch.arange(width, device=input_ids.device)[None, :]
        inside = (index >= left[:, None]) & (index < (left + lengths)[:, None])
        positions = (index - left[:, None]).clamp(min=0)
        return cls(input_ids, mask, positions, inside, lengths, left + lengths - 1)

    @property
    def width(self) -> int:
        return self.positions.shape[1]

    @property
    def padded(self) -> bool:
        return not bool(self.expanded_mask.all())


def left_pad(rows: list[list[int]], pad_id: int, device: torch.device | str = "cpu") -> Layout:
    """Token rows → left-padded ``input_ids`` and ``mask`` [B, T] (layout not yet expanded)."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for index, row in enumerate(rows):
        if row:
            ids[index, width - len(row) :] = torch.tensor(row)
            mask[index, width - len(row) :] = True
    return ids.to(device), mask.to(device)


class CausalModel:
    """What decoding needs to know about a model, read from it once (no family is named)."""

    def __init__(self, model: nn.Module) -> None:
        self.module = model
        self.reads_images = "images" in inspect.signature(model.forward).parameters
        config = model.config
        self.tokens_per_image = getattr(config, "num_image_tokens", 1) if self.reads_images else 1
        # the vocabulary's <image> id (llava-hf checkpoints), penalised like transformers does
        self.image_token_id = getattr(config, "image_token_id", None) if self.reads_images else None
        language = getattr(config, "language_transformer_config", config)
        self.context_length = int(getattr(language, "seq_length", 0)) or None

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def __call__(self, images: torch.Tensor | None = None, **inputs) -> torch.Tensor:
        if self.reads_images:
            inputs["images"] = images
        return self.module(**inputs)


class Decoding:
    """One batched generation, step by step: iterate it for the next token of every row [B].

    Rows that produced a stop token are ``finished`` and get ``pad_id`` from then on; a caller
    may also mark rows finished between steps (a stop string seen in the text). Iteration ends
    when every row is finished or after ``max_new_tokens`` steps.

    Args:
        model: The model, wrapped.
        input_ids, mask: [B, T] left-padded prompts (-200 at images) and their real tokens.
        images: [N, C, H, W] in reading order, or None.
        max_new_tokens: Most tokens to generate per row.
        sampling: How tokens are chosen.
        stop_ids: Token ids that end a row.
        pad_id: What finished rows produce.
        use_cache: False recomputes the whole sequence at every step (the reference the cache
            is tested against; much slower).
    """

    def __init__(
        self,
        model: CausalModel,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        images: torch.Tensor | None,
        *,
        max_new_tokens: int,
        sampling: SamplingConfig,
        stop_ids: list[int],
        pad_id: int,
        use_cache: bool = True,
    ) -> None:
        self.model, self.images, self.sampling = model, images, sampling
        self.layout = Layout.of(input_ids, mask, model.tokens_per_image)
        self.max_new_tokens = self._fit_context(max_new_tokens)
        self.stop_ids = torch.tensor(stop_ids, dtype=torch.long, device=input_ids.device)
        self.pad_id, self.use_cache = pad_id, use_cache
        self.finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    def _fit_context(self, max_new_tokens: int) -> int:
        context, longest = self.model.context_length, int(self.layout.lengths.max())
        if context is None:
            return max_new_tokens
        if longest >= context:
            raise GenerationError(
                f"the prompt takes {longest} tokens (images included) but the model's context "
                f"holds {context}; shorten the prompt or the conversation (/reset in chat)"
            )
        return min(max_new_tokens, context - longest)

    def __iter__(self) -> Iterator[torch.Tensor]:
        with torch.inference_mode():
            step = self._cached_steps() if self.use_cache else self._uncached_steps()
            logits = next(step)
            chooser = TokenChooser(self.sampling, self._seen(logits.shape[-1]))
            for index in range(self.max_new_tokens):
                tokens = chooser(logits).masked_fill(self.finished, self.pad_id)
                yield tokens
                self.finished |= torch.isin(tokens, self.stop_ids)
                if index + 1 == self.max_new_tokens or bool(self.finished.all()):
                    return
                logits = step.send(tokens)

    def _seen(self, vocab_size: int) -> torch.Tensor:
        if self.sampling.repetition_penalty == 1.0:
            return torch.zeros(0, dtype=torch.bool)
        layout = self.layout
        return seen_tokens(layout.input_ids, layout.mask, vocab_size, self.model.image_token_id)

    def _prefill(self, layout: Layout, kv_cache: StaticKVCache | None) -> torch.Tensor:
        """Logits [B, V] at each row's last real position."""
        logits = self.model(
            input_ids=layout.input_ids,
            images=self.images,
            attention_mask=layout.mask if not bool(layout.mask.all()) else None,
            position_ids=layout.positions,
            kv_cache=kv_cache,
        )
        return logits[torch.arange(logits.shape[0], device=logits.device), layout.last]

    def _cached_steps(self):
        """Coroutine: yields the prompt's logits, then the logits after each token sent in."""
        layout = self.layout
        width, total = layout.width, layout.width + self.max_new_tokens
        cache = StaticKVCache(total)
        mask = torch.ones(layout.positions.shape[0], total, dtype=torch.bool)
        mask = mask.to(layout.mask.device)
        mask[:, :width] = layout.expanded_mask
        tokens = yield self._prefill(layout, cache)
        for index in range(self.max_new_tokens):
            logits = self.model(
                input_ids=tokens[:, None],
                attention_mask=mask[:, : width + index + 1] if layout.padded else None,
                position_ids=(layout.lengths + index)[:, None],
                kv_cache=cache,
            )
            tokens = yield logits[:, -1]

    def _uncached_steps(self):
        """Coroutine like ``_cached_steps``, recomputing every position at every step."""
        ids, mask = self.layout.input_ids, self.layout.mask
        tokens = yield self._prefill(self.layout, None)
        while True:
            ids = torch.cat([ids, tokens[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            tokens = yield self._prefill(Layout.of(ids, mask, self.model.tokens_per_image), None)
