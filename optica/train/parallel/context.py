"""Context parallelism, the batch side: every context-parallel rank receives the same batch and
keeps its load-balanced slice of each sequence (see
``optica.models.modules.parallel.load_balanced_positions``); the attention side gathers keys and
values over the ``cp`` mesh.

The loss needs the token after each position, which may live on another rank, so labels are
shifted *before* the split (``next_labels``); ``loss_denominator`` is the sequence's learned-token
count divided by CP, so each rank's summed loss over it, averaged over the CP ranks with the
gradients, is the whole sequence's mean (Megatron scales by CP the same way).
"""

from __future__ import annotations

from typing import Any

import torch

from optica.models.modules.parallel import load_balanced_positions
from optica.run.errors import ConfigError
from optica.train.module import IGNORE_INDEX, shift_labels

_UNSUPPORTED = ("packed_seq_params", "images", "inputs_embeds")


def split_for_context_parallel(batch: dict[str, Any], rank: int, size: int) -> dict[str, Any]:
    """This rank's share of a token batch (``input_ids`` and ``labels`` [B, T], T divisible by
    2·CP); adds ``position_ids``, ``next_labels`` and ``loss_denominator``."""
    _check(batch, size)
    input_ids = batch["input_ids"]
    batch_size, seq_len = input_ids.shape
    index = load_balanced_positions(seq_len, rank, size, input_ids.device)
    split = {key: _slice(value, batch_size, seq_len, index) for key, value in batch.items()}
    split.pop("attention_mask", None)
    split.setdefault("position_ids", index.expand(batch_size, -1))
    next_labels = shift_labels(batch["labels"])
    split["next_labels"] = next_labels[:, index]
    learned = (next_labels != IGNORE_INDEX).sum().clamp(min=1)
    split["loss_denominator"] = learned.float() / size
    return split


def _check(batch: dict[str, Any], size: int) -> None:
    problem = None
    if "input_ids" not in batch or "labels" not in batch:
        problem = "batches need input_ids and labels"
    elif any(key in batch for key in _UNSUPPORTED):
        problem = f"{', '.join(k for k in _UNSUPPORTED if k in batch)} are not supported yet"
    elif "attention_mask" in batch and not bool(batch["attention_mask"].bool().all()):
        problem = "padded batches are not supported (pad to full rows or pack without padding)"
    elif batch["input_ids"].shape[1] % (2 * size):
        problem = (
            f"sequence length {batch['input_ids'].shape[1]} is not divisible by 2×CP={2 * size}"
        )
    if problem:
        raise ConfigError(f"context parallelism (CP={size}): {problem}")


def _slice(value: Any, batch_size: int, seq_len: int, index: torch.Tensor) -> Any:
    if torch.is_tensor(value) and value.dim() >= 2 and value.shape[:2] == (batch_size, seq_len):
        return value[:, index]
    return value
