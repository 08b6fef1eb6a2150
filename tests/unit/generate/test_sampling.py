"""Logit shaping equals transformers' processors; greedy is argmax; a seed fixes the samples."""

import pytest
import torch
from transformers.generation.logits_process import (
    RepetitionPenaltyLogitsProcessor,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from optica.generate import GenerationError, SamplingConfig
from optica.generate.sampling import (
    TokenChooser,
    keep_top_k,
    keep_top_p,
    penalize_repetition,
    seen_tokens,
)

LOGITS = torch.randn(3, 50, generator=torch.Generator().manual_seed(0)) * 3
IDS = torch.tensor([[1, 2, 3, 3], [4, 5, 6, 7], [8, 9, 10, 49]])


@pytest.mark.parametrize("k", [1, 5, 49])
def test_top_k_equals_transformers(k):
    torch.testing.assert_close(keep_top_k(LOGITS, k), TopKLogitsWarper(k)(IDS, LOGITS.clone()))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_top_p_equals_transformers(p):
    torch.testing.assert_close(keep_top_p(LOGITS, p), TopPLogitsWarper(p)(IDS, LOGITS.clone()))


def test_repetition_penalty_equals_transformers():
    seen = seen_tokens(IDS, torch.ones_like(IDS, dtype=torch.bool), 50)
    ours = penalize_repetition(LOGITS, seen, 1.3)
    torch.testing.assert_close(ours, RepetitionPenaltyLogitsProcessor(1.3)(IDS, LOGITS.clone()))


def test_greedy_is_argmax_and_a_seed_fixes_samples():
    empty = torch.zeros(0, dtype=torch.bool)
    assert torch.equal(TokenChooser(SamplingConfig(), empty)(LOGITS), LOGITS.argmax(-1))
    config = SamplingConfig(temperature=1.5, top_k=20, top_p=0.9, seed=3)
    draws = [torch.stack([TokenChooser(config, empty)(LOGITS) for _ in range(1)]) for _ in "ab"]
    assert torch.equal(draws[0], draws[1])
    chooser = TokenChooser(config, empty)
    many = torch.stack([chooser(LOGITS) for _ in range(30)])
    assert many.unique().numel() > 3  # it does sample
    top = LOGITS.topk(20, dim=-1).indices
    assert all(bool((top[row] == many[:, row, None]).any(-1).all()) for row in range(3))


def test_bad_settings_are_one_line_errors():
    with pytest.raises(GenerationError, match="top_p=1.5 must be in"):
        SamplingConfig(top_p=1.5)
    with pytest.raises(GenerationError, match="temperature=-1"):
        SamplingConfig(temperature=-1)
