"""Lightning pieces the experiment manager assembles: loggers, checkpointing, EMA, atomic IO."""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import callbacks as pl_callbacks
from lightning.pytorch import loggers as pl_loggers
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.plugins.io import TorchCheckpointIO

from optica.train.adapters import ModelCheckpointWithAdapters
from optica.train.exp_manager import EMAConfig, ExpManager
from optica.train.throughput import ThroughputMonitor


class EMA(pl_callbacks.EMAWeightAveraging):
    """Lightning's EMA averaging with seed 000's knobs.

    The average replaces the raw weights for validation (unless ``validate_original_weights``)
    and at the end of training; checkpoints hold the average under ``state_dict`` and the raw
    weights under ``current_model_state``, so a resumed run continues both exactly.
    """

    def __init__(self, config: EMAConfig) -> None:
        super().__init__(
            device="cpu" if config.cpu_offload else None,
            decay=config.decay,
            update_every_n_steps=config.every_n_steps,
        )
        self.validate_original_weights = config.validate_original_weights

    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if not self.validate_original_weights:
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not self.validate_original_weights:
            super().on_validation_epoch_end(trainer, pl_module)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file in the same directory, syncs it, then renames
    it into place: an interrupted save never replaces (or looks like) a good checkpoint."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None):
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


class _AppendingWriter(ExperimentWriter):
    """Keeps the rows already in ``metrics.csv``: a resumed run appends to what came before
    (Lightning's writer deletes the file when its directory is not empty)."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as file:
                self.metrics_keys = sorted(next(csv.reader(file), []))


class AppendingCSVLogger(pl_loggers.CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` survives a resume."""

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def build_loggers(exp: ExpManager, run_dir: Path) -> list[Any]:
    """CSV (``metrics.csv`` right in the run dir), TensorBoard and W&B as configured."""
    found: list[Any] = []
    version_args = {"save_dir": str(run_dir.parent), "name": "", "version": run_dir.name}
    if exp.csv:
        found.append(AppendingCSVLogger(**version_args))
    if exp.tensorboard:
        found.append(pl_loggers.TensorBoardLogger(**version_args, default_hp_metric=False))
    if exp.wandb:
        kwargs = {"project": exp.name, "save_dir": str(run_dir), "offline": True}
        kwargs.update(exp.wandb_logger_kwargs)
        found.append(pl_loggers.WandbLogger(**kwargs))
    return found


def build_callbacks(exp: ExpManager, run_dir: Path) -> list[Any]:
    """Checkpointing (filename template with ``{name}``; a PEFT run's adapters folder beside
    each checkpoint), EMA and throughput as configured."""
    found: list[Any] = []
    if exp.ckpt is not None:
        ckpt = exp.ckpt
        found.append(
            ModelCheckpointWithAdapters(
                dirpath=run_dir / "checkpoints",
                filename=ckpt.filename.replace("{name}", exp.name),
                monitor=ckpt.monitor,
                mode=ckpt.mode,
                save_top_k=ckpt.save_top_k,
                save_last=ckpt.save_last,
                every_n_train_steps=ckpt.every_n_train_steps or None,
                every_n_epochs=ckpt.every_n_epochs or None,
                save_weights_only=ckpt.save_weights_only,
            )
        )
    if exp.ema is not None:
        found.append(EMA(exp.ema))
    if exp.throughput is not None:
        found.append(ThroughputMonitor(exp.throughput))
    return found
