"""Packing: first-fit-decreasing bins, and loss over a packed batch == loss unpacked."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from optica.data import Collator, PackedDataset, first_fit_decreasing
from optica.data.errors import DataError
from optica.data.llava import LlavaDataset
from optica.data.packing import concatenate
from optica.data.sample import Sample
from tests.unit.data.helpers import record, v1_encoder, write_json


@given(st.lists(st.integers(1, 50), min_size=1, max_size=60), st.integers(50, 120))
@settings(max_examples=60, deadline=None)
def test_ffd_places_every_item_once_within_capacity(lengths, capacity):
    bins = first_fit_decreasing(lengths, capacity)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= capacity for b in bins)
    assert len(bins) <= math.ceil(11 / 9 * math.ceil(sum(lengths) / capacity)) + 1  # FFD bound


def test_ffd_known_packing():
    # Longest first, each into the first bin with room: 7 -> b0, 6 -> b1, 5 -> b2,
    # 4 -> b1 (b0 has 3 left), 3 -> b0, 2 -> b2.
    assert first_fit_decreasing([3, 7, 2, 5, 6, 4], 10) == [[1, 0], [4, 5], [3, 2]]


def test_ffd_refuses_an_item_larger_than_a_bin():
    with pytest.raises(DataError, match="cannot fit"):
        first_fit_decreasing([5, 11], 10)


class TinyCausalLM(torch.nn.Module):
    """Embeddings + one SDPA attention block + head; positions from ``position_ids``."""

    def __init__(self, vocab=40, dim=16, positions=64):
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.pos = torch.nn.Embedding(vocab, dim), torch.nn.Embedding(positions, dim)
        self.qkv, self.out = torch.nn.Linear(dim, 3 * dim), torch.nn.Linear(dim, dim)
        self.head = torch.nn.Linear(dim, vocab)

    def forward(self, input_ids, position_ids, mask):
        x = self.embed(input_ids) + self.pos(position_ids)
        q, k, v = self.qkv(x).unsqueeze(1).chunk(3, dim=-1)  # one head: [B, 1, T, D]
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None])
        return self.head(x + self.out(attended.squeeze(1)))


def block_causal_mask(batch) -> torch.Tensor:
    """True where query i may see key j: same sample, j <= i, real token (pads see themselves)."""
    docs = batch["document_ids"]
    width = docs.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    same = docs[:, :, None] == docs[:, None, :]
    return causal & same


def token_loss_sum(model, batch) -> tuple[torch.Tensor, int]:
    logits = model(batch["input_ids"], batch["position_ids"], block_causal_mask(batch))
    labels = batch["labels"][:, 1:]
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels.flatten(), reduction="sum")
    return loss, int((labels != -100).sum())


def random_sample(index: int) -> Sample:
    generator = torch.Generator().manual_seed(index)
    length = int(torch.randint(3, 12, (1,), generator=generator))
    ids = torch.randint(0, 40, (length,), generator=generator)
    labels = ids.clone()
    labels[: length // 2] = -100
    return Sample((str(index),), ids, labels, torch.empty(0, 3, 1, 1), (length,))


def test_packed_loss_equals_unpacked_loss():
    samples = [random_sample(i) for i in range(7)]
    model = TinyCausalLM()
    collate = Collator(pad_id=0)
    unpacked_sum, unpacked_count = token_loss_sum(model, collate(samples))
    bins = first_fit_decreasing([len(s.input_ids) for s in samples], 24)
    assert len(bins) < len(samples)  # something was really packed
    packed = collate([concatenate([samples[i] for i in b]) for b in bins])
    packed_sum, packed_count = token_loss_sum(model, packed)
    assert packed_count == unpacked_count
    torch.testing.assert_close(packed_sum / packed_count, unpacked_sum / unpacked_count)
    # Without the block-diagonal mask the loss differs: the test can fail.
    packed["document_ids"] = torch.zeros_like(packed["document_ids"])
    leaked, _ = token_loss_sum(model, packed)
    assert not torch.allclose(leaked, packed_sum)


def test_collate_positions_restart_per_sample():
    a, b = random_sample(1), random_sample(2)
    batch = Collator(pad_id=0)([concatenate([a, b])])
    n, m = len(a.input_ids), len(b.input_ids)
    assert batch["position_ids"][0, : n + m].tolist() == [*range(n), *range(m)]
    assert batch["document_ids"][0, : n + m].tolist() == [0] * n + [1] * m


def test_packed_llava_dataset(tmp_path):
    records = [
        record(f"s{i}", "hello there " * (i % 4 + 1), "a cat " * (i % 3 + 1)) for i in range(12)
    ]
    path = write_json(tmp_path / "d.json", records)
    encoder = v1_encoder(40)
    packed = PackedDataset(LlavaDataset(path, encoder=encoder), 40)
    assert len(packed) < 12
    rows = [packed[r] for r in range(len(packed))]
    assert sorted(i for row in rows for i in row.ids) == sorted(r["id"] for r in records)
    assert all(len(row.input_ids) <= 40 and sum(row.lengths) == len(row.input_ids) for row in rows)
