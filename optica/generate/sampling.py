"""Choosing the next token from logits: greedy, or sampling shaped by temperature, top-k and
top-p (Holtzman et al., 2019, "The Curious Case of Neural Text Degeneration"), with CTRL's
repetition penalty (Keskar et al., 2019). The order and the arithmetic are transformers'
(``RepetitionPenaltyLogitsProcessor`` → ``TemperatureLogitsWarper`` → ``TopKLogitsWarper`` →
``TopPLogitsWarper``), so the same settings shape the distribution the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from optica.generate.errors import GenerationError

IMAGE_PLACEHOLDER = -200  # LLaVA's IMAGE_TOKEN_INDEX in input_ids


@dataclass(frozen=True)
class SamplingConfig:
    """How the next token is chosen.

    Args:
        temperature: 0 picks the most likely token (greedy); above 0 samples from
            ``softmax(logits / temperature)``.
        top_k: Sample among the ``top_k`` most likely tokens only (0: all).
        top_p: Sample among the smallest set of tokens whose probability reaches ``top_p``.
        repetition_penalty: Above 1 makes tokens already in the sequence (prompt included) less
            likely: positive logits are divided by it, negative ones multiplied.
        seed: Seed of the sampling generator (same seed, same samples); None draws from torch's.
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        checks = (
            (self.temperature >= 0, f"temperature={self.temperature} must be >= 0"),
            (self.top_k >= 0, f"top_k={self.top_k} must be >= 0"),
            (0 < self.top_p <= 1, f"top_p={self.top_p} must be in (0, 1]"),
            (self.repetition_penalty > 0, "repetition_penalty must be > 0"),
        )
        for ok, message in checks:
            if not ok:
                raise GenerationError(f"sampling: {message}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


class TokenChooser:
    """Applies a :class:`SamplingConfig` step after step; tracks which tokens each row has seen
    (for the repetition penalty) in a [B, V] boolean table instead of re-reading the sequence.

    Args:
        config: The sampling settings.
        seen: [B, V], True for tokens already in each row (the prompt's).
    """

    def __init__(self, config: SamplingConfig, seen: torch.Tensor) -> None:
        self.config, self.seen = config, seen
        self.generator = None
        if config.seed is not None and not config.greedy:
            self.generator = torch.Generator(seen.device).manual_seed(config.seed)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """Next tokens [B] for the last position's ``logits`` [B, V]."""
        config = self.config
        scores = logits.float()
        if config.repetition_penalty != 1.0:
            scores = penalize_repetition(scores, self.seen, config.repetition_penalty)
        if config.greedy:
            tokens = scores.argmax(dim=-1)
        else:
            scores = scores / config.temperature
            scores = keep_top_p(keep_top_k(scores, config.top_k), config.top_p)
            probs = scores.softmax(dim=-1)
            tokens = torch.multinomial(probs, 1, generator=self.generator).squeeze(1)
        if config.repetition_penalty != 1.0:
            self.seen.scatter_(1, tokens[:, None], True)
        return tokens


def seen_tokens(
    input_ids: torch.Tensor, mask: torch.Tensor, vocab_size: int, image_id: int | None = None
) -> torch.Tensor:
    """[B, V] table of the ids the repetition penalty applies to in ``input_ids`` [B, T].

    Like transformers, every real prompt token counts, and a row with images counts the
    vocabulary's image token (``image_id``; transformers' ``input_ids`` hold it where optica
    holds -200). Unlike transformers, padding does not count: there, a row padded to the batch's
    longest prompt penalises the pad id, so its answer depends on which prompts it was batched
    with; here a row's answer is the one it gets alone (equal to transformers' for any unpadded
    prompt).
    """
    seen = torch.zeros(input_ids.shape[0], vocab_size, dtype=torch.bool, device=input_ids.device)
    real = mask.bool() & (input_ids >= 0) & (input_ids < vocab_size)
    seen.scatter_(1, input_ids.clamp(0, vocab_size - 1), real)
    if image_id is not None and 0 <= image_id < vocab_size:
        seen[:, image_id] |= ((input_ids == IMAGE_PLACEHOLDER) & mask.bool()).any(dim=1)
    return seen


def penalize_repetition(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    penalized = torch.where(scores < 0, scores * penalty, scores / penalty)
    return torch.where(seen, penalized, scores)


def keep_top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 0 or k >= scores.shape[-1]:
        return scores
    threshold = scores.topk(k, dim=-1).values[..., -1:]
    return scores.masked_fill(scores < threshold, float("-inf"))


def keep_top_p(scores: torch.Tensor, p: float) -> torch.Tensor:
    """Drops the least likely tokens whose total probability stays within ``1 - p`` (the most
    likely token always stays)."""
    if p >= 1.0:
        return scores
    ordered, order = scores.sort(dim=-1)
    cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
    drop = cumulative <= 1 - p
    drop[..., -1] = False
    return scores.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
