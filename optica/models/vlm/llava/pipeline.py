"""LLaVA cut into pipeline stages: the first stage encodes and projects the images, embeds the
text, splices the two and runs the first language layers; the last runs the remaining layers, the
final norm and the output layer (and the loss).

A pipeline sends tensors of one shape from step to step (``torch.distributed.pipelining`` sizes
its receive buffers once), but a spliced sequence is as long as its longest row, which changes
from batch to batch. So the first stage pads the spliced sequence at the end to a fixed
``sequence_length`` — the language model's ``seq_length``, its context, which bounds every
sequence it can see and which every stage knows from the config (Megatron pads to it too) — and
the labels reach the last stage expanded the same way, -100 on the padding
(:func:`llava_pipeline_batch`). Rows must be right-padded and unpacked: under a plain causal
mask a real token then never sees a padding token, so the loss is one process's.

Images travel per row (``[B, most images in a row, C, H, W]``, zeros where a row has fewer) so
that cutting the batch into pipeline micro-batches along dim 0 keeps each row with its images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from optica.models.language.llama.parallelize import LlamaStage, llama_pipeline_stages
from optica.models.vlm.llava.model import LlavaModel
from optica.models.vlm.llava.splice import (
    IGNORE_INDEX,
    IMAGE_TOKEN_INDEX,
    SplicePlan,
    expand_labels,
)
from optica.run.errors import ConfigError

_BATCH_KEYS = {"input_ids", "labels", "attention_mask", "images", "num_images", "position_ids",
               "document_ids", "problems"}  # fmt: skip


class LlavaStage(nn.Module):
    """One pipeline stage of LLaVA; shares its modules with the (pruned) model, whose state dict
    keeps the original parameter names.

    Args:
        model: The LLaVA model (pruned to this rank's stages afterwards).
        language: This stage's part of the language model (a ``LlamaStage``).
        first: Whether the stage splices images into the text.
        sequence_length: What the first stage pads the spliced sequence to.
    """

    def __init__(self, model: LlavaModel, language: LlamaStage, first: bool,
                 sequence_length: int) -> None:  # fmt: skip
        super().__init__()
        self.config = model.config
        self.sequence_length = sequence_length
        self.llava = model if first else None  # its vision tower, projector and text embedding
        if first:
            language.embedding = None  # NOTE: the stage embeds (and splices) the text itself
        self.language = language

    def forward(self, x: torch.Tensor, images: torch.Tensor | None = None) -> torch.Tensor:
        """First stage: token ids [B, T] (-200 at images) and ``images_by_row`` → hidden states
        [B, sequence_length, h]; other stages: hidden states → the next stage's hidden states, or
        logits [B, sequence_length, vocab_size] (last stage)."""
        if self.llava is None:
            return self.language(x)
        return self.language(self._spliced(x, images))

    def _spliced(self, input_ids: torch.Tensor, images_by_row: torch.Tensor) -> torch.Tensor:
        plan = SplicePlan.build(input_ids, self.config.num_image_tokens)
        counts = plan.is_image.sum(dim=1)
        slots = torch.arange(images_by_row.shape[1], device=counts.device)
        images = images_by_row[slots < counts[:, None]]
        embeds = self.llava._embed(input_ids, images if len(images) else None, plan)
        padding = self.sequence_length - embeds.shape[1]
        return nn.functional.pad(embeds, (0, 0, 0, padding))


def llava_pipeline_stages(
    model: LlavaModel, stage_ids: Sequence[int], num_stages: int
) -> list[LlavaStage]:
    """Cuts the language layers evenly into ``num_stages`` (``llama_pipeline_stages``), puts the
    vision tower and projector in front of the first, and keeps, in ``model``, only what the stages
    ``stage_ids`` run."""
    language = llama_pipeline_stages(model.language_model, stage_ids, num_stages)
    length = pipeline_sequence_length(model)
    stages = [LlavaStage(model, part, s == 0, length) for s, part in zip(stage_ids, language)]
    if 0 not in stage_ids:
        model.vision_model = model.vision_projection = None
    return stages


def pipeline_sequence_length(model: LlavaModel) -> int:
    """The length every stage exchanges: the language model's context."""
    return model.config.language_transformer_config.seq_length


def llava_pipeline_batch(
    batch: dict[str, Any], model: LlavaModel
) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """A collated LLaVA batch → (the first stage's inputs ``(input_ids, images_by_row)``, the
    last stage's labels [B, sequence_length] aligned with the padded spliced sequence)."""
    _check_batch(batch)
    input_ids, length = batch["input_ids"], pipeline_sequence_length(model)
    labels = expand_labels(input_ids, batch["labels"], model.config.num_image_tokens)
    if labels.shape[1] > length:
        raise ConfigError(
            f"pipeline parallelism with LLaVA: a spliced sequence of {labels.shape[1]} tokens "
            f"exceeds the language model's seq_length={length} (what the stages exchange); "
            "lower the data's seq_length or raise the model's"
        )
    labels = nn.functional.pad(labels, (0, length - labels.shape[1]), value=IGNORE_INDEX)
    return (input_ids, images_by_row(input_ids, batch.get("images"))), labels


def images_by_row(input_ids: torch.Tensor, images: torch.Tensor | None) -> torch.Tensor:
    """Images [N, C, H, W] in reading order → [B, most images in a row, C, H, W], each row's
    images first, zeros after."""
    counts = (input_ids == IMAGE_TOKEN_INDEX).sum(dim=1)
    given = 0 if images is None else images.shape[0]
    if int(counts.sum()) != given:
        raise ConfigError(
            f"pipeline parallelism with LLaVA: input_ids hold {int(counts.sum())} image "
            f"placeholders ({IMAGE_TOKEN_INDEX}) but the batch has {given} images"
        )
    most = int(counts.max()) if counts.numel() else 0
    if images is None:
        return torch.zeros(input_ids.shape[0], 0, 1, 1, 1, device=input_ids.device)
    rows = images.new_zeros(input_ids.shape[0], most, *images.shape[1:])
    slots = torch.arange(most, device=counts.device)
    rows[slots < counts[:, None]] = images
    return rows


def _check_batch(batch: dict[str, Any]) -> None:
    problem = None
    extra = sorted(key for key in batch if key not in _BATCH_KEYS)
    mask = batch.get("attention_mask")
    if batch.get("packed_seq_params") is not None:
        problem = "packed batches are not supported yet"
    elif extra:
        problem = f"inputs {extra} are not supported yet"
    elif mask is not None and bool((mask[:, 1:].long() > mask[:, :-1].long()).any()):
        problem = "only right-padded rows are supported (real tokens first, then padding)"
    if problem:
        raise ConfigError(f"pipeline parallelism with LLaVA: {problem}")
