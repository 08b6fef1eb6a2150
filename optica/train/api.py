"""``optica.finetune`` / ``pretrain`` / ``validate``: plain functions, one training path.

    optica.finetune(model, data, trainer, log=None, optim=None, resume=None, peft=None)

Pretraining and fine-tuning differ only in their defaults (a fine-tune usually starts from
``resume.restore_config`` and may use ``peft``); both run the same module, loop and callbacks.
Each returns the run directory (metrics, TensorBoard, ``config.yaml``, checkpoints).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from torch import nn

from optica.run.context import current_task
from optica.run.errors import ConfigError
from optica.train.callbacks import AtomicCheckpointIO, build_callbacks, build_loggers
from optica.train.exp_manager import ExpManager, ResumeConfig
from optica.train.module import TrainingModule
from optica.train.optim import OptimizerConfig
from optica.train.peft import Freeze, LoRA
from optica.train.trainer import (
    TrainerConfig,
    build_trainer,
    data_parallel_size,
    derive_accumulation,
)


def finetune(
    model: nn.Module,
    data: pl.LightningDataModule,
    trainer: TrainerConfig,
    log: ExpManager | None = None,
    optim: OptimizerConfig | None = None,
    resume: ResumeConfig | None = None,
    peft: LoRA | Freeze | None = None,
) -> Path:
    """Fine-tunes ``model`` on ``data``; returns the run directory.

    ``peft``: LoRA adapters (only they, and what LoRA leaves unfrozen, train) or plain freezing.
    """
    return _fit(model, data, trainer, log, optim, resume, peft)


def pretrain(
    model: nn.Module,
    data: pl.LightningDataModule,
    trainer: TrainerConfig,
    log: ExpManager | None = None,
    optim: OptimizerConfig | None = None,
    resume: ResumeConfig | None = None,
    freeze: Freeze | None = None,
) -> Path:
    """Trains ``model`` from its initialisation (or ``resume``); returns the run directory.

    ``freeze``: parts that stay fixed, e.g. both towers in LLaVA's projector pre-training.
    """
    return _fit(model, data, trainer, log, optim, resume, peft=freeze)


def _fit(model, data, trainer_config, log, optim, resume, peft) -> Path:
    log, resume = log or ExpManager(), resume or ResumeConfig()
    run_dir = log.run_dir(resume_if_exists=resume.resume_if_exists)
    ckpt_path = resume.checkpoint_path(run_dir)
    pl.seed_everything(trainer_config.seed, workers=True, verbose=False)
    module = TrainingModule(
        model,
        optim=optim,
        peft=peft,
        init_seed=trainer_config.seed,
        weights_loader=_restore_loader(resume, ckpt_path),
    )
    trainer = _trainer(trainer_config, data, log, run_dir)
    if trainer.is_global_zero:
        _save_config(run_dir, log)
    trainer.fit(module, datamodule=data, ckpt_path=str(ckpt_path) if ckpt_path else None)
    return run_dir


def validate(
    model: nn.Module,
    data: pl.LightningDataModule,
    trainer: TrainerConfig,
    log: ExpManager | None = None,
    resume: ResumeConfig | None = None,
) -> list[dict[str, float]]:
    """Runs the validation loop once (from ``resume``'s checkpoint when given); returns metrics."""
    log, resume = log or ExpManager(ckpt=None), resume or ResumeConfig(resume_if_exists=False)
    run_dir = log.run_dir(resume_if_exists=False)
    ckpt_path = resume.checkpoint_path(run_dir)
    module = TrainingModule(
        model, init_seed=trainer.seed, weights_loader=_restore_loader(resume, ckpt_path)
    )
    lightning_trainer = _trainer(trainer, data, log, run_dir)
    return lightning_trainer.validate(
        module, datamodule=data, ckpt_path=str(ckpt_path) if ckpt_path else None
    )


def _trainer(config: TrainerConfig, data: Any, log: ExpManager, run_dir: Path) -> pl.Trainer:
    dp = data_parallel_size(config)
    accumulation = derive_accumulation(
        config, _required(data, "global_batch_size"), _required(data, "micro_batch_size"), dp
    )
    if config.use_distributed_sampler is None:
        config = replace(config, use_distributed_sampler=not _shards_by_rank(data))
    return build_trainer(
        config,
        accumulation=accumulation,
        loggers=build_loggers(log, run_dir),
        callbacks=[*build_callbacks(log, run_dir), *config.callbacks],
        plugins=[AtomicCheckpointIO()],
    )


def _shards_by_rank(data: Any) -> bool:
    """optica.data's modules give each data-parallel rank its own batches already."""
    from optica.data.module import OpticaDataModule

    return isinstance(data, OpticaDataModule)


def _restore_loader(resume: ResumeConfig, ckpt_path: Path | None) -> Any:
    """Fills a lazy model from ``restore_config`` — only when not resuming a run."""
    if ckpt_path is not None or resume.restore_config is None:
        return None
    path = resume.restore_config.path

    def load(model: nn.Module) -> None:
        from optica.checkpoint import load_weights_into

        load_weights_into(model, path)

    return load


def _save_config(run_dir: Path, log: ExpManager) -> None:
    task = current_task()
    if not log.save_config or task is None:
        return
    from optica.run.serialize import to_yaml

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(to_yaml(task))


def _required(data: Any, name: str) -> int:
    value = getattr(data, name, None)
    if not isinstance(value, int):
        raise ConfigError(f"data: {type(data).__name__} has no integer '{name}'")
    return value
