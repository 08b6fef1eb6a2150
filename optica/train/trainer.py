"""The trainer block (seed 000's ``trainer``), mapped onto Lightning's ``Trainer``.

Seed keys that the experiment manager owns (``logger``, ``enable_checkpointing``,
``resume_from_checkpoint``) are accepted so a seed-000 YAML loads as is, and must stay at their
seed values: logging, checkpointing and resuming are configured under ``log`` and ``resume``.
``accumulate_grad_batches`` is derived from the data's global and micro batch sizes and the
data-parallel size; a different explicit value is an error, never a silent surprise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch

from optica.run.errors import ConfigError
from optica.train.progress import StepProgressBar
from optica.train.strategy import ParallelStrategy

_PRECISIONS = {
    "bf16": "bf16-mixed",
    "16": "16-mixed",
    16: "16-mixed",
    32: "32-true",
    "32": "32-true",
}


@dataclass
class TrainerConfig:
    devices: int | str = 1
    num_nodes: int = 1
    accelerator: str = "auto"
    max_epochs: int = -1
    max_steps: int = -1
    precision: str | int = "32-true"
    log_every_n_steps: int = 10
    num_sanity_val_steps: int = 0
    gradient_clip_val: float | None = None
    accumulate_grad_batches: int | None = None
    val_check_interval: int | float | None = None
    limit_val_batches: int | float | None = None
    limit_train_batches: int | float | None = None
    enable_progress_bar: bool = True
    enable_model_summary: bool = True
    benchmark: bool = False
    deterministic: bool = False
    seed: int = 1234
    # How the model is split over the devices (seed 001's ``MegatronStrategy``), e.g.
    # ``ParallelStrategy(tensor_model_parallel_size=2)`` from ``optica.train.strategy``; None is
    # Lightning's default strategy; a string names a Lightning one. On the command line:
    # ``trainer.strategy=parallel`` or just ``trainer.strategy.tensor_model_parallel_size=2``.
    strategy: ParallelStrategy | str | None = None
    # Extra Lightning callbacks (NeMo's ``Trainer(callbacks=[...])``), after the experiment
    # manager's own; e.g. the auto-configurator's step-time/memory probe.
    callbacks: list[Any] = field(default_factory=list)
    # False for data modules that shard by data-parallel rank themselves (optica.data's batch
    # samplers; NeMo 2.0's recipes set it so too): Lightning must not inject a sampler then.
    # None: False for optica.data's modules, True (Lightning's default) for any other.
    use_distributed_sampler: bool | None = None
    # Seed 000 keys owned by the experiment manager: accepted, never used here.
    logger: bool = False
    enable_checkpointing: bool = False
    resume_from_checkpoint: str | None = None

    def __post_init__(self) -> None:
        if self.resume_from_checkpoint:
            raise ConfigError(
                "trainer.resume_from_checkpoint: set resume.resume_from_checkpoint instead"
            )
        if self.max_steps <= 0 and self.max_epochs <= 0:
            raise ConfigError("trainer: set max_steps or max_epochs (both are unlimited)")


def data_parallel_size(config: TrainerConfig) -> int:
    """Model replicas: all devices, over the ranks one replica spans (TP × PP × CP)."""
    devices = config.devices
    if isinstance(devices, str):
        devices = torch.cuda.device_count() if devices == "auto" else len(devices.split(","))
    world = max(1, int(devices)) * config.num_nodes
    return max(1, world // getattr(config.strategy, "model_parallel_size", 1))


def derive_accumulation(config: TrainerConfig, global_batch: int, micro_batch: int, dp: int) -> int:
    """``global = micro × dp × accumulation``; refuses a remainder or a conflicting value."""
    per_step = micro_batch * dp
    if global_batch % per_step:
        raise ConfigError(
            f"data.global_batch_size={global_batch} is not divisible by micro_batch_size "
            f"({micro_batch}) × data-parallel size ({dp}) = {per_step}"
        )
    derived = global_batch // per_step
    if config.accumulate_grad_batches not in (None, derived):
        raise ConfigError(
            f"trainer.accumulate_grad_batches={config.accumulate_grad_batches} but global/micro/"
            f"data-parallel sizes give {derived}; remove it (it is derived) or fix the batch sizes"
        )
    return derived


def build_trainer(
    config: TrainerConfig,
    *,
    accumulation: int,
    loggers: list,
    callbacks: list,
    plugins: list,
    strategy: Any = "auto",
) -> pl.Trainer:
    accelerator = config.accelerator
    if accelerator == "gpu" and not torch.cuda.is_available():
        raise ConfigError("trainer.accelerator=gpu but no GPU is visible here (use cpu or auto)")
    return pl.Trainer(
        devices=config.devices,
        num_nodes=config.num_nodes,
        accelerator=accelerator,
        strategy=config.strategy if config.strategy is not None else strategy,
        max_epochs=config.max_epochs,
        max_steps=config.max_steps,
        precision=_PRECISIONS.get(config.precision, config.precision),
        log_every_n_steps=config.log_every_n_steps,
        num_sanity_val_steps=config.num_sanity_val_steps,
        gradient_clip_val=config.gradient_clip_val,
        accumulate_grad_batches=accumulation,
        val_check_interval=config.val_check_interval,
        limit_val_batches=config.limit_val_batches,
        limit_train_batches=config.limit_train_batches,
        enable_progress_bar=config.enable_progress_bar,
        enable_model_summary=config.enable_model_summary,
        benchmark=config.benchmark,
        deterministic=config.deterministic,
        logger=loggers or False,
        callbacks=_with_progress_bar(config, callbacks),
        plugins=plugins,
        use_distributed_sampler=config.use_distributed_sampler is not False,
        enable_checkpointing=any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks),
    )


def _with_progress_bar(config: TrainerConfig, callbacks: list) -> list:
    """``callbacks`` and, when the bar is on and none was given, a :class:`StepProgressBar` that
    reads the metrics as often as they are logged (Lightning's default reads them every step)."""
    given = any(isinstance(c, pl.callbacks.ProgressBar) for c in callbacks)
    if not config.enable_progress_bar or given:
        return callbacks
    return [*callbacks, StepProgressBar(metrics_every=config.log_every_n_steps)]
