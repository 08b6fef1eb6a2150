"""The training progress bar reads the logged metrics (a host sync on a GPU) only every
``log_every_n_steps`` batches, at the last batch and at the epoch's end, yet moves every batch."""

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from torch.utils.data import DataLoader, TensorDataset

from optica.train.progress import StepProgressBar
from optica.train.trainer import TrainerConfig, build_trainer


class _Regression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _data(batches: int) -> DataLoader:
    x = torch.randn(batches * 2, 4)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=2)


def _reads(bar_type, **kwargs):
    """Trains one epoch of 7 batches; returns the optimizer steps at which the bar read the
    metrics, and the bar."""
    reads: list[int] = []

    class Spy(bar_type):
        def get_metrics(self, trainer, pl_module):
            reads.append(trainer.global_step)
            return super().get_metrics(trainer, pl_module)

    bar = Spy(**kwargs)
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", callbacks=[bar], logger=False,
        enable_checkpointing=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(_Regression(), _data(7))
    return reads, bar


def test_metrics_are_read_every_n_batches_and_at_the_end():
    reads, bar = _reads(StepProgressBar, metrics_every=3)
    assert reads == [3, 6, 7, 7]  # every 3rd batch, the last batch, the epoch's end
    assert bar.train_progress_bar.n == 7
    assert "loss=" in bar.train_progress_bar.postfix


def test_lightnings_own_bar_reads_them_every_batch():
    # the behaviour replaced: one read (a host sync on a GPU) per step
    reads, _ = _reads(TQDMProgressBar)
    assert reads == [1, 2, 3, 4, 5, 6, 7, 7]


def _bars(callbacks=(), **config) -> list:
    trainer = build_trainer(
        TrainerConfig(max_steps=1, accelerator="cpu", log_every_n_steps=5, **config),
        accumulation=1, loggers=[], callbacks=list(callbacks), plugins=[],
    )  # fmt: skip
    return [c for c in trainer.callbacks if isinstance(c, pl.callbacks.ProgressBar)]


def test_the_trainer_uses_it_with_the_logging_interval():
    (bar,) = _bars()
    assert type(bar) is StepProgressBar and bar.metrics_every == 5


def test_a_users_own_bar_or_no_bar_is_kept():
    own = TQDMProgressBar(refresh_rate=2)
    assert _bars(callbacks=[own]) == [own]
    assert _bars(enable_progress_bar=False) == []
