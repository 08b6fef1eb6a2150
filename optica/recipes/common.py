"""Pieces every recipe composes: trainer, experiment manager, optimizer with its schedule, PEFT.

Each returns a ``run.Config`` (never a built object), so a recipe stays a plain description that
``--dryrun`` prints and overrides edit.
"""

from __future__ import annotations

from optica import run
from optica.run.errors import ConfigError, did_you_mean
from optica.train.exp_manager import CheckpointConfig, ExpManager, RestoreConfig, ResumeConfig
from optica.train.optim import OptimizerConfig
from optica.train.peft import LANGUAGE_LINEARS, Freeze, LoRA
from optica.train.schedules import CosineAnnealing
from optica.train.trainer import TrainerConfig

PEFT_SCHEMES = ("lora", "none")


def trainer(
    *,
    num_nodes: int = 1,
    num_gpus_per_node: int = 1,
    max_steps: int = -1,
    max_epochs: int = -1,
    precision: str = "bf16-mixed",
    val_check_interval: int | float | None = None,
    limit_val_batches: int | float | None = None,
    log_every_n_steps: int = 10,
    gradient_clip_val: float | None = 1.0,
) -> run.Config[TrainerConfig]:
    """Seed 000's trainer block for ``num_nodes`` × ``num_gpus_per_node`` devices."""
    return run.Config(
        TrainerConfig,
        devices=num_gpus_per_node,
        num_nodes=num_nodes,
        max_steps=max_steps,
        max_epochs=max_epochs,
        precision=precision,
        val_check_interval=val_check_interval,
        limit_val_batches=limit_val_batches,
        log_every_n_steps=log_every_n_steps,
        gradient_clip_val=gradient_clip_val,
    )


def log(
    name: str, dir: str | None = None, *, every_n_train_steps: int | None = None
) -> run.Config[ExpManager]:
    """TensorBoard + CSV under ``dir`` (default ``./optica_experiments``), seed 000's checkpoint
    name template, the two best checkpoints and the last one kept."""
    ckpt = run.Config(
        CheckpointConfig, save_top_k=2, save_last=True, every_n_train_steps=every_n_train_steps
    )
    exp_dir = dir if dir is not None else "./optica_experiments"
    return run.Config(ExpManager, exp_dir=exp_dir, name=name, ckpt=ckpt)


def cosine_optim(
    *,
    lr: float,
    min_lr: float = 0.0,
    warmup_ratio: float | None = None,
    warmup_steps: int | None = None,
    weight_decay: float = 0.0,
    name: str = "adamw",
    param_groups: dict | None = None,
) -> run.Config[OptimizerConfig]:
    """Adam-family (or SGD; Adam's betas stay at (0.9, 0.999)) with linear warm-up and cosine
    decay to ``min_lr``."""
    sched = run.Config(
        CosineAnnealing, warmup_ratio=warmup_ratio, warmup_steps=warmup_steps, min_lr=min_lr
    )
    return run.Config(
        OptimizerConfig,
        name=name,
        lr=lr,
        weight_decay=weight_decay,
        param_groups=param_groups or {},
        sched=sched,
    )


def resume(restore_from: str | None = None) -> run.Config[ResumeConfig]:
    """Resume the run if it exists; else start from ``restore_from`` (an imported checkpoint:
    a directory or ``hf://org/name`` imported earlier with ``optica import``)."""
    restore = run.Config(RestoreConfig, path=restore_from) if restore_from else None
    return run.Config(ResumeConfig, restore_config=restore)


def lora(
    *, dim: int = 32, alpha: float = 32, dropout: float = 0.0, freeze_vision_model: bool = False
) -> run.Config[LoRA]:
    """LoRA on every linear layer of the language model (seed 001's default targets)."""
    targets = [f"*.language_model.*.{n}" for n in LANGUAGE_LINEARS]
    return run.Config(
        LoRA,
        target_modules=targets,
        dim=dim,
        alpha=alpha,
        dropout=dropout,
        freeze_vision_model=freeze_vision_model,
    )


def projector_only() -> run.Config[Freeze]:
    """LLaVA's stage 1: both towers frozen, only the projector learns."""
    return run.Config(Freeze, language_model=True, vision_model=True)


def check_peft_scheme(peft_scheme: str) -> str:
    scheme = (peft_scheme or "none").lower()
    if scheme not in PEFT_SCHEMES:
        hint = did_you_mean(scheme, PEFT_SCHEMES)
        raise ConfigError(f"peft_scheme must be 'lora' or 'none', not '{peft_scheme}'{hint}")
    return scheme
