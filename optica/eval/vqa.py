"""Answer accuracy of a VLM: exact match of its greedy answer against the reference.

Greedy decoding reproduces a reference answer (its stop string included) exactly when, with the
reference fed back in (teacher forcing), the arg-max at every answer position is the reference
token: each greedy step then sees the same prefix and picks the same token. So exact match is
computed for a whole batch in one forward pass (:func:`answer_matches`), and
:func:`greedy_answer` decodes token by token only to show answers to people.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Accuracy:
    correct: int
    total: int

    @property
    def value(self) -> float:
        return self.correct / self.total if self.total else 0.0


def answer_spans(labels: torch.Tensor) -> list[tuple[int, int]]:
    """[start, end) of each run of learned labels in one row ``labels`` [T]: one per answer."""
    learned = (labels != IGNORE_INDEX).tolist()
    spans, start = [], None
    for index, flag in enumerate([*learned, False]):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            spans.append((start, index))
            start = None
    return spans


@torch.no_grad()
def answer_matches(model: nn.Module, batch: dict) -> list[bool]:
    """Whether each answer in ``batch`` (a collated VLM batch) is the model's greedy answer."""
    logits = model(**_inputs(model, batch))
    labels = model.expand_labels(batch["input_ids"], batch["labels"])
    predicted = logits.argmax(-1)
    results = []
    for row in range(labels.shape[0]):
        for start, end in answer_spans(labels[row]):
            guess = predicted[row, start - 1 : end - 1]  # logits at t predict token t + 1
            results.append(bool(torch.equal(guess, labels[row, start:end])))
    return results


def answer_accuracy(model: nn.Module, batches: Iterable[dict]) -> Accuracy:
    """Exact-match accuracy over every answer in ``batches`` (model in eval mode meanwhile)."""
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for batch in batches:
            matches = answer_matches(model, batch)
            correct, total = correct + sum(matches), total + len(matches)
    finally:
        model.train(was_training)
    return Accuracy(correct, total)


@torch.no_grad()
def greedy_answer(
    model: nn.Module, prompt_ids: torch.Tensor, images: torch.Tensor, *, stop_id: int, limit: int
) -> list[int]:
    """Greedy tokens after ``prompt_ids`` [T] (with -200 per image in ``images`` [N, 3, H, W]),
    up to and excluding ``stop_id``; a full forward per token (for a few shown examples)."""
    ids = prompt_ids.unsqueeze(0)
    answer: list[int] = []
    for _ in range(limit):
        token = int(model(input_ids=ids, images=images)[0, -1].argmax())
        if token == stop_id:
            break
        answer.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return answer


def _inputs(model: nn.Module, batch: dict) -> dict:
    keys = ("input_ids", "images", "attention_mask", "position_ids", "packed_seq_params")
    return {k: batch[k] for k in keys if k in batch}
