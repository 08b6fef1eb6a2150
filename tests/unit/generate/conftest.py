"""Tiny random models and the shapes tokenizer for the generation tests (no files, no hub)."""

import pytest
import torch

from optica.data.synthetic import shapes_tokenizer
from optica.models import LlamaConfigTiny, LlamaModel, LlavaConfigTiny, LlavaModel


@pytest.fixture(scope="module")
def tokenizer():
    return shapes_tokenizer()


@pytest.fixture(scope="module")
def llava(tokenizer):
    config = LlavaConfigTiny(image_token_id=None)
    config.language_transformer_config.vocab_size = len(tokenizer)
    return LlavaModel(config).init_weights(seed=0).eval()


@pytest.fixture(scope="module")
def llama():
    return LlamaModel(LlamaConfigTiny()).init_weights(seed=0).eval()


def pixels(count: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
