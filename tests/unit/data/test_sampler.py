"""Deterministic, resumable, data-parallel order; DataModule state; a real Lightning resume."""

import pytest
import torch

from optica.data import MockDataModule, Progress, ResumableBatchSampler
from optica.data.errors import DataConfigError, DataError


def sampler(consumed=0, rank=0, replicas=1, size=20, mbs=2, gbs=8, shuffle=True):
    return ResumableBatchSampler(
        size=size,
        micro_batch_size=mbs,
        global_batch_size=gbs,
        data_parallel_rank=rank,
        data_parallel_size=replicas,
        shuffle=shuffle,
        seed=3,
        progress=Progress(consumed),
    )


def test_one_epoch_is_whole_global_batches_of_a_permutation():
    batches = list(sampler())
    flat = [i for b in batches for i in b]
    assert len(flat) == 16 and len(set(flat)) == 16  # 20 // 8 * 8, no repeats
    assert flat != sorted(flat)
    assert len(sampler()) == len(batches) == 8


def test_same_seed_same_order_and_epochs_differ():
    assert list(sampler()) == list(sampler())
    first, second = list(sampler()), list(sampler(consumed=16))
    assert first != second


def test_resume_mid_epoch_continues_the_same_order():
    full = list(sampler())
    assert list(sampler(consumed=6)) == full[3:]


def test_ranks_partition_each_global_batch():
    one = [i for b in sampler(replicas=1) for i in b]
    ranks = [list(sampler(rank=r, replicas=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 4
    for step in range(4):  # micro-step k of all ranks = samples [4k, 4k+4) of the global order
        assert ranks[0][step] + ranks[1][step] == one[4 * step : 4 * step + 4]


def test_validation_order_covers_everything_once():
    rank_batches = [
        list(sampler(rank=r, replicas=2, size=11, mbs=2, gbs=4, shuffle=False)) for r in range(2)
    ]
    covered = sorted(i for batches in rank_batches for b in batches for i in b)
    assert covered == list(range(8))  # drop_last in training; validation below keeps all
    val = [
        ResumableBatchSampler(
            size=11,
            micro_batch_size=2,
            global_batch_size=4,
            data_parallel_rank=r,
            data_parallel_size=2,
            shuffle=False,
            drop_last=False,
        )
        for r in range(2)
    ]
    assert sorted(i for s in val for b in s for i in b) == list(range(11))


def test_bad_batch_sizes_and_positions():
    with pytest.raises(DataConfigError, match="multiple of micro_batch_size"):
        sampler(mbs=3, gbs=8)
    with pytest.raises(DataConfigError, match="not a multiple"):
        list(sampler(consumed=3))
    with pytest.raises(DataError, match="fewer than one global batch"):
        sampler(size=4)


def mock(**kw):
    args = dict(
        seq_length=12,
        vocab_size=50,
        image_size=4,
        image_token_len=4,
        num_train_samples=40,
        num_val_samples=6,
        micro_batch_size=2,
        global_batch_size=4,
        seed=7,
    )
    return MockDataModule(**{**args, **kw})


def test_datamodule_resume_gives_the_same_next_batch():
    module = mock()
    batches = iter(module.train_dataloader())
    for _ in range(3):
        module.consume(next(batches))
    upcoming = next(batches)
    state = module.state_dict()
    assert state["consumed_samples"] == 6

    resumed = mock()
    resumed.load_state_dict(state)
    again = next(iter(resumed.train_dataloader()))
    assert torch.equal(again["input_ids"], upcoming["input_ids"])
    assert torch.equal(again["images"], upcoming["images"])


def test_datamodule_ranks_see_disjoint_samples():
    seen = []
    for rank in range(2):
        module = mock(data_parallel_rank=rank, data_parallel_size=2)
        seen.append(
            {tuple(row.tolist()) for b in module.train_dataloader() for row in b["input_ids"]}
        )
    assert not seen[0] & seen[1] and len(seen[0]) == len(seen[1]) == 20


def test_workers_give_the_same_batches():
    plain = [b["input_ids"] for b in mock().train_dataloader()]
    workers = [b["input_ids"] for b in mock(num_workers=2).train_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(plain, workers, strict=True))


@pytest.mark.slow
def test_lightning_resume_sees_exactly_the_batches_of_an_uninterrupted_run(tmp_path):
    import lightning.pytorch as pl

    class Recorder(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)
            self.seen = []

        def training_step(self, batch, _):
            self.seen.append(batch["input_ids"].clone())
            return self.layer(batch["input_ids"][:, :1].float()).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    def fit(steps, ckpt=None):
        model = Recorder()
        trainer = pl.Trainer(
            max_steps=steps,
            accelerator="cpu",
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            use_distributed_sampler=False,
            limit_val_batches=0,
            default_root_dir=tmp_path,
            enable_checkpointing=False,
            accumulate_grad_batches=2,
        )
        trainer.fit(model, datamodule=mock(), ckpt_path=ckpt)
        return trainer, model.seen

    _, straight = fit(14)  # 28 micro-batches: crosses the 10-step epoch boundary
    trainer, first = fit(6)
    trainer.save_checkpoint(tmp_path / "mid.ckpt")
    _, rest = fit(14, tmp_path / "mid.ckpt")
    assert len(first) + len(rest) == len(straight)
    assert all(torch.equal(a, b) for a, b in zip(first + rest, straight, strict=True))
