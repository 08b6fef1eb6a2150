"""``EnergonMultiModalDataModule``: saving and restoring the loader mid-epoch, validation split."""

import gc
import io

import pytest
import torch

from optica.data.energon.convert import convert_llava
from tests.unit.data.energon.helpers import assert_same_batch, energon_module

SHUFFLED = {"micro_batch_size": 2, "global_batch_size": 2, "shuffle_buffer_size": 4}


def train_run(shards, state=None, **settings):
    module = energon_module(shards, **SHUFFLED, max_samples_per_sequence=2, **settings)
    if state is not None:
        module.load_state_dict(state)
    return module, iter(module.train_dataloader())


def checkpoint_roundtrip(state: dict) -> dict:
    """What a Lightning checkpoint does to it (``torch.save``; loading with ``weights_only``)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


# energon's worker processes take ~5 s each to stop (torch's join timeout): slow.
@pytest.mark.parametrize("num_workers", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_resumed_loader_gives_the_same_next_batches(converted, num_workers):
    check_resume(converted[2], num_workers)
    gc.collect()  # the loaders are gone: stop their workers now, not in the middle of another test


def check_resume(shards, num_workers: int) -> None:
    module, batches = train_run(shards, num_workers=num_workers)
    for _ in range(3):
        module.consume(next(batches))
    ahead = next(batches)  # Lightning fetches one batch before the model takes it
    state = checkpoint_roundtrip(module.state_dict())
    assert state["consumed_samples"] == 6
    expected = [ahead, *(next(batches) for _ in range(4))]
    resumed, again = train_run(shards, state, num_workers=num_workers)
    for batch in expected:
        assert_same_batch(batch, next(again))
    assert resumed.consumed_samples == 6


def test_saving_before_iterating_keeps_the_restored_position(converted):
    module, batches = train_run(converted[2])
    module.consume(next(batches))
    state = module.state_dict()
    following = next(batches)
    restored = energon_module(converted[2], **SHUFFLED, max_samples_per_sequence=2)
    restored.load_state_dict(state)
    _, resumed = train_run(converted[2], restored.state_dict())  # saved again, never iterated
    assert_same_batch(following, next(resumed))


def test_training_order_is_shuffled_and_seeded(converted):
    def first_rows(seed):
        _, batches = train_run(converted[2], seed=seed)
        return [next(batches)["input_ids"][:, :8].tolist() for _ in range(4)]

    assert first_rows(1) == first_rows(1)
    assert first_rows(1) != first_rows(2)


def test_validation_reads_the_val_split_once_in_order(tmp_path, converted):
    data, images, _ = converted
    convert_llava(
        data, tmp_path / "split", image_folder=images, shard_size=3, split_ratio=(2, 1, 0)
    )
    module = energon_module(tmp_path / "split")
    batches = list(module.val_dataloader())
    assert len(batches) == 1 and batches[0]["input_ids"].shape[0] == 3
    assert energon_module(converted[2]).val_dataloader() == []  # no val split: no validation
