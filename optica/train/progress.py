"""The training progress bar: Lightning's tqdm bar, moved every batch, its metrics read only every
``log_every_n_steps`` batches.

Lightning's own bar reads the logged metrics at every refresh (by default every batch) and turns
each tensor among them (the loss) into a Python number: on a GPU, a host sync in every step,
which stops the CPU from queueing the next step's kernels while the GPU still runs this one.
This bar moves every batch (a count: no sync) and reads the metrics shown beside it as often as
the loggers write them, at the end of each epoch, and at the last batch.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import TQDMProgressBar


class StepProgressBar(TQDMProgressBar):
    """Lightning's ``TQDMProgressBar`` whose training bar reads the metrics every
    ``metrics_every`` batches (and at the last one) instead of at every batch."""

    def __init__(self, metrics_every: int) -> None:
        super().__init__(refresh_rate=1)
        self.metrics_every = max(int(metrics_every), 1)

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        bar = self.train_progress_bar
        done = batch_idx + 1
        if bar is None or not self._should_update(done, bar.total):
            return
        if done % self.metrics_every == 0 or done == bar.total:
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
        if not bar.disable:
            bar.n = done
            bar.refresh()
