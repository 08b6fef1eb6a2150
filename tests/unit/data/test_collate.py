"""Collator: the batch-at-once layout equals padding each row on its own."""

import pytest
import torch

from optica.data import Collator
from optica.data.config import IGNORE_INDEX, IMAGE_TOKEN_ID
from optica.data.sample import Sample


def packed_row(generator: torch.Generator, pieces: int) -> Sample:
    """``pieces`` packed samples of 1-9 tokens, some of them -200 images, each with its pixels."""
    lengths = [int(n) for n in torch.randint(1, 10, (pieces,), generator=generator)]
    ids = torch.randint(0, 50, (sum(lengths),), generator=generator)
    ids[torch.rand(len(ids), generator=generator) < 0.2] = IMAGE_TOKEN_ID
    labels = torch.where(torch.rand(len(ids), generator=generator) < 0.5, ids, IGNORE_INDEX)
    images = torch.rand(int((ids == IMAGE_TOKEN_ID).sum()), 3, 2, 2, generator=generator)
    names = tuple(str(k) for k in range(pieces))
    return Sample(names, ids, labels, images, tuple(lengths))


def row_by_row(samples: list[Sample], pad_id: int, multiple: int, image_token_len: int) -> dict:
    """The straightforward per-row padding the collator must match."""
    width = -(-max(len(s.input_ids) for s in samples) // multiple) * multiple
    most = max(int((s.input_ids == IMAGE_TOKEN_ID).sum()) for s in samples)
    expanded = width + most * (image_token_len - 1)
    out = {
        "input_ids": torch.full((len(samples), width), pad_id),
        "labels": torch.full((len(samples), width), IGNORE_INDEX),
        "attention_mask": torch.zeros((len(samples), width), dtype=torch.bool),
        "document_ids": torch.full((len(samples), width), -1),
        "position_ids": torch.zeros((len(samples), expanded), dtype=torch.long),
    }
    for row, sample in enumerate(samples):
        n, start, documents, positions = len(sample.input_ids), 0, [], []
        out["input_ids"][row, :n], out["labels"][row, :n] = sample.input_ids, sample.labels
        out["attention_mask"][row, :n] = True
        for index, length in enumerate(sample.lengths):
            piece = sample.input_ids[start : start + length]
            documents += [index] * length
            positions += range(
                length + int((piece == IMAGE_TOKEN_ID).sum()) * (image_token_len - 1)
            )
            start += length
        out["document_ids"][row, :n] = torch.tensor(documents)
        out["position_ids"][row, : len(positions)] = torch.tensor(positions)
    return out


@pytest.mark.parametrize(
    ("multiple", "image_token_len", "pieces"), [(1, 1, 1), (8, 5, 3), (1, 3, 1)]
)
def test_batch_layout_equals_row_by_row(multiple, image_token_len, pieces):
    generator = torch.Generator().manual_seed(multiple + image_token_len + pieces)
    counts = torch.randint(1, pieces + 1, (6,), generator=generator).tolist()
    samples = [packed_row(generator, int(k)) for k in counts]
    batch = Collator(7, (2, 2), multiple, image_token_len)(samples)
    expected = row_by_row(samples, 7, multiple, image_token_len)
    for key, value in expected.items():
        assert batch[key].dtype == value.dtype and torch.equal(batch[key], value), key
    assert torch.equal(batch["images"], torch.cat([s.images for s in samples]))
    assert batch["num_images"].tolist() == [len(s.images) for s in samples]
    assert ("packed_seq_params" in batch) == any(len(s.lengths) > 1 for s in samples)
